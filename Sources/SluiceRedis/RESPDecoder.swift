import NIOCore

/// Frames and decodes RESP2 and RESP3 replies, one whole ``RESPValue`` at a time.
///
/// Safe on input split at any byte: a value is parsed from a copy of the buffer, and the
/// reader index moves only once the whole value (nested elements included) has arrived, so a
/// partial value costs nothing but a re-parse when more bytes come. Replies of this client
/// are small, so re-parsing beats keeping a resumable parser state.
///
/// Limits keep a broken or hostile peer from making us buffer without bound or recurse
/// deeply: a bulk string longer than ``maximumBulkLength``, aggregates nested deeper than
/// ``maximumDepth`` or a line (simple string, error, number) longer than
/// ``maximumLineLength`` throw ``RedisError/protocolError(_:)``. So do malformed input,
/// unknown type bytes and RESP3 streamed values (`$?`, `*?`), which Redis never sends in reply
/// to the commands this client issues. RESP3 attributes (`|`) are read and dropped: they
/// annotate the value that follows and carry nothing the store needs.
public struct RESPDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = RESPValue

    /// Redis's own limit for a bulk string (`proto-max-bulk-len`). Defaults to 512 MiB.
    public var maximumBulkLength: Int
    /// Aggregates (arrays, maps, sets, pushes, attributes) inside one another; a top-level
    /// array is at depth 1. Defaults to 32.
    public var maximumDepth: Int
    /// The longest line (simple string, error, number) accepted. Defaults to 64 KiB.
    public var maximumLineLength: Int

    public init(maximumBulkLength: Int = 512 * 1024 * 1024, maximumDepth: Int = 32, maximumLineLength: Int = 64 * 1024) {
        self.maximumBulkLength = maximumBulkLength
        self.maximumDepth = maximumDepth
        self.maximumLineLength = maximumLineLength
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> RESPValue? {
        var copy = buffer
        guard let value = try self.parseValue(from: &copy, depth: 0) else { return nil }
        buffer.moveReaderIndex(to: copy.readerIndex)
        return value
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> RESPValue? {
        // A partial value left at EOF is dropped: whoever waits for it fails on connection loss.
        try self.decode(buffer: &buffer)
    }

    /// Parses one value; `nil` when more bytes are needed (the buffer's state is then undefined).
    private func parseValue(from buffer: inout ByteBuffer, depth: Int) throws -> RESPValue? {
        guard var type = buffer.readInteger(as: UInt8.self) else { return nil }
        // An attribute map annotates the value right after it: read it, drop it, go on with the value. In a loop, not
        // by recursion: attributes in a row cost no stack (the `resp` fuzz target overflowed it with 4-byte `|0`s).
        while type == UInt8(ascii: "|") {
            guard let count = try self.readLength(from: &buffer, allowsNull: false) else { return nil }
            guard try self.readElements(from: &buffer, count: count * 2, depth: depth) != nil else { return nil }
            guard let next = buffer.readInteger(as: UInt8.self) else { return nil }
            type = next
        }
        switch type {
        case UInt8(ascii: "+"):
            return try self.readLine(from: &buffer).map { .simpleString(String(buffer: $0)) }
        case UInt8(ascii: "-"):
            return try self.readLine(from: &buffer).map { .error(String(buffer: $0)) }
        case UInt8(ascii: ":"):
            guard let line = try self.readLine(from: &buffer) else { return nil }
            guard let value = Self.parseInteger(line) else { throw Self.malformed("integer", line) }
            return .integer(value)
        case UInt8(ascii: "$"):
            guard let length = try self.readLength(from: &buffer, allowsNull: true) else { return nil }
            if length < 0 { return .bulkString(nil) }
            return try self.readBlob(from: &buffer, length: length).map { .bulkString($0) }
        case UInt8(ascii: "*"):
            guard let count = try self.readLength(from: &buffer, allowsNull: true) else { return nil }
            if count < 0 { return .array(nil) }
            return try self.readElements(from: &buffer, count: count, depth: depth).map { .array($0) }
        case UInt8(ascii: "_"):
            guard let line = try self.readLine(from: &buffer) else { return nil }
            guard line.readableBytes == 0 else { throw Self.malformed("null", line) }
            return .null
        case UInt8(ascii: ","):
            guard let line = try self.readLine(from: &buffer) else { return nil }
            guard line.readableBytes > 0, let value = Double(String(buffer: line)) else {
                throw Self.malformed("double", line)
            }
            return .double(value)
        case UInt8(ascii: "#"):
            guard let line = try self.readLine(from: &buffer) else { return nil }
            switch String(buffer: line) {
            case "t": return .boolean(true)
            case "f": return .boolean(false)
            default: throw Self.malformed("boolean", line)
            }
        case UInt8(ascii: "("):
            guard let line = try self.readLine(from: &buffer) else { return nil }
            guard Self.isBigNumber(line) else { throw Self.malformed("big number", line) }
            return .bigNumber(String(buffer: line))
        case UInt8(ascii: "!"):
            guard let length = try self.readLength(from: &buffer, allowsNull: false) else { return nil }
            return try self.readBlob(from: &buffer, length: length).map { .error(String(buffer: $0)) }
        case UInt8(ascii: "="):
            guard let length = try self.readLength(from: &buffer, allowsNull: false) else { return nil }
            guard var blob = try self.readBlob(from: &buffer, length: length) else { return nil }
            guard blob.readableBytes >= 4, blob.getInteger(at: blob.readerIndex + 3, as: UInt8.self) == UInt8(ascii: ":")
            else { throw RedisError.protocolError("verbatim string without a format prefix") }
            blob.moveReaderIndex(forwardBy: 4)
            return .verbatimString(String(buffer: blob))
        case UInt8(ascii: "%"):
            guard let count = try self.readLength(from: &buffer, allowsNull: false) else { return nil }
            return try self.readElements(from: &buffer, count: count * 2, depth: depth).map { .map($0) }
        case UInt8(ascii: "~"):
            guard let count = try self.readLength(from: &buffer, allowsNull: false) else { return nil }
            return try self.readElements(from: &buffer, count: count, depth: depth).map { .set($0) }
        case UInt8(ascii: ">"):
            guard let count = try self.readLength(from: &buffer, allowsNull: false) else { return nil }
            return try self.readElements(from: &buffer, count: count, depth: depth).map { .push($0) }
        default:
            throw RedisError.protocolError("unknown RESP type byte 0x\(String(type, radix: 16))")
        }
    }

    /// The bytes up to CRLF (which is consumed); `nil` when CRLF has not arrived yet.
    private func readLine(from buffer: inout ByteBuffer) throws -> ByteBuffer? {
        let view = buffer.readableBytesView
        guard let cr = view.firstIndex(of: UInt8(ascii: "\r")) else {
            if view.count > self.maximumLineLength { throw RedisError.protocolError("line longer than \(self.maximumLineLength) bytes") }
            return nil
        }
        let length = cr - view.startIndex
        if length > self.maximumLineLength { throw RedisError.protocolError("line longer than \(self.maximumLineLength) bytes") }
        guard let lf = buffer.getInteger(at: cr + 1, as: UInt8.self) else { return nil }
        guard lf == UInt8(ascii: "\n") else { throw RedisError.protocolError("CR not followed by LF") }
        let line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }

    /// A length or count line: `-1` (null, where `allowsNull`) or 0 and up.
    private func readLength(from buffer: inout ByteBuffer, allowsNull: Bool) throws -> Int? {
        guard let line = try self.readLine(from: &buffer) else { return nil }
        if line.readableBytes == 1, line.getInteger(at: line.readerIndex, as: UInt8.self) == UInt8(ascii: "?") {
            throw RedisError.protocolError("streamed RESP3 values are not supported")
        }
        guard let value = Self.parseInteger(line), value >= (allowsNull ? -1 : 0), value <= Int32.max else {
            throw Self.malformed("length", line)
        }
        return Int(value)
    }

    /// `length` bytes followed by CRLF.
    private func readBlob(from buffer: inout ByteBuffer, length: Int) throws -> ByteBuffer? {
        guard length <= self.maximumBulkLength else {
            throw RedisError.protocolError("bulk string of \(length) bytes exceeds \(self.maximumBulkLength)")
        }
        guard buffer.readableBytes >= length + 2 else { return nil }
        let blob = buffer.readSlice(length: length)!
        guard buffer.readInteger(as: UInt16.self) == 0x0D0A else {
            throw RedisError.protocolError("bulk string not terminated by CRLF")
        }
        return blob
    }

    /// `count` values one level deeper than the aggregate that holds them.
    private func readElements(from buffer: inout ByteBuffer, count: Int, depth: Int) throws -> [RESPValue]? {
        guard depth < self.maximumDepth else {
            throw RedisError.protocolError("aggregates nested deeper than \(self.maximumDepth)")
        }
        var elements: [RESPValue] = []
        // Every value takes at least 3 bytes: never reserve for elements that have not arrived.
        elements.reserveCapacity(min(count, buffer.readableBytes / 3))
        for _ in 0..<count {
            guard let element = try self.parseValue(from: &buffer, depth: depth + 1) else { return nil }
            elements.append(element)
        }
        return elements
    }

    /// A decimal `Int64` with an optional `-`, nothing else; `nil` on any other byte or overflow.
    static func parseInteger(_ line: ByteBuffer) -> Int64? {
        var bytes = line.readableBytesView[...]
        let negative = bytes.first == UInt8(ascii: "-")
        if negative { bytes = bytes.dropFirst() }
        guard !bytes.isEmpty else { return nil }
        var value: Int64 = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let digit = Int64(byte - UInt8(ascii: "0"))
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = negative ? shifted.subtractingReportingOverflow(digit) : shifted.addingReportingOverflow(digit)
            if overflow1 || overflow2 { return nil }
            value = next
        }
        return value
    }

    private static func isBigNumber(_ line: ByteBuffer) -> Bool {
        var bytes = line.readableBytesView[...]
        if bytes.first == UInt8(ascii: "-") || bytes.first == UInt8(ascii: "+") { bytes = bytes.dropFirst() }
        return !bytes.isEmpty && bytes.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    private static func malformed(_ what: String, _ line: ByteBuffer) -> RedisError {
        RedisError.protocolError("malformed \(what): \(String(decoding: line.readableBytesView.prefix(64), as: UTF8.self))")
    }
}

import NIOCore

/// Frames and decodes the replies of memcached's meta protocol, one whole ``MemcachedReply`` at a time.
///
/// Safe on input split at any byte: a reply is parsed from a copy of the buffer and the reader index moves only once
/// the whole reply (a `VA` line and its data block) has arrived; a partial reply costs a re-parse when more bytes come.
/// Replies of this client are short, so re-parsing beats keeping a resumable state (as ``RESPDecoder`` does).
///
/// Strict, because the stream carries the rate-limit state of every instance: a line longer than
/// ``maximumLineLength``, a value longer than ``maximumValueLength``, an unknown status, a malformed flag, an `O` flag
/// that is not a decimal 32-bit token (this client sends no other), a bad length, a data block not ended by CRLF,
/// or a bare LF throw ``MemcachedError/protocolError(_:)``; the handler then closes the connection. Lines end in CRLF.
///
/// Returned flags other than `O`, `c` and `t` are checked for shape (a letter, then printable bytes) and dropped:
/// this client never asks for them.
public struct MemcachedReplyDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = MemcachedReply

    /// The longest reply line accepted (status and flags, or an error message). Defaults to 1 KiB.
    public var maximumLineLength: Int
    /// The largest `VA` data block accepted. Defaults to 1 MiB, memcached's default item size limit.
    public var maximumValueLength: Int

    public init(maximumLineLength: Int = 1024, maximumValueLength: Int = 1024 * 1024) {
        self.maximumLineLength = maximumLineLength
        self.maximumValueLength = maximumValueLength
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> MemcachedReply? {
        var copy = buffer
        guard let reply = try self.parseReply(from: &copy) else { return nil }
        buffer.moveReaderIndex(to: copy.readerIndex)
        return reply
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> MemcachedReply? {
        // A partial reply left at EOF is dropped: whoever waits for it fails on connection loss.
        try self.decode(buffer: &buffer)
    }

    /// One reply; `nil` when more bytes are needed.
    private func parseReply(from buffer: inout ByteBuffer) throws -> MemcachedReply? {
        guard let line = try self.readLine(from: &buffer) else { return nil }
        let bytes = line.readableBytesView
        if Self.hasPrefix(bytes, "CLIENT_ERROR") {
            return .clientError(Self.message(line))
        }
        if Self.hasPrefix(bytes, "SERVER_ERROR") {
            return .serverError(Self.message(line))
        }
        if bytes.elementsEqual("ERROR".utf8) {
            return .error
        }
        let start = bytes.startIndex
        let end = bytes.endIndex
        let space = UInt8(ascii: " ")
        guard bytes.count >= 2, bytes.count == 2 || bytes[start + 2] == space, let status = Self.status(bytes[start], bytes[start + 1])
        else {
            throw Self.malformed("unknown reply", line)
        }
        // After the status, tokens are separated by exactly one space: an empty token is a double or trailing space.
        if bytes.count > 2 {
            if bytes[end - 1] == space { throw Self.malformed("empty token", line) }
            var previous = space
            for index in (start + 3)..<end {
                let byte = bytes[index]
                if byte == space && previous == space { throw Self.malformed("empty token", line) }
                previous = byte
            }
        }
        var reply = MemcachedMetaReply(status: status)
        var valueLength: Int?
        // Each token runs from after a space to the next space or the end; `position` sits on the space before it.
        var position = start + 2
        func nextToken() -> ByteBufferView? {
            guard position < end else { return nil }
            let tokenStart = position + 1
            var tokenEnd = tokenStart
            while tokenEnd < end && bytes[tokenEnd] != space { tokenEnd += 1 }
            position = tokenEnd
            return bytes[tokenStart..<tokenEnd]
        }
        if status == .value {
            guard let size = nextToken(), let length = Self.decimal(size), length <= UInt64(Int32.max) else {
                throw Self.malformed("value length", line)
            }
            guard length <= UInt64(self.maximumValueLength) else {
                throw MemcachedError.protocolError("value of \(length) bytes exceeds \(self.maximumValueLength)")
            }
            valueLength = Int(length)
        }
        if status == .noop, position < end { throw Self.malformed("flags after MN", line) }
        while let token = nextToken() {
            guard let letter = token.first, Self.isLetter(letter), token.dropFirst().allSatisfy({ $0 > 0x20 && $0 < 0x7F })
            else { throw Self.malformed("flag", line) }
            let argument = token.dropFirst()
            switch letter {
            case UInt8(ascii: "O"):
                guard reply.opaque == nil, let value = Self.decimal(argument), value <= UInt64(UInt32.max) else {
                    throw Self.malformed("opaque token", line)
                }
                reply.opaque = UInt32(value)
            case UInt8(ascii: "c"):
                guard let value = Self.decimal(argument) else { throw Self.malformed("CAS value", line) }
                reply.cas = value
            case UInt8(ascii: "t"):
                if argument.elementsEqual("-1".utf8) {
                    reply.ttl = -1
                } else {
                    guard let value = Self.decimal(argument), value <= UInt64(Int64.max) else {
                        throw Self.malformed("TTL", line)
                    }
                    reply.ttl = Int64(value)
                }
            default:
                break
            }
        }
        if let valueLength {
            guard buffer.readableBytes >= valueLength + 2 else { return nil }
            let value = buffer.readSlice(length: valueLength)!
            guard buffer.readInteger(as: UInt16.self) == 0x0D0A else {
                throw MemcachedError.protocolError("value not terminated by CRLF")
            }
            reply.value = value
        }
        return .meta(reply)
    }

    /// The bytes up to CRLF (consumed); `nil` when CRLF has not arrived yet. A line that cannot start any reply
    /// (its first byte is not that of a status or an error word) is refused at once, without waiting for its end.
    private func readLine(from buffer: inout ByteBuffer) throws -> ByteBuffer? {
        let view = buffer.readableBytesView
        guard let first = view.first else { return nil }
        guard Self.startsReply(first) else {
            throw MemcachedError.protocolError("garbage where a reply should start (byte 0x\(String(first, radix: 16)))")
        }
        guard let lf = view.prefix(self.maximumLineLength + 2).firstIndex(of: UInt8(ascii: "\n")) else {
            if view.count >= self.maximumLineLength + 2 {
                throw MemcachedError.protocolError("line longer than \(self.maximumLineLength) bytes")
            }
            return nil
        }
        let length = lf - view.startIndex
        guard length >= 1, view[lf - 1] == UInt8(ascii: "\r") else {
            throw MemcachedError.protocolError("line not terminated by CRLF")
        }
        let line = buffer.readSlice(length: length - 1)!
        if line.readableBytesView.contains(UInt8(ascii: "\r")) {
            throw MemcachedError.protocolError("CR inside a line")
        }
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }

    /// Whether `byte` is the first of `HD`, `VA`, `EN`, `NS`, `EX`, `NF`, `MN`, `CLIENT_ERROR`, `SERVER_ERROR` or
    /// `ERROR`.
    private static func startsReply(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "H"), UInt8(ascii: "V"), UInt8(ascii: "E"), UInt8(ascii: "N"), UInt8(ascii: "M"), UInt8(ascii: "C"),
            UInt8(ascii: "S"):
            true
        default: false
        }
    }

    private static func hasPrefix(_ bytes: ByteBufferView, _ prefix: String) -> Bool {
        bytes.starts(with: prefix.utf8) && (bytes.count == prefix.utf8.count || bytes[bytes.startIndex + prefix.utf8.count] == UInt8(ascii: " "))
    }

    /// The text after the first word of an error line.
    private static func message(_ line: ByteBuffer) -> String {
        let bytes = line.readableBytesView
        guard let space = bytes.firstIndex(of: UInt8(ascii: " ")) else { return "" }
        return String(decoding: bytes[(space + 1)...].prefix(256), as: UTF8.self)
    }

    /// The status of a meta reply from its two letters, without making a `String` of them.
    private static func status(_ first: UInt8, _ second: UInt8) -> MemcachedMetaReply.Status? {
        switch (first, second) {
        case (UInt8(ascii: "H"), UInt8(ascii: "D")): .done
        case (UInt8(ascii: "V"), UInt8(ascii: "A")): .value
        case (UInt8(ascii: "E"), UInt8(ascii: "N")): .miss
        case (UInt8(ascii: "N"), UInt8(ascii: "S")): .notStored
        case (UInt8(ascii: "E"), UInt8(ascii: "X")): .exists
        case (UInt8(ascii: "N"), UInt8(ascii: "F")): .notFound
        case (UInt8(ascii: "M"), UInt8(ascii: "N")): .noop
        default: nil
        }
    }

    private static func isLetter(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
    }

    /// Decimal digits only (1 to 20 of them), as a `UInt64`; `nil` on anything else or overflow.
    static func decimal(_ bytes: some Collection<UInt8>) -> UInt64? {
        guard !bytes.isEmpty, bytes.count <= 20 else { return nil }
        var value: UInt64 = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = shifted.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            value = next
        }
        return value
    }

    private static func malformed(_ what: String, _ line: ByteBuffer) -> MemcachedError {
        MemcachedError.protocolError("malformed \(what): \(String(decoding: line.readableBytesView.prefix(64), as: UTF8.self))")
    }
}

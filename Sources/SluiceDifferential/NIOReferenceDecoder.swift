import NIOCore
import NIOEmbedded
import NIOHTTP1
import SluiceHTTP1

/// What NIOHTTP1's decoder (llhttp) makes of some bytes: the reference a byte-level parser is held against.
public enum ReferenceOutcome: Equatable, Sendable {
    case accepted(Head)
    case rejected(String)
    /// The bytes end before the head does.
    case incomplete

    public struct Head: Equatable, Sendable {
        public var method: String
        public var target: String
        public var minorVersion: Int
        public var fields: [Field]
        public var framing: ParsedRequestHead.Framing

        public init(method: String, target: String, minorVersion: Int, fields: [Field], framing: ParsedRequestHead.Framing) {
            self.method = method
            self.target = target
            self.minorVersion = minorVersion
            self.fields = fields
            self.framing = framing
        }
    }

    public struct Field: Equatable, Sendable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }
}

public enum NIOReferenceDecoder {
    /// Decodes `bytes` with `HTTPRequestDecoder` as Sluice's client pipeline configures it.
    public static func decode(_ bytes: [UInt8], maxHeadBytes: Int = 16384) -> ReferenceOutcome {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = maxHeadBytes
        limits.maxHeaderFieldSize = maxHeadBytes
        let channel = EmbeddedChannel(
            handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes, limitConfiguration: limits))
        )
        defer { _ = try? channel.finish() }
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        var failure: (any Error)? = nil
        do {
            try channel.writeInbound(buffer)
        } catch {
            // An error about bytes after a head (a body, the next request) leaves that head accepted.
            failure = error
        }
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
            guard case .head(let head) = part else { continue }
            return .accepted(Self.head(head))
        }
        if let failure { return .rejected("\(failure)") }
        return .incomplete
    }

    /// A head NIOHTTP1 decoded, in the reference's terms.
    static func head(_ head: HTTPRequestHead) -> ReferenceOutcome.Head {
        let fields = head.headers.map { ReferenceOutcome.Field(name: $0.name, value: Self.trimmed($0.value)) }
        let framing: ParsedRequestHead.Framing
        if head.headers.contains(name: "transfer-encoding") {
            framing = .chunked
        } else if let length = head.headers.first(name: "content-length") {
            framing = .length(Int(Self.trimmed(length)) ?? -1)
        } else {
            framing = .none
        }
        return ReferenceOutcome.Head(
            // NIO names M-SEARCH `MSEARCH`; the bytes on the wire are `M-SEARCH`.
            method: head.method == .MSEARCH ? "M-SEARCH" : head.method.rawValue,
            target: head.uri,
            minorVersion: head.version.minor,
            fields: fields,
            framing: framing
        )
    }

    /// Whether the decoder throws on `head` alone (one complete head, nothing after it): llhttp judges a request's
    /// framing after handing its head over (`Request has invalid Transfer-Encoding`), which ``decode(_:maxHeadBytes:)``
    /// counts as accepted.
    public static func refusesHeadAlone(_ head: [UInt8]) -> Bool {
        let channel = EmbeddedChannel(
            handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes))
        )
        defer { _ = try? channel.finish() }
        var buffer = channel.allocator.buffer(capacity: head.count)
        buffer.writeBytes(head)
        do {
            try channel.writeInbound(buffer)
            return false
        } catch {
            return true
        }
    }

    public static func trimmed(_ value: String) -> String {
        var scalars = Substring(value)
        while let first = scalars.first, first == " " || first == "\t" { scalars = scalars.dropFirst() }
        while let last = scalars.last, last == " " || last == "\t" { scalars = scalars.dropLast() }
        return String(scalars)
    }
}

/// What ``HTTPRequestHeadParser`` makes of the same bytes, in the reference's terms.
public enum SluiceOutcome: Equatable, Sendable {
    case accepted(ReferenceOutcome.Head, length: Int)
    case rejected(HTTPHeadError)
    case incomplete

    /// Parses `bytes`, fed in the given pieces (prefixes growing by each piece, as reads arrive).
    public static func parse(_ bytes: [UInt8], pieces: [Int]? = nil, maxHeadBytes: Int = 16384) -> SluiceOutcome {
        var parser = HTTPRequestHeadParser(maxHeadBytes: maxHeadBytes)
        var result = HTTPRequestHeadParser.Result.needMoreBytes
        var fed = 0
        for piece in pieces ?? [bytes.count] {
            fed = min(bytes.count, fed + piece)
            result = bytes[0..<fed].withUnsafeBytes { parser.parse($0) }
            if case .needMoreBytes = result { continue }
            break
        }
        if case .needMoreBytes = result, fed < bytes.count {
            result = bytes.withUnsafeBytes { parser.parse($0) }
        }
        switch result {
        case .needMoreBytes:
            return .incomplete
        case .error(let error):
            return .rejected(error)
        case .head(let head):
            func text(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
            return .accepted(
                ReferenceOutcome.Head(
                    method: text(head.method),
                    target: text(head.target),
                    minorVersion: head.minorVersion,
                    fields: head.fields.map { ReferenceOutcome.Field(name: text($0.name), value: text($0.value)) },
                    framing: head.framing
                ),
                length: head.length
            )
        }
    }
}

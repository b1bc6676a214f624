import NIOCore
import SluiceConfig
import SluiceHTTP1
import SluiceLimiter

/// A request head as the gate and the limiter see it, read from the parser's offsets (issue 19 item 3): no header
/// dictionary is built, and a `String` is made only of a value the rules ask for.
///
/// Reads a request exactly as the upstream will: an absolute-form target is its origin form, and its authority is
/// the host (RFC 9112 §3.2.2; ``AbsoluteFormTarget``). Field values are the parser's, already without their
/// surrounding whitespace.
struct RawRequestAttributes: RequestAttributes, Sendable {
    let head: ParsedRequestHead
    /// Exactly the head's bytes: ``head``'s offsets index its readable bytes from 0.
    let bytes: ByteBuffer
    /// The client IP (SPEC §4); set after init once the forwarding header is read (``headerValues(_:)``).
    var clientIP: IPAddress
    let method: String
    let uri: String
    let host: String?
    /// The claims of the request's verified JWT (issue 15), set after init when the snapshot has a verifier.
    var verifiedClaims: VerifiedClaims? = nil

    /// - Parameter absolute: the target read as an absolute form, when it is one (``absoluteTarget(_:bytes:)``).
    init(head: ParsedRequestHead, bytes: ByteBuffer, clientIP: IPAddress, absolute: (authority: Substring, originForm: String)? = nil) {
        self.head = head
        self.bytes = bytes
        self.clientIP = clientIP
        let (method, target, host) = bytes.withUnsafeReadableBytes { raw -> (String, String, String?) in
            let method = String(decoding: UnsafeRawBufferPointer(rebasing: raw[head.method]), as: UTF8.self)
            if absolute != nil { return (method, "", nil) }
            let target = String(decoding: UnsafeRawBufferPointer(rebasing: raw[head.target]), as: UTF8.self)
            let host = head.hostField.map {
                String(decoding: UnsafeRawBufferPointer(rebasing: raw[head.fields[$0].value]), as: UTF8.self)
            }
            return (method, target, host)
        }
        self.method = method
        if let absolute {
            self.uri = absolute.originForm
            self.host = String(absolute.authority)
        } else {
            self.uri = target
            self.host = host
        }
    }

    /// Reads `head`, or `nil` when its target is one Sluice does not forward (an absolute form other than `http://` or
    /// `https://` with a valid authority: 400).
    init?(head: ParsedRequestHead, bytes: ByteBuffer, clientIP: IPAddress) {
        switch Self.absoluteTarget(head, bytes: bytes) {
        case nil, .notAbsolute?:
            self.init(head: head, bytes: bytes, clientIP: clientIP, absolute: nil)
        case .absolute(let authority, let originForm)?:
            self.init(head: head, bytes: bytes, clientIP: clientIP, absolute: (authority, originForm))
        case .invalid?:
            return nil
        }
    }

    /// The request target when it is not origin form or `*`: `.absolute` with its parts, `.invalid` for a target
    /// Sluice does not forward (400); `nil` for the usual origin form, without making a `String`.
    static func absoluteTarget(_ head: ParsedRequestHead, bytes: ByteBuffer) -> AbsoluteFormTarget? {
        let first = bytes.getInteger(at: bytes.readerIndex + head.target.lowerBound, as: UInt8.self)
        if first == UInt8(ascii: "/") || (head.target.count == 1 && first == UInt8(ascii: "*")) { return nil }
        let target = bytes.withUnsafeReadableBytes { raw in
            String(decoding: UnsafeRawBufferPointer(rebasing: raw[head.target]), as: UTF8.self)
        }
        return AbsoluteFormTarget.parse(target)
    }

    func header(_ name: String) -> String? {
        var found: String?
        self.forEachHeaderValue(name) { value in
            found = value
            return false
        }
        return found
    }

    func forEachHeaderValue(_ name: String, _ body: (String) -> Bool) {
        // The host of an absolute-form target replaces the `Host` field (as the upstream reads it).
        if let host = self.host, Self.isHost(name) {
            _ = body(host)
            return
        }
        self.bytes.withUnsafeReadableBytes { raw in
            var name = name
            name.withUTF8 { wanted in
                for field in self.head.fields where Self.nameEquals(raw, field.name, wanted) {
                    let value = String(decoding: UnsafeRawBufferPointer(rebasing: raw[field.value]), as: UTF8.self)
                    guard body(value) else { return }
                }
            }
        }
    }

    /// The values of every field named `name` (the client-IP header), in order.
    func headerValues(_ name: String) -> [String] {
        var values: [String] = []
        self.forEachHeaderValue(name) {
            values.append($0)
            return true
        }
        return values
    }

    private static func isHost(_ name: String) -> Bool {
        name.utf8.count == 4 && name.utf8.elementsEqual("host".utf8) { ($0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0) == $1 }
    }

    /// ASCII case-insensitive comparison of a field name in `raw` with `wanted`.
    @inline(__always)
    private static func nameEquals(_ raw: UnsafeRawBufferPointer, _ range: Range<Int>, _ wanted: UnsafeBufferPointer<UInt8>) -> Bool {
        guard range.count == wanted.count else { return false }
        var j = 0
        for i in range {
            var a = raw[i]
            var b = wanted[j]
            if a >= 0x41 && a <= 0x5A { a |= 0x20 }
            if b >= 0x41 && b <= 0x5A { b |= 0x20 }
            guard a == b else { return false }
            j += 1
        }
        return true
    }
}

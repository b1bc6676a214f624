import SluiceConfig

/// Derives a request's key for a rule from its key parts (SPEC §2 "Keys").
///
/// Two forms exist:
/// - the **display key**, the part values joined with `|` (`203.0.113.7|/login`), which the admin API accepts
///   (SPEC §7); it is ambiguous when a value contains `|`, which is why it is never used for storage;
/// - the **encoded key**, each value prefixed with its UTF-8 length (`12:203.0.113.7|6:/login`), which is what
///   ``RateLimiter`` puts in storage keys after the rule's namespace. The length prefix makes the encoding
///   injective: `a|b` + `c` and `a` + `b|c` give `3:a|b|1:c` and `1:a|3:b|c`, so no value can forge another key.
///
/// Decisions where the spec is silent: an empty header, query or cookie value counts as absent; `query:` values
/// are percent-decoded with `+` read as a space (as HTML forms and Flask's `request.args` do); the first
/// occurrence of a repeated query parameter or cookie wins; `host` is lower-cased without its port.
public struct KeyBuilder: Sendable, Hashable {
    public let parts: [KeyPart]

    public init(parts: [KeyPart]) {
        self.parts = parts
    }

    /// The value of every part, or `nil` when one is absent (`on_missing_key` then decides).
    ///
    /// - Parameters:
    ///   - request: the request.
    ///   - path: its normalised path (``PathNormalizer/normalize(_:)``).
    public func values<R: RequestAttributes>(for request: R, path: Substring) -> [String]? {
        var values: [String] = []
        values.reserveCapacity(self.parts.count)
        for part in self.parts {
            guard let value = Self.value(of: part, request: request, path: path) else { return nil }
            values.append(value)
        }
        return values
    }

    /// Appends the encoded key of `request` to `key`; returns `false` (leaving `key` partly written) when a part
    /// is absent.
    public func appendEncodedKey<R: RequestAttributes>(for request: R, path: Substring, to key: inout String) -> Bool {
        for part in self.parts {
            guard let value = Self.value(of: part, request: request, path: path) else { return false }
            Self.appendEncoded(value, to: &key)
        }
        return true
    }

    /// The encoded key of a display key (`203.0.113.7|/login`), for the admin API.
    ///
    /// The display key is split into exactly as many values as there are parts, so only the last value may
    /// contain `|`. Returns `nil` when there are too few values.
    public func encodedKey(fromDisplayKey displayKey: String) -> String? {
        let values = displayKey.split(
            separator: "|",
            maxSplits: max(0, self.parts.count - 1),
            omittingEmptySubsequences: false
        )
        guard values.count == self.parts.count else { return nil }
        return Self.encode(values)
    }

    /// The encoded form of part values.
    public static func encode<S: StringProtocol>(_ values: some Sequence<S>) -> String {
        var key = ""
        for value in values { self.appendEncoded(value, to: &key) }
        return key
    }

    /// The display form of part values (SPEC §7): joined with `|`.
    public static func displayKey(_ values: [String]) -> String {
        values.joined(separator: "|")
    }

    static func appendEncoded<S: StringProtocol>(_ value: S, to key: inout String) {
        key += String(value.utf8.count)
        key += ":"
        key += value
        key += "|"
    }

    /// The value of one key part, `nil` if absent.
    public static func value<R: RequestAttributes>(of part: KeyPart, request: R, path: Substring) -> String? {
        switch part {
        case .ip:
            return request.clientIP.description
        case .ipPrefix(let bits):
            return "\(request.clientIP.masked(toPrefix: bits))/\(bits)"
        case .header(let name):
            guard let value = request.header(name), !value.isEmpty else { return nil }
            return value
        case .query(let name):
            return Self.queryValue(named: name, in: request.uri)
        case .cookie(let name):
            guard let header = request.header("cookie") else { return nil }
            return Self.cookieValue(named: name, in: header)
        case .path:
            return String(path)
        case .method:
            return request.method
        case .host:
            guard let host = request.host, !host.isEmpty else { return nil }
            return HostName.normalized(host)
        case .const(let text):
            return text
        }
    }

    /// The first non-empty, percent-decoded value of query parameter `name` in a request target.
    static func queryValue(named name: String, in target: String) -> String? {
        guard let question = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return nil }
        var query = target[target.utf8.index(after: question)...]
        if let hash = query.utf8.firstIndex(of: UInt8(ascii: "#")) { query = query[..<hash] }
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let equals = pair.utf8.firstIndex(of: UInt8(ascii: "="))
            let rawName = equals.map { pair[..<$0] } ?? pair
            guard Self.percentDecoded(rawName) == name else { continue }
            guard let equals else { return nil }
            let value = Self.percentDecoded(pair[pair.utf8.index(after: equals)...])
            return value.isEmpty ? nil : value
        }
        return nil
    }

    /// The first non-empty value of cookie `name` in a `Cookie` header (`a=1; b=2`); surrounding quotes are kept.
    static func cookieValue(named name: String, in header: String) -> String? {
        for pair in header.split(separator: ";", omittingEmptySubsequences: true) {
            guard let equals = pair.utf8.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let cookieName = pair[..<equals].trimmingSpaces()
            guard cookieName == name else { continue }
            let value = pair[pair.utf8.index(after: equals)...].trimmingSpaces()
            return value.isEmpty ? nil : String(value)
        }
        return nil
    }

    /// `%XX` decoded (invalid escapes kept as written), `+` read as a space; invalid UTF-8 is repaired.
    static func percentDecoded(_ text: Substring) -> String {
        guard text.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) else {
            return String(text)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        let source = Array(text.utf8)
        var i = 0
        while i < source.count {
            let byte = source[i]
            if byte == UInt8(ascii: "%"), i + 2 < source.count,
                let high = PathNormalizer.hexValue(source[i + 1]), let low = PathNormalizer.hexValue(source[i + 2])
            {
                bytes.append(high << 4 | low)
                i += 3
            } else {
                bytes.append(byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var s = self
        while let first = s.first, first == " " || first == "\t" { s = s.dropFirst() }
        while let last = s.last, last == " " || last == "\t" { s = s.dropLast() }
        return s
    }
}

import SluiceConfig

/// Derives a request's key for a rule from its key parts (SPEC §2 "Keys").
///
/// Two forms exist:
/// - the **display key**, the part values joined with `|` (`203.0.113.7|/login`), which the admin API accepts
///   (SPEC §7); it is ambiguous when a value contains `|`, which is why it is never used for storage;
/// - the **digested key** (``combineKey(for:path:into:)``): each value absorbed into the storage key's hasher as
///   its bits (addresses) or its UTF-8 length then bytes, so `a|b` + `c` and `a` + `b|c` differ and no value can
///   forge another key.
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

    /// Absorbs the key of `request` into `hasher` (the digest of a storage key, see ``StorageKey``); returns
    /// `false` when a part is absent.
    ///
    /// Each value goes in as what identifies it, without building the encoded text: an address as its 128 bits, a
    /// text value as its length and UTF-8 bytes (so values cannot run into each other, as with the encoded key).
    public func combineKey<R: RequestAttributes>(for request: R, path: Substring, into hasher: inout KeyHasher) -> Bool {
        for part in self.parts {
            switch part {
            case .ip:
                Self.combine(request.clientIP, into: &hasher)
            case .ipPrefix(let bits):
                Self.combine(request.clientIP.masked(toPrefix: bits), into: &hasher)
            case .header(let name):
                guard let value = request.header(name), !value.isEmpty else { return false }
                hasher.combine(lengthPrefixed: value)
            case .path:
                hasher.combine(lengthPrefixed: path)
            case .method:
                hasher.combine(lengthPrefixed: request.method)
            case .host:
                guard let host = request.host, !host.isEmpty else { return false }
                Self.combineHost(host, into: &hasher)
            case .const(let text):
                hasher.combine(lengthPrefixed: text)
            case .query, .cookie:
                guard let value = Self.value(of: part, request: request, path: path) else { return false }
                hasher.combine(lengthPrefixed: value)
            }
        }
        return true
    }

    /// Absorbs the key given in display form (`203.0.113.7|/login`, SPEC §7) exactly as ``combineKey(for:path:into:)``
    /// absorbs the request that has those values; `false` when there are too few values or an address is invalid.
    ///
    /// The display key is split into exactly as many values as there are parts, so only the last value may
    /// contain `|`. An `ip/N` value may be given with or without its `/N`.
    public func combineKey(fromDisplayKey displayKey: String, into hasher: inout KeyHasher) -> Bool {
        let values = displayKey.split(
            separator: "|",
            maxSplits: max(0, self.parts.count - 1),
            omittingEmptySubsequences: false
        )
        guard values.count == self.parts.count else { return false }
        for (part, value) in zip(self.parts, values) {
            switch part {
            case .ip:
                guard let address = IPAddress(value) else { return false }
                Self.combine(address, into: &hasher)
            case .ipPrefix(let bits):
                let text = value.split(separator: "/", maxSplits: 1).first ?? value
                guard let address = IPAddress(text) else { return false }
                Self.combine(address.masked(toPrefix: bits), into: &hasher)
            case .host:
                Self.combineHost(String(value), into: &hasher)
            default:
                hasher.combine(lengthPrefixed: value)
            }
        }
        return true
    }

    private static func combine(_ address: IPAddress, into hasher: inout KeyHasher) {
        hasher.combine(address.high)
        hasher.combine(address.low)
    }

    /// The `host` part as ``value(of:request:path:)`` gives it (lower case, no port), without building it.
    private static func combineHost(_ host: String, into hasher: inout KeyHasher) {
        let name = HostName.withoutPort(host)
        hasher.combine(UInt64(name.utf8.count))
        for byte in name.utf8 { hasher.combine(byte: HostName.lowercase(byte)) }
    }

    /// The display form of part values (SPEC §7): joined with `|`.
    public static func displayKey(_ values: [String]) -> String {
        values.joined(separator: "|")
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

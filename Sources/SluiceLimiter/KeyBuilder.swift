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
/// Header, query and cookie values are read without their surrounding whitespace (SPEC §3 "Hostile clients",
/// RFC 9110 §5.5; for `query:` after percent-decoding, so `?k=A%20` is `A`); `host` is the host name lower-cased,
/// without its port and one trailing dot (``HostName/name(of:)``); `cookie:` looks in every `Cookie` field.
///
/// Decisions where the spec is silent: an empty header, query or cookie value counts as absent; `query:` values
/// are percent-decoded with `+` read as a space (as HTML forms and Flask's `request.args` do); the first
/// occurrence of a repeated query parameter or cookie wins (across `Cookie` fields in the order received).
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
                guard request.hasClientIP else { return false }
                Self.combine(request.clientIP, into: &hasher)
            case .ipPrefix(let bits):
                guard request.hasClientIP else { return false }
                Self.combine(request.clientIP.masked(toPrefix: bits), into: &hasher)
            case .header(let name):
                guard let value = request.trimmedHeader(name), !value.isEmpty else { return false }
                hasher.combine(lengthPrefixed: value)
            case .path:
                hasher.combine(lengthPrefixed: path)
            case .method:
                hasher.combine(lengthPrefixed: request.method)
            case .host:
                guard let host = request.host, Self.combineHost(host[...], into: &hasher) else { return false }
            case .const(let text):
                hasher.combine(lengthPrefixed: text)
            case .query, .cookie:
                guard let value = Self.value(of: part, request: request, path: path) else { return false }
                hasher.combine(lengthPrefixed: value)
            case .jwt(let claim):
                guard let value = request.verifiedClaims?.keyValue(claim) else { return false }
                hasher.combine(lengthPrefixed: value)
            case .descriptor(let key):
                guard let value = request.descriptorValue(key), !value.isEmpty else { return false }
                hasher.combine(lengthPrefixed: value)
            }
        }
        return true
    }

    /// Absorbs the key given in display form (`203.0.113.7|/login`, SPEC §7) exactly as ``combineKey(for:path:into:)``
    /// absorbs the request that has those values; `false` when there are too few values or an address is invalid.
    ///
    /// The display key is split into exactly as many values as there are parts, so only the last value may
    /// contain `|`. An `ip/N` value may be given with or without its `/N`. Values are read as a request's are: a
    /// `host` as its host name (``HostName/name(of:)``), header, query and cookie values without surrounding
    /// whitespace.
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
                guard Self.combineHost(value, into: &hasher) else { return false }
            case .header, .query, .cookie:
                hasher.combine(lengthPrefixed: FieldValue.trimmed(value))
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

    /// The `host` part as ``value(of:request:path:)`` gives it (``HostName/normalized(_:)``), without building it;
    /// `false` when the host name is empty (the part is absent), and then nothing is absorbed.
    private static func combineHost(_ host: Substring, into hasher: inout KeyHasher) -> Bool {
        let name = HostName.name(of: host)
        guard !name.isEmpty else { return false }
        hasher.combine(UInt64(name.utf8.count))
        for byte in name.utf8 { hasher.combine(byte: HostName.lowercase(byte)) }
        return true
    }

    /// The display form of part values (SPEC §7): joined with `|`.
    public static func displayKey(_ values: [String]) -> String {
        values.joined(separator: "|")
    }

    /// The value of one key part, `nil` if absent.
    public static func value<R: RequestAttributes>(of part: KeyPart, request: R, path: Substring) -> String? {
        switch part {
        case .ip:
            return request.hasClientIP ? request.clientIP.description : nil
        case .ipPrefix(let bits):
            return request.hasClientIP ? "\(request.clientIP.masked(toPrefix: bits))/\(bits)" : nil
        case .header(let name):
            guard let value = request.trimmedHeader(name), !value.isEmpty else { return nil }
            return String(value)
        case .query(let name):
            return Self.queryValue(named: name, in: request.uri)
        case .cookie(let name):
            return Self.cookieValue(named: name, in: request)
        case .path:
            return String(path)
        case .method:
            return request.method
        case .host:
            guard let host = request.host else { return nil }
            let name = HostName.normalized(host[...])
            return name.isEmpty ? nil : name
        case .const(let text):
            return text
        case .jwt(let claim):
            return request.verifiedClaims?.keyValue(claim)
        case .descriptor(let key):
            guard let value = request.descriptorValue(key), !value.isEmpty else { return nil }
            return value
        }
    }

    /// The percent-decoded value of the first query parameter `name` in a request target, without surrounding
    /// whitespace; `nil` when absent or empty.
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
            let trimmed = FieldValue.trimmed(value)
            if trimmed.isEmpty { return nil }
            return trimmed.utf8.count == value.utf8.count ? value : String(trimmed)
        }
        return nil
    }

    /// The value of the first cookie `name` in the request's `Cookie` fields, in the order received (RFC 6265 §5.4
    /// asks for one field, but HTTP/1.1 clients and proxies send several, and Node, Go and nginx read them all);
    /// `nil` when absent or empty. Surrounding quotes are kept.
    static func cookieValue<R: RequestAttributes>(named name: String, in request: R) -> String? {
        var found: Substring?
        request.forEachHeaderValue("cookie") { field in
            found = Self.cookieValue(named: name, in: field)
            return found == nil
        }
        guard let found, !found.isEmpty else { return nil }
        return String(found)
    }

    /// The value of the first cookie `name` in one `Cookie` field (`a=1; b=2`), without surrounding whitespace
    /// (possibly empty); `nil` when the field has no such cookie.
    static func cookieValue(named name: String, in field: String) -> Substring? {
        var rest = field[...]
        while !rest.isEmpty {
            // One `name=value` pair at a time, without building the list of pairs.
            let end = rest.utf8.firstIndex(of: UInt8(ascii: ";")) ?? rest.endIndex
            let pair = rest[..<end]
            rest = end == rest.endIndex ? rest[end...] : rest[rest.utf8.index(after: end)...]
            guard let equals = pair.utf8.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let cookieName = FieldValue.trimmed(pair[..<equals])
            guard cookieName == name else { continue }
            return FieldValue.trimmed(pair[pair.utf8.index(after: equals)...])
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

/// A request target split into its decoded path and query parameters.
///
/// Query values are percent-decoded per RFC 3986 and `+` stays a plus sign (not a space as in HTML forms): keys
/// such as base64 API keys contain `+`, and an operator pasting one into `curl` must get that key, not another.
/// A space is sent as `%20`.
struct AdminRequestTarget: Sendable, Equatable {
    /// The decoded path, e.g. `/limits/login`.
    var path: String
    /// Query parameters in order; a name without `=` has an empty value.
    var query: [(name: String, value: String)]

    /// `nil` when the target holds an invalid percent escape or is not valid UTF-8 once decoded.
    init?(_ uri: String) {
        let pathPart: Substring
        let queryPart: Substring?
        if let mark = uri.firstIndex(of: "?") {
            pathPart = uri[..<mark]
            queryPart = uri[uri.index(after: mark)...]
        } else {
            pathPart = uri[...]
            queryPart = nil
        }
        guard let path = Self.percentDecoded(pathPart) else { return nil }
        self.path = path
        self.query = []
        guard let queryPart else { return }
        for pair in queryPart.split(separator: "&", omittingEmptySubsequences: true) {
            let equals = pair.firstIndex(of: "=")
            let rawName = equals.map { pair[..<$0] } ?? pair
            let rawValue = equals.map { pair[pair.index(after: $0)...] } ?? ""
            guard let name = Self.percentDecoded(rawName), let value = Self.percentDecoded(rawValue) else { return nil }
            self.query.append((name, value))
        }
    }

    /// The first value of parameter `name`.
    func queryValue(_ name: String) -> String? {
        self.query.first { $0.name == name }?.value
    }

    static func == (lhs: AdminRequestTarget, rhs: AdminRequestTarget) -> Bool {
        lhs.path == rhs.path && lhs.query.elementsEqual(rhs.query) { $0.name == $1.name && $0.value == $1.value }
    }

    /// Decodes `%XX` escapes; `nil` on a malformed escape or invalid UTF-8.
    static func percentDecoded(_ text: Substring) -> String? {
        guard text.utf8.contains(UInt8(ascii: "%")) else { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue)
            else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

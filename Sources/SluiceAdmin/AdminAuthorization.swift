/// The `admin_token` check of SPEC §7: `Authorization: Bearer TOKEN`.
///
/// The comparison takes the same time wherever the first differing byte is, so the token cannot be guessed byte
/// by byte from response times. Only its length can leak, which is no help to a guesser.
enum AdminAuthorization {
    /// Whether `header` (the `Authorization` value, `nil` if absent) carries `token`.
    ///
    /// The scheme is matched case-insensitively (RFC 9110 §11.1); spaces around the token are ignored.
    static func isAuthorized(header: String?, token: String) -> Bool {
        guard let header else { return false }
        var value = Substring(header)
        while value.first == " " || value.first == "\t" { value = value.dropFirst() }
        guard value.count > 7, value.prefix(7).lowercased() == "bearer " else { return false }
        var presented = value.dropFirst(7)
        while presented.first == " " || presented.first == "\t" { presented = presented.dropFirst() }
        while presented.last == " " || presented.last == "\t" { presented = presented.dropLast() }
        return Self.constantTimeEquals(Array(presented.utf8), Array(token.utf8))
    }

    /// Compares every byte of the longer input, whatever the content.
    static func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        var difference: UInt8 = lhs.count == rhs.count ? 0 : 1
        let length = max(lhs.count, rhs.count)
        for index in 0..<length {
            let a = index < lhs.count ? lhs[index] : 0
            let b = index < rhs.count ? rhs[index] : 0
            difference |= a ^ b
        }
        return difference == 0
    }
}

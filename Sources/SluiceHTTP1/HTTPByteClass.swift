/// The byte classes of RFC 9110 §5.6.2 and RFC 9112 that the head parser tests, as one 256-entry table.
///
/// One load and one mask per byte, as HAProxy's `h1` parser does (`src/h1.c`): no branch ladder per character.
enum HTTPByteClass {
    /// `tchar` (RFC 9110 §5.6.2): method and field names.
    static let token: UInt8 = 1 << 0
    /// `field-vchar`, SP and HTAB (RFC 9110 §5.5): a field value, obs-text (0x80–0xFF) included.
    static let fieldValue: UInt8 = 1 << 1
    /// Visible ASCII (0x21–0x7E): a request target (RFC 9112 §3.2 and RFC 3986 are stricter still).
    static let target: UInt8 = 1 << 2
    /// Characters of a `Host` value (RFC 3986 reg-name, IP-literal and port).
    static let host: UInt8 = 1 << 3
    /// Hexadecimal digits.
    static let hex: UInt8 = 1 << 4

    static let table: [UInt8] = {
        var table = [UInt8](repeating: 0, count: 256)
        let tokenPunctuation = Array("!#$%&'*+-.^_`|~".utf8)
        let hostPunctuation = Array("-._~!$&'()*+,;=%[]:".utf8)
        for byte in 0..<256 {
            let b = UInt8(byte)
            var classes: UInt8 = 0
            let isAlpha = (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
            let isDigit = b >= 0x30 && b <= 0x39
            if isAlpha || isDigit || tokenPunctuation.contains(b) { classes |= Self.token }
            if b == 0x09 || b == 0x20 || (b >= 0x21 && b <= 0x7E) || b >= 0x80 { classes |= Self.fieldValue }
            if b >= 0x21 && b <= 0x7E { classes |= Self.target }
            // The comma is excluded: `Host: a, b` is two hosts (SPEC §3).
            if (isAlpha || isDigit || hostPunctuation.contains(b)) && b != UInt8(ascii: ",") { classes |= Self.host }
            if isDigit || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66) { classes |= Self.hex }
            table[byte] = classes
        }
        return table
    }()

    @inline(__always)
    static func `is`(_ byte: UInt8, _ classMask: UInt8) -> Bool {
        self.table.withUnsafeBufferPointer { $0[Int(byte)] } & classMask != 0
    }

    /// ASCII lower case of a byte (other bytes unchanged).
    @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }
}

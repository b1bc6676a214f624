/// The byte classes of RFC 9110 §5.6.2 and RFC 9112 that the head parser tests, as one 256-entry table.
///
/// A few integer operations per byte on constants (HAProxy's `h1` parser uses a table the same way, `src/h1.c`).
public enum HTTPByteClass {
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

    /// `token` and `host` as bitmaps of the ASCII range (bit `b` of `lo` for bytes 0–63, of `hi` for 64–127): integer
    /// constants, folded into the code, so testing a byte is a shift and a mask with no table to load (a `static let`
    /// array costs a lazy-initialisation check and a retain per access, per byte). ``referenceTable`` states the
    /// classes the plain way; a test holds the two together.
    static let tokenLo: UInt64 = 0x03ff_6cfa_0000_0000
    static let tokenHi: UInt64 = 0x57ff_ffff_c7ff_fffe
    static let hostLo: UInt64 = 0x2fff_6ff2_0000_0000
    static let hostHi: UInt64 = 0x47ff_fffe_afff_fffe

    /// The classes of every byte, built from their definitions (for tests; the parsers use ``is(_:_:)``).
    static let referenceTable: [UInt8] = {
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
    private static func inASCIIBitmap(_ byte: UInt8, _ lo: UInt64, _ hi: UInt64) -> Bool {
        if byte < 64 { return (lo >> UInt64(byte)) & 1 != 0 }
        if byte < 128 { return (hi >> UInt64(byte &- 64)) & 1 != 0 }
        return false
    }

    /// Whether `byte` is in the class `classMask` (one of ``token``, ``fieldValue``, ``target``, ``host``, ``hex``; a
    /// constant at every call site, so the switch folds away).
    @inline(__always)
    static func `is`(_ byte: UInt8, _ classMask: UInt8) -> Bool {
        switch classMask {
        case Self.token: return Self.inASCIIBitmap(byte, Self.tokenLo, Self.tokenHi)
        case Self.host: return Self.inASCIIBitmap(byte, Self.hostLo, Self.hostHi)
        case Self.fieldValue: return byte == 0x09 || (byte >= 0x20 && byte != 0x7F)
        case Self.target: return byte >= 0x21 && byte <= 0x7E
        case Self.hex: return (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x66)
        default: return Self.referenceTable[Int(byte)] & classMask != 0
        }
    }

    /// ASCII lower case of a byte (other bytes unchanged).
    @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
    }

    /// `tchar` (RFC 9110 §5.6.2), for other modules' checks of names (HTTP/2 fields and methods).
    public static func isTokenByte(_ byte: UInt8) -> Bool {
        Self.is(byte, Self.token)
    }

    /// A byte of a `Host` value (reg-name, IP literal, port; no comma), for other modules' checks of an authority.
    public static func isHostByte(_ byte: UInt8) -> Bool {
        Self.is(byte, Self.host)
    }
}

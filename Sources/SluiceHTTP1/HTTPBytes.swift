/// Byte-level helpers for code that reads heads through their offsets (the parsers and the head writers).
public enum HTTPBytes {
    /// Whether `bytes[range]` equals the lower-case `literal`, ASCII letters compared without case.
    @inlinable
    public static func equalsLowercased(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        let expected = literal.utf8Start
        var k = 0
        for i in range {
            let b = bytes[i]
            if (b >= 0x41 && b <= 0x5A ? b | 0x20 : b) != expected[k] { return false }
            k += 1
        }
        return true
    }

    /// Whether `bytes[a]` and `bytes[b]` are equal, ASCII letters compared without case.
    @inlinable
    public static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>) -> Bool {
        guard a.count == b.count else { return false }
        var j = b.lowerBound
        for i in a {
            let x = bytes[i]
            let y = bytes[j]
            if (x >= 0x41 && x <= 0x5A ? x | 0x20 : x) != (y >= 0x41 && y <= 0x5A ? y | 0x20 : y) { return false }
            j += 1
        }
        return true
    }

    /// Calls `body` with each non-empty element of a comma-separated list value (RFC 9110 §5.6.1), without the
    /// whitespace around it.
    @inlinable
    public static func forEachListElement(_ bytes: UnsafeRawBufferPointer, _ value: Range<Int>, _ body: (Range<Int>) -> Void) {
        var i = value.lowerBound
        while i < value.upperBound {
            while i < value.upperBound, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x2C { i += 1 }
            let start = i
            while i < value.upperBound, bytes[i] != 0x2C { i += 1 }
            var end = i
            while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
            if end > start { body(start..<end) }
        }
    }
}

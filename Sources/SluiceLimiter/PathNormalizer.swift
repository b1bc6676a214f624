/// The normalised request path used for matching and for the `path` key part (SPEC §2 "Paths").
///
/// A limit on `/login` must not be escaped by writing the same resource another way, so before matching:
/// - the query string and fragment are dropped, and an absolute-form target (`http://host/login`) gives its path;
/// - percent-encoded *unreserved* characters (`ALPHA DIGIT - . _ ~`) are decoded (`/%6Cogin` → `/login`), while
///   every other escape stays encoded with upper-case hex (`%2f` → `%2F`: an encoded slash is not a separator), and
///   so does an escape whose character would make a new escape with a `%` before it (`%4%31` stays, it does not
///   become `%41`), so that normalising twice gives what normalising once gives;
/// - `.` and `..` segments are removed as in RFC 3986 §5.2.4 (never above the root);
/// - repeated `/` are collapsed.
///
/// Decoding happens before dot-segment removal, so `/%2e%2e/admin` is `/admin` just as the upstream would see it.
/// The request itself is forwarded unchanged; only the limiter sees this form.
public enum PathNormalizer {
    /// The normalised path of a request target.
    ///
    /// Returns a slice of `target` (no allocation) when the path needs no change, which is the common case.
    public static func normalize(_ target: String) -> Substring {
        let path = self.path(of: target)
        guard self.needsRewrite(path) else { return path }
        return Substring(self.rewrite(path))
    }

    /// The path part of an origin-form (`/a?b`) or absolute-form (`http://h/a?b`) request target.
    static func path(of target: String) -> Substring {
        let utf8 = target.utf8
        var start = utf8.startIndex
        if let first = utf8.first, first != UInt8(ascii: "/") {
            // Absolute form: skip `scheme://authority`.
            guard let schemeEnd = self.find("://", in: target) else { return target[...] }
            var i = utf8.index(schemeEnd, offsetBy: 3)
            while i < utf8.endIndex, utf8[i] != UInt8(ascii: "/"), utf8[i] != UInt8(ascii: "?"),
                utf8[i] != UInt8(ascii: "#")
            {
                i = utf8.index(after: i)
            }
            guard i < utf8.endIndex, utf8[i] == UInt8(ascii: "/") else { return "/" }
            start = i
        }
        var end = start
        while end < utf8.endIndex, utf8[end] != UInt8(ascii: "?"), utf8[end] != UInt8(ascii: "#") {
            end = utf8.index(after: end)
        }
        if start == end { return "/" }
        return target[start..<end]
    }

    private static func find(_ needle: StaticString, in text: String) -> String.Index? {
        let n = needle.utf8Start
        let count = needle.utf8CodeUnitCount
        let utf8 = text.utf8
        var i = utf8.startIndex
        while i < utf8.endIndex {
            let byte = utf8[i]
            if byte == UInt8(ascii: "/") || byte == UInt8(ascii: "?") { return nil }
            var j = i
            var k = 0
            while k < count, j < utf8.endIndex, utf8[j] == n[k] {
                j = utf8.index(after: j)
                k += 1
            }
            if k == count { return i }
            i = utf8.index(after: i)
        }
        return nil
    }

    /// Whether the path has an escape, an empty segment or a dot segment.
    static func needsRewrite(_ path: Substring) -> Bool {
        guard path.utf8.first == UInt8(ascii: "/") else { return false }
        var previousWasSlash = false
        var dotsInSegment = 0
        var segmentLength = 0
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "%"):
                return true
            case UInt8(ascii: "/"):
                if previousWasSlash { return true }
                if segmentLength > 0 && dotsInSegment == segmentLength && segmentLength <= 2 { return true }
                previousWasSlash = true
                dotsInSegment = 0
                segmentLength = 0
            case UInt8(ascii: "."):
                previousWasSlash = false
                dotsInSegment += 1
                segmentLength += 1
            default:
                previousWasSlash = false
                segmentLength += 1
            }
        }
        return segmentLength > 0 && dotsInSegment == segmentLength && segmentLength <= 2
    }

    private static func rewrite(_ path: Substring) -> String {
        // 1. Decode unreserved escapes, upper-case the others.
        var decoded: [UInt8] = []
        decoded.reserveCapacity(path.utf8.count)
        let bytes = Array(path.utf8)
        var i = 0
        while i < bytes.count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "%"), i + 2 < bytes.count,
                let high = self.hexValue(bytes[i + 1]), let low = self.hexValue(bytes[i + 2])
            {
                let value = high << 4 | low
                if self.isUnreserved(value) && !self.completesEscape(decoded, with: value) {
                    decoded.append(value)
                } else {
                    decoded.append(UInt8(ascii: "%"))
                    decoded.append(self.upperHex(high))
                    decoded.append(self.upperHex(low))
                }
                i += 3
            } else {
                decoded.append(byte)
                i += 1
            }
        }
        // 2. Remove dot segments and empty segments.
        var output: [UInt8] = []
        output.reserveCapacity(decoded.count)
        var segmentStarts: [Int] = []
        var trailingSlash = false
        for segment in decoded.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            trailingSlash = false
            if segment.count == 1 && segment.first == UInt8(ascii: ".") {
                trailingSlash = true
                continue
            }
            if segment.count == 2 && segment.allSatisfy({ $0 == UInt8(ascii: ".") }) {
                if let start = segmentStarts.popLast() { output.removeSubrange(start...) }
                trailingSlash = true
                continue
            }
            segmentStarts.append(output.count)
            output.append(UInt8(ascii: "/"))
            output.append(contentsOf: segment)
        }
        if decoded.last == UInt8(ascii: "/") { trailingSlash = true }
        if output.isEmpty { return "/" }
        if trailingSlash { output.append(UInt8(ascii: "/")) }
        return String(decoding: output, as: UTF8.self)
    }

    /// Whether appending the decoded `byte` to `decoded` would make a new escape with a `%` already there (`%4` then
    /// `%31` decoded would give `%41`, which a second pass would decode to `A`). Such an escape stays encoded, so that
    /// normalising is idempotent (found by the `path` fuzz target).
    private static func completesEscape(_ decoded: [UInt8], with byte: UInt8) -> Bool {
        guard self.hexValue(byte) != nil, let last = decoded.last else { return false }
        if last == UInt8(ascii: "%") { return true }
        return decoded.count >= 2 && decoded[decoded.count - 2] == UInt8(ascii: "%") && self.hexValue(last) != nil
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func upperHex(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "A") + nibble - 10
    }

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            true
        default:
            false
        }
    }
}

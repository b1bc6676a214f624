import FuzzSupport
@testable import SluiceConfig
@testable import SluiceLimiter

/// Path normalisation (``PathNormalizer``), the form every path rule is matched against (SPEC §2 "Paths").
///
/// Checks on an arbitrary request target:
/// - normalising twice equals normalising once;
/// - a normalised origin-form path has no `//`, no `.` or `..` segment, no lower-case escape, and no escape of an
///   unreserved character but one that decoding would turn into a new escape with a `%` before it;
/// - the path and its variants normalise alike: unreserved characters percent-encoded (either case of hex), `./`
///   and `x/../` inserted after a `/`, `/` doubled, an absolute-form prefix, a query and a fragment (the variants
///   are drawn from a generator seeded with the input);
/// - so a rule written for the normalised path (exact, prefix and glob patterns made from it) matches the path and
///   every variant alike.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPath(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = FuzzInput.bytes(data, size)
    let target = String(decoding: bytes, as: UTF8.self)
    let once = PathNormalizer.normalize(target)
    let twice = PathNormalizer.normalize(String(once))
    fuzzCheck(twice == once, "normalising \(target.debugDescription) gave \(once.debugDescription), then \(twice.debugDescription)")
    guard once.utf8.first == UInt8(ascii: "/") else { return 0 }
    PathFuzzing.checkNormalForm(once, of: target)

    let path = String(once)
    let matchers = PathFuzzing.matchers(for: path)
    let expected = matchers.map { $0.matchesPath(once) }
    var random = SplitMix64(seed: FuzzInput.fnv1a(bytes))
    for variant in PathFuzzing.variants(of: path, &random) {
        let normalised = PathNormalizer.normalize(variant)
        fuzzCheck(normalised == once, "variant \(variant.debugDescription) of \(path.debugDescription) normalised to \(normalised.debugDescription)")
        let matched = matchers.map { $0.matchesPath(normalised) }
        fuzzCheck(matched == expected, "variant \(variant.debugDescription) of \(path.debugDescription) matched \(matched), not \(expected)")
    }
    return 0
}

enum PathFuzzing {
    static func checkNormalForm(_ path: Substring, of target: String) {
        let utf8 = Array(path.utf8)
        let shown = "\(path.debugDescription) from \(target.debugDescription)"
        let segments = utf8.split(separator: 0x2F, omittingEmptySubsequences: false).dropFirst()
        for (index, segment) in segments.enumerated() {
            // Only the last segment may be empty: a trailing slash (and `/` itself).
            fuzzCheck(!segment.isEmpty || index == segments.count - 1, "empty segment in \(shown)")
            fuzzCheck(!segment.elementsEqual([0x2E]) && !segment.elementsEqual([0x2E, 0x2E]), "dot segment in \(shown)")
        }
        for i in utf8.indices {
            fuzzCheck(utf8[i] != UInt8(ascii: "?") && utf8[i] != UInt8(ascii: "#"), "query or fragment left in \(shown)")
            guard utf8[i] == UInt8(ascii: "%"), i + 2 < utf8.count,
                let high = PathNormalizer.hexValue(utf8[i + 1]), let low = PathNormalizer.hexValue(utf8[i + 2])
            else { continue }
            // An escape of a hex digit stays when decoding it would make a new escape with the `%` before it.
            let value = high << 4 | low
            let makesEscape = PathNormalizer.hexValue(value) != nil
                && (utf8[i - 1] == UInt8(ascii: "%") || (i >= 2 && utf8[i - 2] == UInt8(ascii: "%") && PathNormalizer.hexValue(utf8[i - 1]) != nil))
            fuzzCheck(!Self.isUnreserved(value) || makesEscape, "escaped unreserved character in \(shown)")
            fuzzCheck(utf8[i + 1] < 0x61 && utf8[i + 2] < 0x61, "lower-case escape in \(shown)")
        }
    }

    static func isUnreserved(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
            || byte == 0x2D || byte == 0x2E || byte == 0x5F || byte == 0x7E
    }

    /// Rules made from a normalised path: the path exactly, its first segment as a prefix, and the path as a glob with
    /// one segment replaced by `*` (when the path parses as such a pattern).
    static func matchers(for path: String) -> [RuleMatcher] {
        var patterns: [PathPattern] = []
        if case .success(let exact) = PathPattern.parse(path) { patterns.append(exact) }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        if let first = segments.first, !first.isEmpty, case .success(let prefix) = PathPattern.parse("/\(first)/*") {
            patterns.append(prefix)
        }
        if segments.count >= 2 {
            var starred = Array(segments)
            starred[starred.count / 2] = "*"
            if case .success(let glob) = PathPattern.parse("/" + starred.joined(separator: "/")) { patterns.append(glob) }
        }
        return patterns.map { RuleMatcher(RuleMatch(path: $0)) }
    }

    /// Ways of writing the same path that a client may try.
    static func variants(of path: String, _ random: inout SplitMix64) -> [String] {
        let utf8 = Array(path.utf8)
        var result: [String] = []
        // Unreserved characters percent-encoded, upper- or lower-case hex.
        var encoded: [UInt8] = []
        for (i, byte) in utf8.enumerated() {
            // An escape's own digits stay: encoding them would make another escape, not the same character.
            let inEscape = (i >= 1 && utf8[i - 1] == 0x25) || (i >= 2 && utf8[i - 2] == 0x25)
            if !inEscape, Self.isUnreserved(byte), random.below(2) == 0 {
                let hex = Array(random.below(2) == 0 ? "0123456789ABCDEF".utf8 : "0123456789abcdef".utf8)
                encoded += [0x25, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            } else {
                encoded.append(byte)
            }
        }
        result.append(String(decoding: encoded, as: UTF8.self))
        // `./`, `x/../` (plain and encoded) and a doubled `/` after some slashes.
        for insertion in ["./", "x/../", "/", "%2e/", "x/%2E%2e/"].map({ Array($0.utf8) }) {
            var changed: [UInt8] = []
            for byte in utf8 {
                changed.append(byte)
                if byte == 0x2F, random.below(2) == 0 { changed += insertion }
            }
            result.append(String(decoding: changed, as: UTF8.self))
        }
        // `..` above the root.
        result.append("/%2E%2e" + path)
        result.append("http://example.com" + path)
        result.append("HTTPS://example.com:8443" + path + "?q=1#f")
        result.append(path + "?")
        result.append(path + "#" + path)
        return result
    }
}

import NIOHTTP1

extension String {
    /// ASCII case-insensitive equality against a lower-case literal, without allocating.
    @inline(__always)
    func equalsLowercasedASCII(_ lowercased: String) -> Bool {
        guard self.utf8.count == lowercased.utf8.count else { return false }
        for (a, b) in zip(self.utf8, lowercased.utf8) {
            let folded = (a >= UInt8(ascii: "A") && a <= UInt8(ascii: "Z")) ? a | 0x20 : a
            if folded != b { return false }
        }
        return true
    }
}

extension HTTPHeaders {
    /// How many fields are named `lowercasedName` (not comma-split), without allocating.
    func count(name lowercasedName: String) -> Int {
        var n = 0
        for (name, _) in self where name.equalsLowercasedASCII(lowercasedName) {
            n += 1
        }
        return n
    }
}

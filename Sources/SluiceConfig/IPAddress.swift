/// An IPv4 or IPv6 address as 128 bits; IPv4 and IPv4-mapped IPv6 addresses are the same value (SPEC §4).
///
/// A value type without heap storage so the client IP of every request costs no allocation.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address in network order as two 64-bit halves; IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`).
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public init(ipv4 value: UInt32) {
        self.high = 0
        self.low = 0x0000_FFFF_0000_0000 | UInt64(value)
    }

    public var isIPv4: Bool { self.high == 0 && (self.low >> 32) == 0x0000_FFFF }

    /// The 32-bit value of an IPv4 address.
    public var ipv4Value: UInt32? { self.isIPv4 ? UInt32(truncatingIfNeeded: self.low) : nil }

    /// Parses `a.b.c.d` or an IPv6 literal (with or without brackets, with an optional `%zone` dropped).
    public init?(_ text: some StringProtocol) {
        var s = Substring(text)
        if s.first == "[" && s.last == "]" { s = s.dropFirst().dropLast() }
        if let percent = s.firstIndex(of: "%") { s = s[..<percent] }
        if s.contains(":") {
            guard let v = IPAddress.parseIPv6(s) else { return nil }
            self = v
        } else {
            guard let v = IPAddress.parseIPv4(s) else { return nil }
            self.init(ipv4: v)
        }
    }

    static func parseIPv4(_ s: Substring) -> UInt32? {
        var value: UInt32 = 0
        var octets = 0
        var current: UInt32 = 0
        var digits = 0
        for byte in s.utf8 {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, octets < 3 else { return nil }
                value = value << 8 | current
                octets += 1
                current = 0
                digits = 0
            } else if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                // Leading zeros are refused: some parsers read them as octal.
                if digits > 0 && current == 0 { return nil }
                current = current * 10 + UInt32(byte - UInt8(ascii: "0"))
                digits += 1
                guard current <= 255, digits <= 3 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, octets == 3 else { return nil }
        return value << 8 | current
    }

    static func parseIPv6(_ s: Substring) -> IPAddress? {
        var groups: [UInt16] = []
        var tail: [UInt16] = []
        var sawDoubleColon = false
        var parts = s.split(separator: ":", omittingEmptySubsequences: false)[...]
        // Handle leading/trailing "::".
        if s.hasPrefix("::") {
            parts = parts.dropFirst()
        }
        if s.hasSuffix("::") {
            parts = parts.dropLast()
        }
        var embeddedV4: UInt32?
        for (index, part) in parts.enumerated() {
            if part.isEmpty {
                if sawDoubleColon { return nil }
                sawDoubleColon = true
                continue
            }
            if part.contains(".") {
                guard index == parts.count - 1, let v4 = parseIPv4(part) else { return nil }
                embeddedV4 = v4
                continue
            }
            guard part.utf8.count <= 4, let g = UInt16(part, radix: 16) else { return nil }
            if sawDoubleColon { tail.append(g) } else { groups.append(g) }
        }
        if let v4 = embeddedV4 {
            let hi = UInt16(v4 >> 16)
            let lo = UInt16(truncatingIfNeeded: v4)
            if sawDoubleColon { tail += [hi, lo] } else { groups += [hi, lo] }
        }
        let total = groups.count + tail.count
        if sawDoubleColon {
            guard total <= 7 else { return nil }
            groups += Array(repeating: 0, count: 8 - total) + tail
        } else {
            guard total == 8 else { return nil }
        }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for i in 0..<4 { high = high << 16 | UInt64(groups[i]) }
        for i in 4..<8 { low = low << 16 | UInt64(groups[i]) }
        return IPAddress(high: high, low: low)
    }

    /// The first `bits` bits kept, the rest zero. For IPv4, `bits` counts from the IPv4 address (0...32).
    public func masked(toPrefix bits: Int) -> IPAddress {
        if self.isIPv4 {
            let b = max(0, min(32, bits))
            let mask: UInt32 = b == 0 ? 0 : ~UInt32(0) << UInt32(32 - b)
            return IPAddress(ipv4: UInt32(truncatingIfNeeded: self.low) & mask)
        }
        let b = max(0, min(128, bits))
        let highMask: UInt64 = b >= 64 ? ~0 : (b == 0 ? 0 : ~UInt64(0) << UInt64(64 - b))
        let lowMask: UInt64 = b <= 64 ? 0 : (b == 128 ? ~0 : ~UInt64(0) << UInt64(128 - b))
        return IPAddress(high: self.high & highMask, low: self.low & lowMask)
    }

    public var description: String {
        if let v4 = self.ipv4Value {
            return "\(v4 >> 24).\((v4 >> 16) & 0xFF).\((v4 >> 8) & 0xFF).\(v4 & 0xFF)"
        }
        var groups = [UInt16](repeating: 0, count: 8)
        for i in 0..<4 { groups[i] = UInt16(truncatingIfNeeded: self.high >> UInt64(48 - 16 * i)) }
        for i in 0..<4 { groups[4 + i] = UInt16(truncatingIfNeeded: self.low >> UInt64(48 - 16 * i)) }
        // RFC 5952: compress the longest run (length >= 2) of zero groups.
        var bestStart = -1
        var bestLength = 0
        var i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLength && j - i >= 2 {
                    bestStart = i
                    bestLength = j - i
                }
                i = j
            } else {
                i += 1
            }
        }
        func hex(_ range: Range<Int>) -> String {
            groups[range].map { String($0, radix: 16) }.joined(separator: ":")
        }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }
}

/// An address block such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a /32 or /128.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    public var network: IPAddress
    /// For IPv4 blocks, bits of the IPv4 address (0...32); for IPv6, 0...128.
    public var prefixLength: Int

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]) else { return nil }
        let maxBits = address.isIPv4 ? 32 : 128
        var bits = maxBits
        if parts.count == 2 {
            guard let n = Int(parts[1]), n >= 0, n <= maxBits, parts[1].allSatisfy(\.isNumber) else { return nil }
            bits = n
        }
        self.prefixLength = bits
        self.network = address.masked(toPrefix: bits)
    }

    public func contains(_ address: IPAddress) -> Bool {
        guard address.isIPv4 == self.network.isIPv4 else { return false }
        return address.masked(toPrefix: self.prefixLength) == self.network
    }

    public var description: String { "\(self.network)/\(self.prefixLength)" }
}

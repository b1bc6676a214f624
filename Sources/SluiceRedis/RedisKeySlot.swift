import SluiceLimiter

/// Where Redis Cluster keeps a key: one of 16,384 hash slots, CRC16 (XMODEM) of the key modulo 16,384, or of its
/// hash tag, the part between the first `{` and the next `}` when that part is not empty (the cluster
/// specification, "Keys hash tags").
///
/// Sluice names a counter `PREFIX{TAG}DIGEST`, TAG being 8 hex digits of its rule key's ``StoreItem/clusterTag``,
/// so every limit of one key, and its `block_for` box, sit in one slot and one script call stays atomic.
public enum RedisKeySlot {
    public static let count = 16_384

    /// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0, no reflection), as Redis computes it.
    public static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ Self.table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }

    /// The slot of a key as Redis computes it (hash tags honoured).
    public static func slot(of key: some Collection<UInt8>) -> Int {
        if let open = key.firstIndex(of: UInt8(ascii: "{")) {
            let afterOpen = key.index(after: open)
            if let close = key[afterOpen...].firstIndex(of: UInt8(ascii: "}")), close != afterOpen {
                return Int(Self.crc16(key[afterOpen..<close]) & 0x3FFF)
            }
        }
        return Int(Self.crc16(key) & 0x3FFF)
    }

    public static func slot(of key: String) -> Int {
        Self.slot(of: Array(key.utf8))
    }

    /// The slot of every key tagged `tag`: the CRC16 of its 8 hex digits, computed without making them a string
    /// (this runs for every item of every decision).
    public static func slot(tag: UInt32) -> Int {
        var crc: UInt16 = 0
        for index in 0..<8 {
            let digit = Self.hexDigit(tag, index)
            crc = (crc << 8) ^ Self.table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ digit)]
        }
        return Int(crc & 0x3FFF)
    }

    /// The `index`th of the 8 lowercase hex digits of `tag`, most significant first, as ASCII.
    @inline(__always)
    static func hexDigit(_ tag: UInt32, _ index: Int) -> UInt8 {
        let nibble = UInt8(truncatingIfNeeded: tag >> UInt32(28 - 4 * index)) & 0xF
        return nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
    }

    /// The tag of an item: its rule key's, or its own key's when it has none.
    static func tag(of item: StoreItem) -> UInt32 {
        item.clusterTag != 0 ? item.clusterTag : max(1, UInt32(truncatingIfNeeded: item.key.high >> 32))
    }

    /// 8 lowercase hex digits.
    static func tagText(_ tag: UInt32) -> String {
        let digits = String(tag, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    /// `prefix{tag}digest`.
    public static func key(prefix: String, tag: UInt32, key: StorageKey) -> String {
        prefix + "{" + Self.tagText(tag) + "}" + key.description
    }
}

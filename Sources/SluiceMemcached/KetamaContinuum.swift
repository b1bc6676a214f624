/// Consistent hashing of keys over servers, as libmemcached's ketama does it (and pymemcache's ketama clients).
///
/// Each server is placed on a ring of 2^32 points 160 times: for `i` in 0..<40 the MD5 digest of `"host:port-i"` gives
/// four points, its bytes 4k...4k+3 read little-endian. A key goes to the server of the first point at or after the
/// first four bytes of its own MD5 digest (little-endian), wrapping around the ring. So adding a server takes over
/// only the keys that fall just before its points (about 1/N of them), and removing one moves only its own keys.
///
/// Decision where libmemcached differs: it names a server on the default port 11211 `"host-i"` (no port); this
/// continuum always writes `"host:port-i"`, as the issue asks, so a mixed fleet places keys alike only with explicit
/// ports other than 11211.
struct KetamaContinuum: Sendable {
    /// Points on the ring per server (libmemcached's `MEMCACHED_POINTS_PER_SERVER_KETAMA`).
    static let pointsPerServer = 160
    /// Points taken from one digest.
    static let pointsPerDigest = 4

    /// (point, server index), sorted by point.
    private let points: [(point: UInt32, server: Int)]
    let serverCount: Int

    /// - Parameter servers: The servers' `host:port` names, in configuration order (the result indexes them).
    init(servers: [String]) {
        precondition(!servers.isEmpty, "validated by the loader")
        var points: [(point: UInt32, server: Int)] = []
        points.reserveCapacity(servers.count * Self.pointsPerServer)
        for (server, name) in servers.enumerated() {
            for index in 0..<(Self.pointsPerServer / Self.pointsPerDigest) {
                let digest = MD5.digest(Array("\(name)-\(index)".utf8))
                for k in 0..<Self.pointsPerDigest {
                    points.append((Self.littleEndian(digest, at: 4 * k), server))
                }
            }
        }
        // Ties (vanishingly rare) are broken by server index, so every instance builds the same ring.
        self.points = points.sorted { ($0.point, $0.server) < ($1.point, $1.server) }
        self.serverCount = servers.count
    }

    /// The hash of a key on the ring: the first four bytes of its MD5 digest, little-endian.
    static func hash(_ key: some Collection<UInt8>) -> UInt32 {
        Self.littleEndian(MD5.digest(key), at: 0)
    }

    /// The index of the server holding `key`.
    func server(for key: some Collection<UInt8>) -> Int {
        if self.serverCount == 1 { return 0 }
        return self.server(forHash: Self.hash(key))
    }

    /// The server of the first point at or after `hash`, wrapping around.
    func server(forHash hash: UInt32) -> Int {
        var low = 0
        var high = self.points.count
        while low < high {
            let middle = (low + high) / 2
            if self.points[middle].point < hash { low = middle + 1 } else { high = middle }
        }
        return self.points[low == self.points.count ? 0 : low].server
    }

    private static func littleEndian(_ digest: [UInt8], at offset: Int) -> UInt32 {
        UInt32(digest[offset]) | UInt32(digest[offset + 1]) << 8 | UInt32(digest[offset + 2]) << 16
            | UInt32(digest[offset + 3]) << 24
    }
}

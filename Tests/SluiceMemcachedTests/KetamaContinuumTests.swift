import Testing

@testable import SluiceMemcached

@Suite struct KetamaContinuumTests {
    private func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// RFC 1321's test suite.
    @Test func md5TestVectors() {
        let vectors = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"),
            (String(repeating: "1234567890", count: 8), "57edf4a22be3c955ac49da2e2107b67a"),
        ]
        for (text, digest) in vectors {
            #expect(hex(MD5.digest(Array(text.utf8))) == digest, "\(text)")
        }
    }

    /// The same servers as an independent implementation of the same recipe (Python's hashlib, written for this
    /// test) put these keys on.
    @Test func placesKeysAsTheReferenceDoes() {
        let continuum = KetamaContinuum(servers: ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11212"])
        let keys = ["a", "sluice:0123456789abcdef0123456789abcdef", "user:42", "foo", "bar", "baz", "qux", "hello world"]
        #expect(keys.map { continuum.server(for: Array($0.utf8)) } == [2, 1, 0, 1, 0, 0, 2, 0])
    }

    /// Adding a server moves only the keys it takes over, about 1/N of them; the rest stay where they were.
    @Test func addingAServerMovesOnlyItsShare() {
        let two = KetamaContinuum(servers: ["127.0.0.1:11211", "127.0.0.1:11212"])
        let three = KetamaContinuum(servers: ["127.0.0.1:11211", "127.0.0.1:11212", "127.0.0.1:11213"])
        var moved = 0
        var perServer = [0, 0, 0]
        let count = 30_000
        for index in 0..<count {
            let key = Array("sluice:key-\(index)".utf8)
            let before = two.server(for: key)
            let after = three.server(for: key)
            perServer[after] += 1
            if before != after {
                moved += 1
                #expect(after == 2, "a key moved between the old servers")
            }
        }
        // 160 points per server spread keys within a few percent of even.
        #expect(abs(Double(moved) / Double(count) - 1.0 / 3.0) < 0.08)
        #expect(perServer.allSatisfy { abs(Double($0) / Double(count) - 1.0 / 3.0) < 0.08 }, "\(perServer)")
    }

    @Test func oneServerTakesEverything() {
        let one = KetamaContinuum(servers: ["127.0.0.1:11211"])
        #expect((0..<100).allSatisfy { one.server(for: Array("k\($0)".utf8)) == 0 })
    }
}

import NIOCore
import SluiceLimiter
import Testing

@testable import SluiceMemcached

/// The decisions' commands, written from their parts, are byte for byte the ``MemcachedCommands`` they replace.
@Suite struct MemcachedKeyCommandTests {
    private static let key = StorageKey(high: 0x0123_4567_89ab_cdef, low: 0xfedc_ba98_7654_3210)

    private static func direct(_ command: MemcachedKeyCommand, prefix: String, opaque: UInt32) -> String {
        var buffer = ByteBuffer()
        command.write(prefix: prefix, opaque: opaque, into: &buffer)
        return String(buffer: buffer)
    }

    private static func viaStrings(_ command: MemcachedKeyCommand, prefix: String, opaque: UInt32) -> String {
        var buffer = ByteBuffer()
        MemcachedCommandEncoder.write(command.command(prefix: prefix), opaque: opaque, into: &buffer)
        return String(buffer: buffer)
    }

    @Test func keysAreTheKeyspacesNames() {
        let keyspace = MemcachedKeyspace(prefix: "sluice:")
        #expect(MemcachedKeyName(key: Self.key).string(prefix: "sluice:") == keyspace.name(Self.key))
        for (start, period) in [(Int64(0), Int64(1_000_000_000)), (120_000_000_000, 60_000_000_000), (-60, 60)] {
            #expect(
                keyspace.windowName(Self.key, windowStart: start, period: period).string(prefix: "sluice:")
                    == keyspace.window(Self.key, windowStart: start, period: period)
            )
        }
        #expect(MemcachedKeyName(key: Self.key).string(prefix: "p:") == "p:0123456789abcdeffedcba9876543210")
    }

    @Test func everyCommandIsTheStringCommandsBytes() {
        let window = MemcachedKeyName(key: Self.key, window: 29_000_123)
        let state = MemcachedKeyName(key: Self.key)
        let commands: [MemcachedKeyCommand] = [
            .increment(window, cost: 1, ttl: 2),
            .increment(window, cost: 1_000_000, ttl: 1_764_000_000),
            .decrement(window, cost: 3),
            .get(window),
            .get(state),
            .getWithCAS(state),
            .store(state, value: MemcachedKeyspace.encode([1, -2]), ttl: 61, cas: 12_345_678_901, swap: true),
            .store(state, value: MemcachedKeyspace.encode([7]), ttl: 5, cas: nil, swap: true),
            .store(state, value: MemcachedKeyspace.encode([0]), ttl: 1, cas: nil, swap: false),
            .store(state, value: MemcachedKeyspace.encode([0]), ttl: 1, cas: 9, swap: false),
        ]
        for command in commands {
            for opaque: UInt32 in [0, 1, 10, 4_294_967_295] {
                #expect(Self.direct(command, prefix: "test:", opaque: opaque) == Self.viaStrings(command, prefix: "test:", opaque: opaque))
            }
        }
        #expect(Self.direct(.increment(window, cost: 2, ttl: 61), prefix: "", opaque: 7)
            == "ma 0123456789abcdeffedcba9876543210:29000123 N61 J2 D2 v O7\r\n")
    }

    @Test func decimals() {
        for value: Int64 in [0, 9, 10, 99, 100, -1, -10, Int64.max, Int64.min] {
            var buffer = ByteBuffer()
            MemcachedDecimal.write(value, into: &buffer)
            #expect(String(buffer: buffer) == String(value))
        }
        var buffer = ByteBuffer()
        MemcachedDecimal.write(UInt64.max, into: &buffer)
        #expect(String(buffer: buffer) == String(UInt64.max))
    }

    @Test func aPrefixMemcachedWouldRefuseTurnsTheDirectWayOff() {
        #expect(MemcachedKeyspace(prefix: "sluice:").hasValidPrefix)
        #expect(MemcachedKeyspace(prefix: "").hasValidPrefix)
        #expect(!MemcachedKeyspace(prefix: "a b").hasValidPrefix)
        #expect(!MemcachedKeyspace(prefix: String(repeating: "k", count: 200)).hasValidPrefix)
    }
}

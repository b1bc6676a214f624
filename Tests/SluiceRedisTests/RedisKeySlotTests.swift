import NIOCore
import Testing
@testable import SluiceLimiter
@testable import SluiceRedis

/// Hash slots, `CLUSTER SLOTS` replies and redirections (issue 12), without a server.
@Suite("Redis Cluster slots")
struct RedisKeySlotTests {
    @Test("CRC16 and slots as Redis computes them")
    func slots() {
        // The cluster specification's check value, and `CLUSTER KEYSLOT` answers of redis-server 7.0.
        #expect(RedisKeySlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(RedisKeySlot.slot(of: "foo") == 12182)
        #expect(RedisKeySlot.slot(of: "somekey") == 11058)
        #expect(RedisKeySlot.slot(of: "{user1000}.following") == RedisKeySlot.slot(of: "{user1000}.followers"))
        #expect(RedisKeySlot.slot(of: "foo{}{bar}") == RedisKeySlot.slot(of: "foo{}{bar}"))
        #expect(RedisKeySlot.slot(of: "foo{}{bar}") != RedisKeySlot.slot(of: "bar"), "an empty tag hashes the whole key")
        #expect(RedisKeySlot.slot(of: "foo{{bar}}zap") == RedisKeySlot.slot(of: "{bar"))
    }

    @Test("every counter of a rule key, and its block, share the tag's slot")
    func taggedKeys() {
        var item = StoreItem(key: StorageKey(high: 1, low: 2), algorithm: .fixedWindow, limit: LimitParameters(count: 1, periodNanoseconds: 1), cost: 1)
        item.clusterTag = 0xabc
        let name = RedisKeySlot.key(prefix: "sluice:", tag: 0xabc, key: item.key)
        #expect(name == "sluice:{00000abc}00000000000000010000000000000002")
        #expect(RedisKeySlot.slot(of: name) == RedisKeySlot.slot(tag: 0xabc))
        #expect(RedisStore.slot(of: item) == RedisKeySlot.slot(tag: 0xabc))
        // The script call writes the same names.
        let request = ScriptRequest(operation: .decide, items: [item]) { _ in }
        let call = ScriptRequest.call("EVALSHA", "sha", requests: [request], prefix: "sluice:", time: "", clusterTags: true)
        #expect(String(buffer: call.encoded).contains("\r\n\(name)\r\n"))
    }

    @Test("a CLUSTER SLOTS reply")
    func slotMap() throws {
        func node(_ host: String, _ port: Int64) -> RESPValue {
            .array([.bulkString(ByteBuffer(string: host)), .integer(port), .bulkString(ByteBuffer(string: "id"))])
        }
        let reply = RESPValue.array([
            .array([.integer(0), .integer(5460), node("10.0.0.1", 7000), node("10.0.0.4", 7003)]),
            .array([.integer(5461), .integer(10922), node("", 7001)]),
            .array([.integer(10923), .integer(16383), node("10.0.0.3", 7002)]),
        ])
        let asked = RedisSlotMap.Node(host: "10.0.0.2", port: 7001)
        var map = try #require(RedisSlotMap(clusterSlots: reply, answeredBy: asked))
        #expect(map.isComplete)
        #expect(map.nodes.map(\.description) == ["10.0.0.1:7000", "10.0.0.2:7001", "10.0.0.3:7002"])
        #expect(map.node(forSlot: 0)?.port == 7000)
        #expect(map.node(forSlot: 5461) == asked, "an empty host is the node asked")
        #expect(map.node(forSlot: 16383)?.port == 7002)
        map.assign(slot: 0, to: RedisSlotMap.Node(host: "10.0.0.9", port: 7009))
        #expect(map.node(forSlot: 0)?.description == "10.0.0.9:7009")
        #expect(map.node(forSlot: 1)?.port == 7000)
        #expect(RedisSlotMap(clusterSlots: .array([.array([.integer(0)])]), answeredBy: asked) == nil)
        #expect(RedisSlotMap(clusterSlots: .array([.array([.integer(0), .integer(16384), node("h", 1)])]), answeredBy: asked) == nil)
    }

    @Test("MOVED and ASK")
    func redirections() throws {
        let moved = try #require(RedisSlotMap.redirection("MOVED 3999 127.0.0.1:6381"))
        #expect(!moved.ask && moved.slot == 3999 && moved.node == RedisSlotMap.Node(host: "127.0.0.1", port: 6381))
        let ask = try #require(RedisSlotMap.redirection("ASK 12 [::1]:7000"))
        #expect(ask.ask && ask.slot == 12 && ask.node.host == "::1")
        #expect(RedisSlotMap.redirection("MOVED 16384 h:1") == nil)
        #expect(RedisSlotMap.redirection("NOSCRIPT No matching script") == nil)
        #expect(RedisSlotMap.redirection("MOVED 1 :7000")?.node.host == "")
    }
}

/// Which primary serves each of a Redis Cluster's 16,384 hash slots, as `CLUSTER SLOTS` reports it.
///
/// A plain value: ``RedisCluster`` keeps one under its lock, replaces it on each refresh and patches one slot when a
/// node answers `MOVED`.
struct RedisSlotMap: Sendable, Equatable {
    /// A primary, by the address clients are to use (`host:port`).
    struct Node: Sendable, Hashable, CustomStringConvertible {
        var host: String
        var port: Int

        var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
    }

    /// Slot → index into ``nodes``; ``unassigned`` for a slot no primary serves.
    private(set) var owners: [UInt16]
    /// The primaries that serve at least one slot, in the order first seen.
    private(set) var nodes: [Node]

    static let unassigned = UInt16.max

    init() {
        self.owners = Array(repeating: Self.unassigned, count: RedisKeySlot.count)
        self.nodes = []
    }

    /// The primary of `slot`, `nil` when none serves it.
    func node(forSlot slot: Int) -> Node? {
        let owner = self.owners[slot]
        return owner == Self.unassigned ? nil : self.nodes[Int(owner)]
    }

    /// Whether every slot has a primary.
    var isComplete: Bool { !self.owners.contains(Self.unassigned) }

    /// `slot` now lives on `node` (after `MOVED`).
    mutating func assign(slot: Int, to node: Node) {
        self.owners[slot] = self.index(of: node)
    }

    private mutating func index(of node: Node) -> UInt16 {
        if let existing = self.nodes.firstIndex(of: node) { return UInt16(existing) }
        self.nodes.append(node)
        return UInt16(self.nodes.count - 1)
    }

    /// The map of a `CLUSTER SLOTS` reply: per range `[start, end, [host, port, id, ...], replicas...]`. A primary
    /// whose host is empty or `?` is the node that answered (`answeredBy`). `nil` when the reply is not so shaped.
    init?(clusterSlots reply: RESPValue, answeredBy: Node) {
        guard let ranges = reply.array else { return nil }
        self.init()
        for range in ranges {
            guard let fields = range.array, fields.count >= 3,
                let start = fields[0].int, let end = fields[1].int,
                start >= 0, end >= start, end < RedisKeySlot.count,
                let primary = fields[2].array, primary.count >= 2,
                let port = primary[1].int, (1...65535).contains(port)
            else { return nil }
            var host = primary[0].string ?? ""
            if host.isEmpty || host == "?" { host = answeredBy.host }
            let owner = self.index(of: Node(host: host, port: Int(port)))
            for slot in Int(start)...Int(end) { self.owners[slot] = owner }
        }
    }

    /// The target of a `MOVED slot host:port` or `ASK slot host:port` error reply: its kind, slot and node.
    static func redirection(_ message: String) -> (ask: Bool, slot: Int, node: Node)? {
        let words = message.split(separator: " ")
        guard words.count == 3, words[0] == "MOVED" || words[0] == "ASK", let slot = Int(words[1]),
            (0..<RedisKeySlot.count).contains(slot), let colon = words[2].lastIndex(of: ":"),
            let port = Int(words[2][words[2].index(after: colon)...]), (1...65535).contains(port)
        else { return nil }
        var host = String(words[2][..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (words[0] == "ASK", slot, Node(host: host, port: port))
    }
}

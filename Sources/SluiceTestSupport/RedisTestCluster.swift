import Foundation

/// A throwaway Redis Cluster for tests: `primaries` ``RedisServer``s started with `--cluster-enabled yes`, joined with
/// `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`, ready once every node reports
/// `cluster_state:ok` and sees every primary.
///
/// The nodes run with `cluster-require-full-coverage no` (a stopped primary leaves the others serving their slots,
/// as issue 12 asks of a cluster in production) and a 1 s node timeout. Use ``withRedisCluster(primaries:_:)`` so
/// every process is stopped whatever the test does.
public final class RedisTestCluster: Sendable {
    public let nodes: [RedisServer]

    private init(nodes: [RedisServer]) {
        self.nodes = nodes
    }

    /// `redis+cluster://` with the first two nodes as seeds (the third is found through them).
    public var url: String {
        "redis+cluster://" + self.nodes.prefix(2).map { "127.0.0.1:\($0.port)" }.joined(separator: ",")
    }

    public static func start(primaries: Int = 3) async throws -> RedisTestCluster {
        var nodes: [RedisServer] = []
        do {
            for _ in 0..<primaries {
                // The cluster bus listens on port + 10000; a start that fails on it is tried again on another port.
                var started: RedisServer?
                for attempt in 0..<5 {
                    do {
                        started = try await RedisServer.start(extraArguments: [
                            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", "1000", "--cluster-require-full-coverage", "no",
                        ])
                        break
                    } catch where attempt < 4 {
                        continue
                    }
                }
                guard let started else { throw RedisServerError(description: "cannot start a cluster node") }
                nodes.append(started)
            }
            let cluster = RedisTestCluster(nodes: nodes)
            let output = try CleanSpawn.run(
                RedisServer.executable("redis-cli"),
                ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" } + ["--cluster-replicas", "0", "--cluster-yes"]
            )
            guard output.contains("All 16384 slots covered") else {
                throw RedisServerError(description: "redis-cli --cluster create failed: \(output)")
            }
            try await cluster.waitUntilReady()
            return cluster
        } catch {
            for node in nodes { await node.stop() }
            throw error
        }
    }

    /// Every live node reports `cluster_state:ok` and knows `nodes.count` primaries with slots.
    private func waitUntilReady() async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            let ready = self.nodes.allSatisfy { node in
                node.cli("CLUSTER", "INFO").contains("cluster_state:ok")
                    && node.cli("CLUSTER", "NODES").split(separator: "\n").filter { $0.contains("master") && !$0.contains("fail") }
                        .count == self.nodes.count
            }
            if ready { return }
            if ContinuousClock.now > deadline { throw RedisServerError(description: "the cluster did not become ready") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    public func stop() async {
        for node in self.nodes { await node.stop() }
    }

    /// The node's id (`CLUSTER MYID`).
    public func id(of index: Int) -> String {
        self.nodes[index].cli("CLUSTER", "MYID")
    }

    /// The index of the node serving `slot`, asked of `askedOf` (a live node).
    public func owner(ofSlot slot: Int, askedOf: Int = 0) -> Int? {
        let lines = self.nodes[askedOf].cli("CLUSTER", "NODES").split(separator: "\n")
        for line in lines {
            let fields = line.split(separator: " ")
            guard fields.count >= 9, let address = fields[1].split(separator: "@").first,
                let port = address.split(separator: ":").last.flatMap({ Int($0) })
            else { continue }
            for range in fields[8...] where !range.hasPrefix("[") {
                let bounds = range.split(separator: "-").compactMap { Int($0) }
                guard let low = bounds.first else { continue }
                if (low...(bounds.last ?? low)).contains(slot) { return self.nodes.firstIndex { $0.port == port } }
            }
        }
        return nil
    }

    /// Moves `slot` from node `source` to node `target` as `redis-cli --cluster reshard` does: `IMPORTING` on the
    /// target, `MIGRATING` on the source, `MIGRATE` of its keys in batches, then `SETSLOT NODE` everywhere.
    /// `pause` is called between the steps (traffic runs meanwhile).
    public func migrate(slot: Int, from source: Int, to target: Int, pause: () async throws -> Void) async throws {
        let sourceID = self.id(of: source)
        let targetID = self.id(of: target)
        let slotText = String(slot)
        _ = self.nodes[target].cli("CLUSTER", "SETSLOT", slotText, "IMPORTING", sourceID)
        _ = self.nodes[source].cli("CLUSTER", "SETSLOT", slotText, "MIGRATING", targetID)
        try await pause()
        while true {
            let keys = self.nodes[source].cli("CLUSTER", "GETKEYSINSLOT", slotText, "1")
                .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
            if keys.isEmpty { break }
            let reply = self.nodes[source].cli(
                ["MIGRATE", "127.0.0.1", String(self.nodes[target].port), "", "0", "5000", "KEYS"] + keys
            )
            guard reply == "OK" else { throw RedisServerError(description: "MIGRATE answered \(reply)") }
            try await pause()
        }
        // The target first, then the source (as `redis-cli --cluster reshard` does), then the others.
        for index in [target, source] + self.nodes.indices.filter({ $0 != target && $0 != source }) {
            _ = self.nodes[index].cli("CLUSTER", "SETSLOT", slotText, "NODE", targetID)
            try await pause()
        }
    }
}

/// Starts a ``RedisTestCluster``, runs `body` with it, and stops every node on every path out.
public func withRedisCluster<T>(primaries: Int = 3, _ body: (RedisTestCluster) async throws -> T) async throws -> T {
    let cluster = try await RedisTestCluster.start(primaries: primaries)
    do {
        let result = try await body(cluster)
        await cluster.stop()
        return result
    } catch {
        await cluster.stop()
        throw error
    }
}

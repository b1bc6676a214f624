import NIOCore
import NIOPosix
import SluiceLimiter
import Synchronization

/// One request's script part and the hash slot of its keys (Redis Cluster, issue 12).
struct SlottedScriptRequest: Sendable {
    var slot: Int
    var request: ScriptRequest
}

/// Decisions for a Redis Cluster, one script call per slot per tick (see ``RedisStore/sendInCluster(_:preferring:)``).
typealias ClusterDecisionBatcher = TickBatcher<SlottedScriptRequest>

extension TickBatcher where Request == SlottedScriptRequest {
    convenience init(clusterLoop eventLoop: any EventLoop) {
        self.init(eventLoop: eventLoop) { store, requests, loop in store.sendInCluster(requests, preferring: loop) }
    }
}

/// The Redis Cluster side of the store (issue 12).
///
/// Every counter of one rule key is named `PREFIX{TAG}DIGEST` (``RedisKeySlot``), so the limits of a key and its
/// `block_for` box share a slot, and a request whose rules all have one key is one atomic script call, as with one
/// server. A request whose rules have keys in several slots is decided in two rounds: each slot's part is first
/// looked at without counting; only when every part admits is each part sent again to count, all or nothing within
/// its slot. A refused request therefore takes nothing, as with one server; two requests racing between the rounds
/// can make a part count while another part refuses (the cost stays taken: the cluster admits less, never more).
extension RedisStore {
    /// The slot of an item's keys.
    static func slot(of item: StoreItem) -> Int {
        RedisKeySlot.slot(tag: RedisKeySlot.tag(of: item))
    }

    func decideInCluster(_ batch: DecisionBatch, now: LimiterInstant, completion: @escaping @Sendable (DecisionBatch) -> Void) {
        guard !batch.items.isEmpty else { return completion(batch) }
        let started = ContinuousClock.now
        let first = Self.slot(of: batch.items[0])
        var oneSlot = true
        for index in 1..<batch.items.count where Self.slot(of: batch.items[index]) != first {
            oneSlot = false
            break
        }
        if oneSlot {
            // The common case, one closure per request (as with one server).
            let request = ScriptRequest(operation: .decide, items: batch.items) { result in
                var decided: DecisionBatch?
                if case .success(let reply) = result { decided = Self.apply(reply, to: batch) }
                self.finishInCluster(decided, requested: batch, started: started, now: now, completion: completion)
            }
            self.runInCluster(SlottedScriptRequest(slot: first, request: request), now: now)
            return
        }
        // Several slots: look first, count only if every part admits.
        let parts = Self.parts(of: batch)
        self.decideParts(parts, of: batch, checkOnly: true, now: now) { looked in
            guard let looked, looked.isAdmitted, batch.items.contains(where: { $0.mode == .consume }) else {
                return self.finishInCluster(looked, requested: batch, started: started, now: now, completion: completion)
            }
            self.decideParts(parts, of: batch, checkOnly: false, now: now) { counted in
                self.finishInCluster(counted, requested: batch, started: started, now: now, completion: completion)
            }
        }
    }

    /// Times the decision and answers it: `decided`, or `on_error` when it is `nil` (a part failed).
    private func finishInCluster(
        _ decided: DecisionBatch?,
        requested: DecisionBatch,
        started: ContinuousClock.Instant,
        now: LimiterInstant,
        completion: @Sendable (DecisionBatch) -> Void
    ) {
        if let observe = self.observe {
            let elapsed = (ContinuousClock.now - started).components
            observe(Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18, decided == nil)
        }
        guard var decided else {
            completion(self.fallback.decide(requested, now: now))
            return
        }
        decided.storageUnavailable = false
        self.denials?.remember(decided, now: now)
        completion(decided)
    }

    /// The items of `batch` by slot: each part's slot and item indexes, in the order first seen.
    static func parts(of batch: DecisionBatch) -> [(slot: Int, indexes: [Int])] {
        var parts: [(slot: Int, indexes: [Int])] = []
        for index in 0..<batch.items.count {
            let slot = Self.slot(of: batch.items[index])
            if let part = parts.firstIndex(where: { $0.slot == slot }) {
                parts[part].indexes.append(index)
            } else {
                parts.append((slot, [index]))
            }
        }
        return parts
    }

    /// Decides each part (as checks only when `checkOnly`) and merges them: admitted when every part admits;
    /// `nil` when any part failed.
    private func decideParts(
        _ parts: [(slot: Int, indexes: [Int])],
        of batch: DecisionBatch,
        checkOnly: Bool,
        now: LimiterInstant,
        completion: @escaping @Sendable (DecisionBatch?) -> Void
    ) {
        let merged = Mutex<(batch: DecisionBatch, left: Int, failed: Bool)>((batch, parts.count, false))
        for part in parts {
            var sub = DecisionBatch()
            for index in part.indexes {
                var item = batch.items[index]
                if checkOnly { item.mode = .check }
                sub.append(item)
            }
            self.decidePart(sub, slot: part.slot, now: now) { decided in
                let done = merged.withLock { merged -> (DecisionBatch, Bool)? in
                    if let decided {
                        for (position, index) in part.indexes.enumerated() { merged.batch.results[index] = decided.results[position] }
                        if !decided.isAdmitted { merged.batch.isAdmitted = false }
                    } else {
                        merged.failed = true
                    }
                    merged.left -= 1
                    return merged.left == 0 ? (merged.batch, merged.failed) : nil
                }
                if let (decided, failed) = done { completion(failed ? nil : decided) }
            }
        }
    }

    /// One slot's part: one script request, batched with the others of the tick; `nil` on failure.
    private func decidePart(
        _ batch: DecisionBatch,
        slot: Int,
        now: LimiterInstant,
        completion: @escaping @Sendable (DecisionBatch?) -> Void
    ) {
        let request = ScriptRequest(operation: .decide, items: batch.items) { result in
            switch result {
            case .success(let reply): completion(Self.apply(reply, to: batch))
            case .failure: completion(nil)
            }
        }
        self.runInCluster(SlottedScriptRequest(slot: slot, request: request), now: now)
    }

    /// `count_when` charges: one call per slot; a part that fails is taken locally.
    func commitInCluster(_ items: SmallArray<2, StoreItem>, now: LimiterInstant) -> EventLoopFuture<Void> {
        var batch = DecisionBatch()
        for index in 0..<items.count { batch.append(items[index]) }
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? self.group.any()
        var done: [EventLoopFuture<Void>] = []
        for part in Self.parts(of: batch) {
            let promise = loop.makePromise(of: Void.self)
            let partItems = SmallArray<2, StoreItem>(part.indexes.map { items[$0] })
            let request = ScriptRequest(operation: .commit, items: partItems) { result in
                if case .failure = result { self.fallback.commitLocally(partItems, now: now) }
                promise.succeed()
            }
            self.runInCluster(SlottedScriptRequest(slot: part.slot, request: request), now: now)
            done.append(promise.futureResult)
        }
        return EventLoopFuture.andAllComplete(done, on: loop)
    }

    /// With the others of this tick when called on one of the group's loops, else alone.
    private func runInCluster(_ request: SlottedScriptRequest, now: LimiterInstant) {
        let loop = MultiThreadedEventLoopGroup.currentEventLoop
        if self.useServerTime, let loop, let batcher = self.clusterBatchers[ObjectIdentifier(loop)] {
            batcher.value.add(request, store: self)
        } else {
            self.sendInCluster([request], time: self.useServerTime ? "" : String(now.nanosecondsSinceEpoch / 1000), preferring: loop)
        }
    }

    /// The calls of a tick: per primary, one script call for all its requests (``RedisScript/clusterSource``, keys
    /// passed as arguments) when they lie in several of its slots, else one call with declared keys (which follows
    /// redirections). A cross-slot call that finds a key not served there (a slot moved or migrating) does nothing
    /// and answers `{-1}`; its requests are then sent slot by slot.
    func sendInCluster(_ requests: [SlottedScriptRequest], time: String = "", preferring loop: (any EventLoop)?) {
        guard let cluster = self.cluster else { return }
        var slots: [Int] = []
        var bySlot: [[ScriptRequest]] = []
        for slotted in requests {
            if let index = slots.firstIndex(of: slotted.slot) {
                bySlot[index].append(slotted.request)
            } else {
                slots.append(slotted.slot)
                bySlot.append([slotted.request])
            }
        }
        guard slots.count > 1, self.crossSlotCalls.load(ordering: .relaxed), let owners = cluster.owners(ofSlots: slots) else {
            for (index, slot) in slots.enumerated() { self.sendSlot(bySlot[index], slot: slot, time: time, preferring: loop) }
            return
        }
        var nodes: [UInt16] = []
        var byNode: [[Int]] = []
        for (index, owner) in owners.enumerated() {
            if owner == RedisSlotMap.unassigned {
                self.sendSlot(bySlot[index], slot: slots[index], time: time, preferring: loop)
            } else if let node = nodes.firstIndex(of: owner) {
                byNode[node].append(index)
            } else {
                nodes.append(owner)
                byNode.append([index])
            }
        }
        for indexes in byNode {
            if indexes.count == 1 {
                self.sendSlot(bySlot[indexes[0]], slot: slots[indexes[0]], time: time, preferring: loop)
            } else {
                self.sendCrossSlot(indexes.map { (slots[$0], bySlot[$0]) }, time: time, preferring: loop)
            }
        }
    }

    /// One call for the requests of one slot, with declared keys.
    private func sendSlot(_ group: [ScriptRequest], slot: Int, time: String, preferring loop: (any EventLoop)?) {
        guard let cluster = self.cluster else { return }
        let prefix = self.prefix
        let eval: @Sendable () -> RedisCommand = {
            ScriptRequest.call("EVAL", RedisScript.source, requests: group, prefix: prefix, time: time, clusterTags: true)
        }
        let reply: EventLoopFuture<RESPValue>
        if let sha = self.scriptSHA.withLock({ $0 }) {
            let call = ScriptRequest.call("EVALSHA", sha, requests: group, prefix: prefix, time: time, clusterTags: true)
            reply = cluster.send(call, orElse: eval, slot: slot, preferring: loop)
        } else {
            reply = cluster.send(eval(), slot: slot, preferring: loop)
            // Learn the SHA for the next calls (the same on every node: the same source).
            cluster.send(RedisCommand("SCRIPT", "LOAD", RedisScript.source), slot: slot, preferring: loop).whenSuccess { reply in
                if let sha = reply.string { self.scriptSHA.withLock { $0 = sha } }
            }
        }
        reply.whenComplete { result in ScriptRequest.complete(group, with: result) }
    }

    /// One call for the requests of several slots of one primary (routed by the first slot's owner).
    private func sendCrossSlot(_ parts: [(slot: Int, requests: [ScriptRequest])], time: String, preferring loop: (any EventLoop)?) {
        guard let cluster = self.cluster, let first = parts.first else { return }
        let all = parts.flatMap(\.requests)
        let prefix = self.prefix
        let eval: @Sendable () -> RedisCommand = {
            ScriptRequest.call(
                "EVAL", RedisScript.clusterSource, requests: all, prefix: prefix, time: time, clusterTags: true, keysAsArguments: true
            )
        }
        let reply: EventLoopFuture<RESPValue>
        if let sha = self.clusterScriptSHA.withLock({ $0 }) {
            let call = ScriptRequest.call(
                "EVALSHA", sha, requests: all, prefix: prefix, time: time, clusterTags: true, keysAsArguments: true
            )
            reply = cluster.send(call, orElse: eval, slot: first.slot, preferring: loop)
        } else {
            reply = cluster.send(eval(), slot: first.slot, preferring: loop)
            cluster.send(RedisCommand("SCRIPT", "LOAD", RedisScript.clusterSource), slot: first.slot, preferring: loop).whenSuccess {
                reply in
                if let sha = reply.string { self.clusterScriptSHA.withLock { $0 = sha } }
            }
        }
        reply.whenComplete { result in
            switch result {
            case .success(let value) where value.array?.count == 1 && value.array?.first?.int == -1:
                // A key is not served there (the map is behind, or a slot migrates): nothing was done; slot by slot.
                for part in parts { self.sendSlot(part.requests, slot: part.slot, time: time, preferring: loop) }
            case .failure(RedisError.server(let message)):
                // The script refused as a whole (before Redis 7 a shebang does not compile): slot by slot, and for
                // good when the server cannot take the script.
                if message.contains("compiling") || message.contains("shebang") || message.contains("flag") {
                    self.crossSlotCalls.store(false, ordering: .relaxed)
                }
                for part in parts { self.sendSlot(part.requests, slot: part.slot, time: time, preferring: loop) }
            default:
                ScriptRequest.complete(all, with: result)
            }
        }
    }

    // MARK: Admin API

    /// ``inspect(_:penaltyKey:now:)`` in a cluster: each item looked at in its own slot.
    func inspectInCluster(_ items: [StoreItem], penaltyKey: StorageKey?, now: LimiterInstant) async throws -> StoreInspection {
        guard let cluster = self.cluster else { throw RedisError.unavailable("not a cluster") }
        let time = self.useServerTime ? "" : String(now.nanosecondsSinceEpoch / 1000)
        var results: [StoreItemResult?] = []
        for var item in items {
            item.cost = 0
            item.mode = .check
            item.isEnforced = false
            item.penaltyKey = nil
            item.penaltyNanoseconds = 0
            var batch = DecisionBatch()
            batch.append(item)
            let slot = Self.slot(of: item)
            let look = ScriptRequest.call("EVAL", RedisScript.source, requests: [ScriptRequest(operation: .decide, items: batch.items) { _ in }], prefix: self.prefix, time: time, clusterTags: true)
            let reply = try await cluster.send(look, slot: slot, preferring: nil).get()
            guard let array = reply.array, array.count == 7, let looked = Self.apply(array[1...], to: batch) else {
                throw RedisError.protocolError("unexpected script reply")
            }
            let name = RedisKeySlot.key(prefix: self.prefix, tag: RedisKeySlot.tag(of: item), key: item.key)
            let exists = try await cluster.send(RedisCommand("EXISTS", name), slot: slot, preferring: nil).get()
            results.append(exists.int == 1 ? looked.results[0] : nil)
        }
        var blockedUntil: LimiterInstant?
        if let penaltyKey, let first = items.first {
            let tag = RedisKeySlot.tag(of: first)
            let name = RedisKeySlot.key(prefix: self.prefix, tag: tag, key: penaltyKey)
            let left = try await cluster.send(RedisCommand("PTTL", name), slot: RedisKeySlot.slot(tag: tag), preferring: nil).get()
            if let milliseconds = left.int, milliseconds > 0 {
                blockedUntil = LimiterInstant(nanosecondsSinceEpoch: now.nanosecondsSinceEpoch + milliseconds * 1_000_000)
            }
        }
        return StoreInspection(results: results, blockedUntil: blockedUntil)
    }

    /// `DEL` of each counter (and the block) in its slot, awaited.
    func removeInCluster(_ keys: [(tag: UInt32, key: StorageKey)]) async throws -> Bool {
        guard let cluster = self.cluster else { throw RedisError.unavailable("not a cluster") }
        self.denials?.forget(keys.map(\.key))
        var removed = false
        for (tag, key) in keys {
            let name = RedisKeySlot.key(prefix: self.prefix, tag: tag, key: key)
            let reply = try await cluster.send(RedisCommand("DEL", name), slot: RedisKeySlot.slot(tag: tag), preferring: nil).get()
            if (reply.int ?? 0) > 0 { removed = true }
        }
        for (_, key) in keys { self.fallback.local.reset(key) }
        return removed
    }
}

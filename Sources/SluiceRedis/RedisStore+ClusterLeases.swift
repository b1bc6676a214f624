import NIOCore
import NIOPosix
import SluiceLimiter
import Synchronization

/// Concurrency leases in a Redis Cluster (issue 12).
///
/// A lease set is named `PREFIX cc:{TAG}RULE:DIGEST`, TAG from the key digest, so the sets of one acquisition share a
/// slot when its rules share a key. One whose sets lie in several slots is taken slot by slot (all at once, each
/// part all or nothing): if any part refuses or fails, the parts taken are given back at once, so nothing stays
/// taken (another request may have seen those leases for the moment between).
extension RedisStore {
    func acquireLeasesInCluster(
        _ items: [ConcurrencyLeaseItem],
        completion: @escaping @Sendable (ConcurrencyLeaseReply) -> Void
    ) {
        let member = self.leaseState.nextMember()
        let keys = items.map { self.leaseKey(rule: $0.rule, key: $0.key) }
        var parts: [(slot: Int, indexes: [Int])] = []
        for (index, key) in keys.enumerated() {
            let slot = RedisKeySlot.slot(of: key)
            if let part = parts.firstIndex(where: { $0.slot == slot }) {
                parts[part].indexes.append(index)
            } else {
                parts.append((slot, [index]))
            }
        }
        let allParts = parts
        // Per part: its answer, or nil when it failed.
        let answers = Mutex<(left: Int, results: [Int: LeaseRequest.Answer?])>((allParts.count, [:]))
        for (number, part) in allParts.enumerated() {
            let request = LeaseRequest(
                operation: .acquire,
                member: member,
                keys: part.indexes.map { keys[$0] },
                maxes: part.indexes.map { items[$0].max },
                enforced: part.indexes.map { items[$0].enforced }
            ) { result in
                let all = answers.withLock { answers -> [Int: LeaseRequest.Answer?]? in
                    answers.results[number] = try? result.get()
                    answers.left -= 1
                    return answers.left == 0 ? answers.results : nil
                }
                guard let all else { return }
                self.leasePartsAnswered(allParts, answers: all, member: member, keys: keys, completion: completion)
            }
            self.sendLeasesInCluster([request], preferring: MultiThreadedEventLoopGroup.currentEventLoop)
        }
    }

    /// Every part has answered: one reply for the acquisition, and the taken parts given back unless all were taken.
    private func leasePartsAnswered(
        _ parts: [(slot: Int, indexes: [Int])],
        answers: [Int: LeaseRequest.Answer?],
        member: String,
        keys: [String],
        completion: @escaping @Sendable (ConcurrencyLeaseReply) -> Void
    ) {
        var refused: Int?
        var failed = false
        var overMax: Int?
        for (number, part) in parts.enumerated() {
            guard let answer = answers[number] ?? nil else {
                failed = true
                continue
            }
            if answer.refused > 0 {
                let index = part.indexes[answer.refused - 1]
                refused = min(refused ?? index, index)
            } else if answer.overMax > 0 {
                let index = part.indexes[answer.overMax - 1]
                overMax = min(overMax ?? index, index)
            }
        }
        if failed || refused != nil {
            // Give back whatever was taken (a failed part may have been applied before its reply was lost).
            self.sendLeasesInCluster([LeaseRequest(operation: .release, member: member, keys: keys)], preferring: nil)
            completion(refused.map { .refused(index: $0) } ?? .unavailable)
            return
        }
        let handle = ConcurrencyLeaseHandle(member: member, keys: keys)
        self.leaseState.held.withLock { $0[ObjectIdentifier(handle)] = handle }
        self.leaseState.startRenewing { [weak self] in self?.renewLeases() }
        completion(.acquired(handle, overMax: overMax))
    }

    /// Each request split by slot, then one lease script call per slot.
    func sendLeasesInCluster(_ requests: [LeaseRequest], preferring loop: (any EventLoop)?) {
        guard let cluster = self.cluster else { return }
        var groups: [Int: [LeaseRequest]] = [:]
        var order: [Int] = []
        for request in requests {
            var bySlot: [Int: [Int]] = [:]
            var slots: [Int] = []
            for (index, key) in request.keys.enumerated() {
                let slot = RedisKeySlot.slot(of: key)
                if bySlot[slot] == nil { slots.append(slot) }
                bySlot[slot, default: []].append(index)
            }
            for slot in slots {
                let indexes = bySlot[slot] ?? []
                var part = request
                if slots.count > 1 {
                    // Only release and renew come here split (acquisitions are split by the caller, with their answers).
                    part.keys = indexes.map { request.keys[$0] }
                    part.maxes = request.maxes.isEmpty ? [] : indexes.map { request.maxes[$0] }
                    part.enforced = request.enforced.isEmpty ? [] : indexes.map { request.enforced[$0] }
                }
                if groups[slot] == nil { order.append(slot) }
                groups[slot, default: []].append(part)
            }
        }
        let ttl = self.leaseState.ttlMilliseconds
        let sha = self.leaseState.scriptSHA.withLock { $0 }
        for slot in order {
            guard let group = groups[slot] else { continue }
            let eval: @Sendable () -> RedisCommand = {
                LeaseRequest.call("EVAL", LeaseScript.source, requests: group, ttlMilliseconds: ttl)
            }
            let reply: EventLoopFuture<RESPValue>
            if let sha {
                reply = cluster.send(
                    LeaseRequest.call("EVALSHA", sha, requests: group, ttlMilliseconds: ttl),
                    orElse: eval,
                    slot: slot,
                    preferring: loop
                )
            } else {
                reply = cluster.send(eval(), slot: slot, preferring: loop)
                cluster.send(RedisCommand("SCRIPT", "LOAD", LeaseScript.source), slot: slot, preferring: loop).whenSuccess { reply in
                    if let sha = reply.string { self.leaseState.scriptSHA.withLock { $0 = sha } }
                }
            }
            reply.whenComplete { result in LeaseRequest.complete(group, with: result) }
        }
    }
}

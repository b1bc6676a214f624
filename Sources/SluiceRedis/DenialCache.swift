import SluiceLimiter
import Synchronization

/// Requests known to be refused, answered without asking Redis until their `Retry-After` (issue 5: "under attack,
/// the flood costs Redis nothing").
///
/// When Redis refuses a request, the same request (same counters, same cost) cannot be admitted before the
/// refusing limit's wait has passed: a refusal changes nothing, and other instances can only take more. So the
/// results of every item of a refused request are kept until then (minus a `gcra` delay, which lets the request
/// in, held, that much earlier), and the same request is answered from here. A request this instance admits for
/// one of those counters drops what is known of them. The numbers in the headers are those of the refusal, with
/// reset and Retry-After aged by the time passed (a sliding window's remaining quota may have grown meanwhile). An
/// admin reset (SPEC §7) is not seen until the entry ends: at most one Retry-After.
final class DenialCache: Sendable {
    private struct Entry {
        var until: Int64
        var decidedAt: Int64
        var cost: Int64
        var result: StoreItemResult
        /// Whether this item refused the request (the others only lend their numbers to the headers).
        var refused: Bool
    }

    private let entries = Mutex<[StorageKey: Entry]>([:])
    private let capacity: Int

    init(capacity: Int = 10_000) {
        self.capacity = capacity
    }

    /// Remembers a refused request's results; an admitted one makes what is known of its keys stale.
    func remember(_ batch: DecisionBatch, now: LimiterInstant) {
        guard !batch.storageUnavailable else { return }
        if batch.isAdmitted {
            self.entries.withLock { entries in
                guard !entries.isEmpty else { return }
                for index in 0..<batch.items.count { entries.removeValue(forKey: batch.items[index].key) }
            }
            return
        }
        var until = Int64.max
        for index in 0..<batch.items.count {
            let item = batch.items[index]
            guard item.isEnforced, case .denied(let retry) = batch.results[index].verdict else { continue }
            until = min(until, now.nanosecondsSinceEpoch + retry - item.limit.delayNanoseconds)
        }
        guard until != Int64.max, until > now.nanosecondsSinceEpoch else { return }
        self.entries.withLock { entries in
            if entries.count >= self.capacity { entries.removeAll(keepingCapacity: true) }
            for index in 0..<batch.items.count {
                let item = batch.items[index]
                let result = batch.results[index]
                let refused = item.isEnforced && !result.verdict.isAdmitted
                entries[item.key] = Entry(
                    until: until,
                    decidedAt: now.nanosecondsSinceEpoch,
                    cost: item.cost,
                    result: result,
                    refused: refused
                )
            }
        }
    }

    /// Drops what is known of `keys` (an admin reset).
    func forget(_ keys: [StorageKey]) {
        self.entries.withLock { entries in
            for key in keys { entries.removeValue(forKey: key) }
        }
    }

    /// The refusal of `batch` from the cache, `nil` when Redis must be asked.
    func answer(_ batch: DecisionBatch, now: LimiterInstant) -> DecisionBatch? {
        let t = now.nanosecondsSinceEpoch
        return self.entries.withLock { entries -> DecisionBatch? in
            var anyRefusal = false
            for index in 0..<batch.items.count {
                // The same request only: its counters, its cost.
                guard let entry = entries[batch.items[index].key], entry.until > t, entry.cost == batch.items[index].cost
                else { return nil }
                if entry.refused && batch.items[index].isEnforced { anyRefusal = true }
            }
            guard anyRefusal else { return nil }
            var answered = batch
            answered.isAdmitted = false
            for index in 0..<batch.items.count {
                let entry = entries[batch.items[index].key]!
                var result = entry.result
                let aged = t - entry.decidedAt
                result.resetNanoseconds = max(0, result.resetNanoseconds - aged)
                if case .denied(let retry) = result.verdict {
                    result.verdict = .denied(retryAfterNanoseconds: max(1, retry - aged))
                }
                answered.results[index] = result
            }
            return answered
        }
    }
}

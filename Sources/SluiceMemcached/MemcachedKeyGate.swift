import Synchronization

/// Lets this instance's decisions on one compare-and-swap key run one at a time.
///
/// Two decisions of one instance on one key would otherwise race each other's compare-and-swap in memcached, and a
/// hot key (a global `const:` limit with `gcra`) would send many of them to `on_error` after too many lost races.
/// Queued here instead, each decision reads the state the previous one wrote, and only other instances can make a
/// swap fail. A waiting decision is still bounded by its decision budget: given up meanwhile, it passes its turn on
/// when it comes.
final class MemcachedKeyGate: Sendable {
    /// Keys held by a decision, with the decisions waiting for each, oldest first.
    private let held = Mutex<[String: [@Sendable () -> Void]]>([:])

    /// Takes `key` and returns `true` when no decision holds it; else queues `resume` (called, on any thread, when
    /// the key is handed over) and returns `false`.
    func enter(_ key: String, resume: @escaping @Sendable () -> Void) -> Bool {
        self.held.withLock { table in
            if table[key] == nil {
                table[key] = []
                return true
            }
            table[key]!.append(resume)
            return false
        }
    }

    /// Hands `key` to the next waiting decision, or frees it.
    func leave(_ key: String) {
        let next = self.held.withLock { table -> (@Sendable () -> Void)? in
            guard var queue = table[key] else { return nil }
            if queue.isEmpty {
                table[key] = nil
                return nil
            }
            let first = queue.removeFirst()
            table[key] = queue
            return first
        }
        next?()
    }

    /// Keys held now (tests).
    var heldKeys: Int { self.held.withLock { $0.count } }
}

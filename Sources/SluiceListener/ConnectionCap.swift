import Synchronization

/// The number of client connections a group of listeners holds open, and the most it may hold.
///
/// One instance is shared by every listener it guards: all the proxy's listeners share one (`server.max_connections`),
/// the admin listener has its own (`server.admin_max_connections`). ``ConnectionCapHandler``, on each listening
/// channel, counts every accepted connection in and, when it closes, out; while the count is at the limit it stops
/// accepting, and the kernel's backlog holds new connections until one closes.
///
/// A connection costs two atomic operations; the lock is taken only while a listener waits for room.
///
/// - note: Every method may be called from any thread.
public final class ConnectionCap: Sendable {
    private let open = Atomic<Int>(0)
    private let limitValue: Atomic<Int>
    /// How many listeners wait in `waiters` (kept under its lock), so a closing connection skips the lock when
    /// nobody waits.
    private let waiting = Atomic<Int>(0)
    /// Listeners that stopped accepting at the limit, each with what resumes it.
    private let waiters = Mutex<[ObjectIdentifier: @Sendable () -> Void]>([:])

    /// - Parameter limit: the most connections open at once; at least 1.
    public init(limit: Int) {
        precondition(limit >= 1, "a connection cap of \(limit)")
        self.limitValue = Atomic(limit)
    }

    /// The most connections open at once.
    public var limit: Int { self.limitValue.load(ordering: .sequentiallyConsistent) }

    /// Connections accepted and not yet closed.
    public var openConnections: Int { self.open.load(ordering: .sequentiallyConsistent) }

    /// Whether one more connection may be accepted.
    public var hasRoom: Bool { self.openConnections < self.limit }

    /// Changes the limit at once: a higher one resumes waiting listeners now; a lower one closes nothing, it only
    /// keeps listeners from accepting until enough connections have closed.
    public func setLimit(_ limit: Int) {
        precondition(limit >= 1, "a connection cap of \(limit)")
        self.limitValue.store(limit, ordering: .sequentiallyConsistent)
        if self.hasRoom { self.resumeWaiters() }
    }

    /// An accepted connection.
    func connectionOpened() {
        self.open.wrappingAdd(1, ordering: .sequentiallyConsistent)
    }

    /// A counted connection closed: a waiting listener may accept again.
    func connectionClosed() {
        let now = self.open.wrappingSubtract(1, ordering: .sequentiallyConsistent).newValue
        // Sequentially consistent: either this load sees a listener that registered, or that listener's own check
        // of `hasRoom` (after registering) sees this decrement. No wake-up is lost.
        if now < self.limit, self.waiting.load(ordering: .sequentiallyConsistent) > 0 {
            self.resumeWaiters()
        }
    }

    /// Registers `resume` to be called once there is room, unless there is room already.
    ///
    /// - Returns: `true` when `resume` will be called (exactly once, from any thread); `false` when there is room
    ///   now and nothing was registered.
    func waitForRoom(_ id: ObjectIdentifier, resume: @escaping @Sendable () -> Void) -> Bool {
        self.waiters.withLock { waiters in
            waiters[id] = resume
            self.waiting.store(waiters.count, ordering: .sequentiallyConsistent)
        }
        // A connection may have closed before the registration was visible: check again.
        if self.hasRoom, self.stopWaiting(id) {
            return false
        }
        return true
    }

    /// Takes back a registration; `false` when it was already taken (its `resume` is called or about to be).
    @discardableResult
    func stopWaiting(_ id: ObjectIdentifier) -> Bool {
        self.waiters.withLock { waiters in
            let removed = waiters.removeValue(forKey: id) != nil
            self.waiting.store(waiters.count, ordering: .sequentiallyConsistent)
            return removed
        }
    }

    private func resumeWaiters() {
        let resumes = self.waiters.withLock { waiters in
            defer {
                waiters.removeAll()
                self.waiting.store(0, ordering: .sequentiallyConsistent)
            }
            return Array(waiters.values)
        }
        for resume in resumes { resume() }
    }
}

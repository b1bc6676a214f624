import NIOCore

/// A deadline re-armed on every request that schedules an event-loop task only when needed.
///
/// A keep-alive connection arms and disarms its timers once or twice per request. Scheduling
/// and cancelling a task each time costs an allocation and a heap operation on the loop;
/// here arming is a store. The task already pending, when it fires, finds the current
/// deadline and is scheduled again for the remainder, so a connection that makes thousands of
/// requests within one timeout period schedules about one task per period.
struct LazyDeadline {
    /// `nil` when disarmed.
    private(set) var deadline: NIODeadline?
    private var task: Scheduled<Void>?
    private var taskDeadline: NIODeadline?

    var isArmed: Bool { self.deadline != nil }

    /// Arms for `deadline`, scheduling a task through `schedule` only when no pending task
    /// fires early enough.
    mutating func arm(_ deadline: NIODeadline, schedule: (NIODeadline) -> Scheduled<Void>) {
        self.deadline = deadline
        if let pending = self.taskDeadline, pending <= deadline {
            return
        }
        self.task?.cancel()
        self.task = schedule(deadline)
        self.taskDeadline = deadline
    }

    /// Disarms without touching the pending task (it will find nothing to do).
    mutating func disarm() {
        self.deadline = nil
    }

    /// Disarms and cancels the pending task (the connection is going away).
    mutating func cancel() {
        self.deadline = nil
        self.task?.cancel()
        self.task = nil
        self.taskDeadline = nil
    }

    /// The pending task fired at `now`: returns `true` when the armed deadline has passed
    /// (and disarms); re-schedules through `schedule` when it was armed for later.
    mutating func taskFired(now: NIODeadline, schedule: (NIODeadline) -> Scheduled<Void>) -> Bool {
        self.task = nil
        self.taskDeadline = nil
        guard let deadline = self.deadline else { return false }
        if deadline <= now {
            self.deadline = nil
            return true
        }
        self.task = schedule(deadline)
        self.taskDeadline = deadline
        return false
    }
}

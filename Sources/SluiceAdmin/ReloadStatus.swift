/// What the status page says about configuration reloads (SPEC §6): how many, and how the last one went.
public struct ReloadStatus: Sendable, Equatable {
    /// One reload's result.
    public struct Attempt: Sendable, Equatable {
        /// Unix time in milliseconds.
        public var milliseconds: Int64
        public var succeeded: Bool
        /// Why a failed reload was refused (`FILE:LINE:COLUMN: message` lines); `nil` on success.
        public var error: String?

        public init(milliseconds: Int64, succeeded: Bool, error: String? = nil) {
            self.milliseconds = milliseconds
            self.succeeded = succeeded
            self.error = error
        }
    }

    /// Unix time in milliseconds at which the process loaded its first configuration.
    public var startedMilliseconds: Int64
    public var successes: Int
    public var failures: Int
    /// `nil` until the first reload.
    public var last: Attempt?

    public init(startedMilliseconds: Int64, successes: Int = 0, failures: Int = 0, last: Attempt? = nil) {
        self.startedMilliseconds = startedMilliseconds
        self.successes = successes
        self.failures = failures
        self.last = last
    }
}

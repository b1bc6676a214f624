/// Keeps the tests that load the machine (tens of thousands of requests, connection floods, long mutation runs) from
/// running beside the tests that measure time (timeouts, pacing, penalty boxes).
///
/// On a 2-core machine a flood running in parallel delays a timing test's upstream or clock by hundreds of
/// milliseconds, and the timing test fails although nothing is wrong. A readers-writer gate for the whole test
/// process: end-to-end harnesses take it shared (any number at once), loading tests take it exclusive (alone). A
/// test already inside the gate passes through (a task-local flag), so an exclusive test may use the harnesses.
///
/// A suite's `.timeLimit` counts the time its tests wait here behind the loading tests, so the end-to-end suites
/// allow 3 minutes (a hang guard, not a speed check): with the cluster, Sentinel and HTTP/2 suites a full parallel
/// run on 2 cores kept some harness tests waiting past one minute.
public enum TestLoadGate {
    @TaskLocal static var inside = false
    private static let lock = ReadersWriterLock()

    /// Runs `body` beside other shared holders, never beside an exclusive one.
    public static func shared<T>(_ body: () async throws -> T) async throws -> T {
        if Self.inside { return try await body() }
        await Self.lock.acquire(exclusive: false)
        do {
            let result = try await Self.$inside.withValue(true) { try await body() }
            await Self.lock.release(exclusive: false)
            return result
        } catch {
            await Self.lock.release(exclusive: false)
            throw error
        }
    }

    /// Runs `body` alone: no other holder of the gate runs meanwhile.
    public static func exclusive<T>(_ body: () async throws -> T) async throws -> T {
        if Self.inside { return try await body() }
        await Self.lock.acquire(exclusive: true)
        do {
            let result = try await Self.$inside.withValue(true) { try await body() }
            await Self.lock.release(exclusive: true)
            return result
        } catch {
            await Self.lock.release(exclusive: true)
            throw error
        }
    }
}

/// First come, first served: a waiting exclusive holder is not overtaken by later shared ones.
private actor ReadersWriterLock {
    private var readers = 0
    private var writer = false
    private var waiting: [(exclusive: Bool, continuation: CheckedContinuation<Void, Never>)] = []

    func acquire(exclusive: Bool) async {
        if self.waiting.isEmpty && !self.writer && (!exclusive || self.readers == 0) {
            if exclusive { self.writer = true } else { self.readers += 1 }
            return
        }
        await withCheckedContinuation { self.waiting.append((exclusive, $0)) }
    }

    func release(exclusive: Bool) {
        if exclusive { self.writer = false } else { self.readers -= 1 }
        while let next = self.waiting.first, !self.writer, !next.exclusive || self.readers == 0 {
            self.waiting.removeFirst()
            if next.exclusive { self.writer = true } else { self.readers += 1 }
            next.continuation.resume()
        }
    }
}

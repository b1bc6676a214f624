import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The stripe of the calling thread, for tables that every event loop writes to (``StripedCounters``,
/// ``LimitedKeyTracker``).
///
/// Threads take stripes in the order they first ask, so the first ``count`` threads that record anything (in the
/// proxy: the event loops) each write to their own stripe and never touch a cache line another loop writes. Later
/// threads share stripes, which costs them contention, never correctness: every stripe is safe to write from any
/// thread.
struct ThreadStripe: Sendable {
    /// Stripes per table: twice the cores rounded up to a power of two, 2 to 64. Twice, so that a thread that is not
    /// an event loop (a test, the main thread) taking a stripe first still leaves every loop its own.
    static let count: Int = {
        let wanted = min(64, max(2, 2 * System.coreCount))
        var count = 1
        while count < wanted { count <<= 1 }
        return count
    }()

    /// The process's selector. Hot paths keep a copy (``StripedCounters``) so that finding the stripe reads no
    /// global (each global `let` costs a `swift_once` check per access).
    static let selector = ThreadStripe(
        key: {
            var key = pthread_key_t()
            let created = pthread_key_create(&key, nil)
            precondition(created == 0, "pthread_key_create failed: \(created)")
            return key
        }(),
        mask: ThreadStripe.count - 1
    )

    /// The calling thread's stripe, in `0..<count`.
    static var current: Int { Self.selector.current }

    /// Where a thread keeps its number, plus one so that `nil` means "none yet".
    private let key: pthread_key_t
    private let mask: Int
    /// Handed out in order, from 0.
    private static let assigned = Atomic<Int>(0)

    private init(key: pthread_key_t, mask: Int) {
        self.key = key
        self.mask = mask
    }

    /// The calling thread's stripe, in `0..<count`: one thread-specific read once the thread has one.
    @inline(__always)
    var current: Int {
        if let stored = pthread_getspecific(self.key) {
            return (Int(bitPattern: stored) &- 1) & self.mask
        }
        return self.assign()
    }

    @inline(never)
    private func assign() -> Int {
        let number = Self.assigned.wrappingAdd(1, ordering: .relaxed).oldValue
        pthread_setspecific(self.key, UnsafeRawPointer(bitPattern: number + 1))
        return number & self.mask
    }
}

/// A fixed set of counters that any number of threads add to without a lock and without sharing a cache line:
/// each ``ThreadStripe`` has its own copy of every counter, and reading one adds its stripes up.
///
/// An add is one thread-specific read (the stripe) and one relaxed atomic add on a line only that stripe writes; a
/// read is one load per stripe. Reads are for the admin listener (rendering, the status page's sampler), a few times
/// a second at most.
final class StripedCounters: @unchecked Sendable {
    // @unchecked: the memory behind `handle` is allocated and initialised in `init`, freed in `deinit`, and only ever
    // accessed in between through `Atomic` operations, which are safe from any thread.

    /// The counters, without ownership (see ``Handle``).
    let handle: Handle

    /// Counters in the set, numbered `0..<width`.
    var width: Int { self.handle.width }

    private static let cacheLine = 64

    init(width: Int) {
        precondition(width > 0, "a striped counter set needs at least one counter")
        let perLine = Self.cacheLine / MemoryLayout<Atomic<Int>>.stride
        let stride = (width + perLine - 1) / perLine * perLine
        let total = stride * ThreadStripe.count
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: total * MemoryLayout<Atomic<Int>>.stride,
            alignment: Self.cacheLine
        )
        let base = raw.bindMemory(to: Atomic<Int>.self, capacity: total)
        for index in 0..<total { (base + index).initialize(to: Atomic(0)) }
        self.handle = Handle(base: base, stride: stride, width: width, stripes: ThreadStripe.selector)
    }

    deinit {
        self.handle.base.deinitialize(count: self.handle.stride * ThreadStripe.count)
        UnsafeMutableRawPointer(self.handle.base).deallocate()
    }

    /// Adds `amount` to counter `counter` (in `0..<width`) in the calling thread's stripe.
    @inline(__always)
    func add(_ counter: Int, _ amount: Int = 1) {
        self.handle.add(counter, amount)
    }

    /// Counter `counter` summed over every stripe.
    func value(_ counter: Int) -> Int {
        self.stripeValues(counter).reduce(0, &+)
    }

    /// Each stripe's value of `counter`, for sums that are not plain integers (``StripedHistogram``).
    func stripeValues(_ counter: Int) -> [Int] {
        precondition(counter >= 0 && counter < self.width, "counter out of range")
        return (0..<ThreadStripe.count).map {
            self.handle.base[$0 * self.handle.stride + counter].load(ordering: .relaxed)
        }
    }

    /// The counters of a ``StripedCounters`` without a reference to it, so that adding retains and releases nothing.
    ///
    /// Valid only while its set lives: whoever holds a handle also holds the set (``RuleDecisionCounters`` keeps
    /// both).
    struct Handle: @unchecked Sendable {
        // @unchecked: see StripedCounters; a handle outliving its set is a bug of its holder.
        fileprivate let base: UnsafeMutablePointer<Atomic<Int>>
        /// Counters per stripe: `width` rounded up to whole 64-byte cache lines.
        fileprivate let stride: Int
        let width: Int
        let stripes: ThreadStripe

        /// The calling thread's stripe, for several adds in a row (``add(_:_:stripe:)``).
        @inline(__always)
        var currentStripe: Int { self.stripes.current }

        /// Adds `amount` to counter `counter` (in `0..<width`) in the calling thread's stripe.
        @inline(__always)
        func add(_ counter: Int, _ amount: Int = 1) {
            self.add(counter, amount, stripe: self.stripes.current)
        }

        /// Adds `amount` to counter `counter` in `stripe` (``currentStripe``).
        @inline(__always)
        func add(_ counter: Int, _ amount: Int = 1, stripe: Int) {
            precondition(counter >= 0 && counter < self.width, "counter out of range")
            self.base[stripe &* self.stride &+ counter].wrappingAdd(amount, ordering: .relaxed)
        }

        /// Replaces `stripe`'s value of `counter` with `transform` of it, atomically (a compare-and-swap loop, which
        /// on a stripe no other thread writes succeeds at once). For sums kept as bit patterns (``StripedHistogram``).
        @inline(__always)
        func update(_ counter: Int, stripe: Int, _ transform: (Int) -> Int) {
            precondition(counter >= 0 && counter < self.width, "counter out of range")
            let slot = stripe &* self.stride &+ counter
            var current = self.base[slot].load(ordering: .relaxed)
            while true {
                let (exchanged, original) = self.base[slot].compareExchange(
                    expected: current,
                    desired: transform(current),
                    ordering: .relaxed
                )
                if exchanged { return }
                current = original
            }
        }
    }
}

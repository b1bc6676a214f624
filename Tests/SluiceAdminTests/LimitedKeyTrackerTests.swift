import SluiceLimiter
import Testing

@testable import SluiceAdmin

@Suite struct LimitedKeyTrackerTests {
    static func key(_ n: UInt64) -> StorageKey { StorageKey(high: n &* 0x9e37_79b9_7f4a_7c15, low: n) }

    @Test func countsPerRuleAndKeyMostRefusedFirst() {
        let tracker = LimitedKeyTracker()
        let now: Int64 = 1_700_000_000
        for _ in 0..<3 { tracker.record(rule: "login", key: Self.key(1), shadow: false, nowSeconds: now) }
        tracker.record(rule: "login", key: Self.key(2), shadow: false, nowSeconds: now + 1)
        // The same digest under another rule, or refused only by a shadow rule, is another row.
        tracker.record(rule: "api", key: Self.key(1), shadow: false, nowSeconds: now)
        tracker.record(rule: "login", key: Self.key(1), shadow: true, nowSeconds: now)
        tracker.record(rule: "login", key: Self.key(1), shadow: true, nowSeconds: now)
        let top = tracker.top(10, nowSeconds: now + 2)
        #expect(top.map(\.count) == [3, 2, 1, 1])
        #expect(top[0].rule == "login" && top[0].key == Self.key(1) && !top[0].shadow)
        #expect(top[1].shadow)
        // Equal counts: the most recent first.
        #expect(top[2].key == Self.key(2) && top[2].lastSeenSeconds == now + 1)
        #expect(tracker.top(2, nowSeconds: now + 2).count == 2)
    }

    @Test func addsUpTheMinutesOfTheWindowAndForgetsOlderOnes() {
        let tracker = LimitedKeyTracker(minutes: 5)
        let start: Int64 = 60 * 1_000_000
        tracker.record(rule: "login", key: Self.key(1), shadow: false, nowSeconds: start)
        tracker.record(rule: "login", key: Self.key(1), shadow: false, nowSeconds: start + 61)
        tracker.record(rule: "login", key: Self.key(1), shadow: false, nowSeconds: start + 4 * 60 + 59)
        #expect(tracker.top(5, nowSeconds: start + 4 * 60 + 59).first?.count == 3)
        #expect(tracker.top(5, nowSeconds: start + 5 * 60).first?.count == 2, "the first minute has left the window")
        #expect(tracker.top(5, nowSeconds: start + 10 * 60).isEmpty)
        // A new minute reuses the table of the minute five before it.
        tracker.record(rule: "login", key: Self.key(2), shadow: false, nowSeconds: start + 5 * 60)
        #expect(tracker.top(5, nowSeconds: start + 5 * 60).map(\.key) == [Self.key(1), Self.key(2)])
    }

    @Test func staysBoundedUnderAFloodOfDistinctKeysAndKeepsTheHeavyOne() {
        let tracker = LimitedKeyTracker(minutes: 2, slotsPerMinute: 8)
        let now: Int64 = 6_000
        let heavy = Self.key(999_999)
        for n in 0..<10_000 {
            tracker.record(rule: "login", key: Self.key(UInt64(n)), shadow: false, nowSeconds: now)
            if n % 4 == 0 { tracker.record(rule: "login", key: heavy, shadow: false, nowSeconds: now) }
        }
        let top = tracker.top(100, nowSeconds: now)
        #expect(top.count == 8)
        #expect(top.first?.key == heavy)
        // Counts are upper bounds: never below the truth.
        #expect((top.first?.count ?? 0) >= 2_500)
    }

    @Test func concurrentRecordingLosesNothing() async {
        let tracker = LimitedKeyTracker()
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    for _ in 0..<1_000 {
                        tracker.record(rule: "r", key: Self.key(UInt64(worker)), shadow: false, nowSeconds: 120)
                    }
                }
            }
        }
        #expect(tracker.top(10, nowSeconds: 120).map(\.count) == [1_000, 1_000, 1_000, 1_000])
    }
}

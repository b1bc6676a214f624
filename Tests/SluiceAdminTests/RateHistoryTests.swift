import SluiceLimiter
import Testing

@testable import SluiceAdmin

@Suite struct RateHistoryTests {
    func totals(admitted: Int, limited: Int = 0) -> MetricTotals {
        var totals = MetricTotals()
        totals.requests["login"] = DecisionCounts(admitted: admitted, limited: limited)
        return totals
    }

    @Test func storesWhatHappenedBetweenReadings() {
        let history = RateHistory()
        history.record(self.totals(admitted: 10), atMilliseconds: 1_000)
        #expect(history.samples.isEmpty, "the first reading is only the baseline")
        history.record(self.totals(admitted: 14, limited: 3), atMilliseconds: 3_050)
        let sample = try! #require(history.samples.first)
        #expect(sample.endMilliseconds == 3_050)
        #expect(sample.durationMilliseconds == 2_050)
        #expect(sample.counts.requests["login"] == DecisionCounts(admitted: 4, limited: 3))
    }

    @Test func aRuleSeenForTheFirstTimeCountsFromZero() {
        let history = RateHistory()
        history.record(MetricTotals(), atMilliseconds: 0)
        history.record(self.totals(admitted: 5), atMilliseconds: 2_000)
        #expect(history.samples.last?.counts.requests["login"]?.admitted == 5)
    }

    @Test func aClockThatGoesBackStartsANewBaseline() {
        let history = RateHistory()
        history.record(self.totals(admitted: 1), atMilliseconds: 10_000)
        history.record(self.totals(admitted: 2), atMilliseconds: 9_000)
        history.record(self.totals(admitted: 2), atMilliseconds: 9_000)
        #expect(history.samples.isEmpty)
        history.record(self.totals(admitted: 7), atMilliseconds: 11_000)
        #expect(history.samples.map(\.counts.requests["login"]?.admitted) == [5])
    }

    @Test func keepsOnlyTheNewestSamples() {
        let history = RateHistory(capacity: 3)
        for step in 0...10 {
            history.record(self.totals(admitted: step * step), atMilliseconds: Int64(step) * 2_000)
        }
        #expect(history.samples.map(\.endMilliseconds) == [16_000, 18_000, 20_000])
        #expect(history.samples.map { $0.counts.requests["login"]!.admitted } == [15, 17, 19])
    }
}

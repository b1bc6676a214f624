/// A Prometheus histogram without labels that the request path records into without a lock (``StripedCounters``).
///
/// swift-prometheus's `Histogram` takes a lock and walks every bucket per observation; here an observation adds one
/// to the count of the first bucket that holds it (not cumulative) and the value to a running sum, both in the
/// calling thread's stripe. ``emit(into:)`` adds the stripes up, makes the buckets cumulative and writes the family in
/// exactly the text swift-prometheus writes for its own histogram (so `GET /metrics` reads as it did).
final class StripedHistogram: Sendable {
    let name: String
    let help: String
    /// Upper bounds, ascending; `+Inf` is implied.
    let buckets: [Double]
    /// Counters `0..<buckets.count`: observations whose first bound at or above them is that bucket's;
    /// `buckets.count`: observations above every bound; `buckets.count + 1`: the sum, a `Double`'s bit pattern.
    private let counters: StripedCounters

    private var overflowSlot: Int { self.buckets.count }
    private var sumSlot: Int { self.buckets.count + 1 }

    init(name: String, help: String, buckets: [Double]) {
        precondition(zip(buckets, buckets.dropFirst()).allSatisfy { $0 < $1 }, "buckets must ascend")
        self.name = name
        self.help = help
        self.buckets = buckets
        self.counters = StripedCounters(width: buckets.count + 2)
    }

    /// Counts `value` in its bucket and adds it to the sum.
    func observe(_ value: Double) {
        var slot = 0
        // A dozen bounds: a linear scan is as quick as a binary search and reads the way Prometheus defines `le`.
        while slot < self.buckets.count, !(value <= self.buckets[slot]) { slot &+= 1 }
        let counters = self.counters.handle
        let stripe = counters.currentStripe
        counters.add(slot, stripe: stripe)
        counters.update(self.sumSlot, stripe: stripe) { bits in
            Int(bitPattern: UInt(truncatingIfNeeded: (Double(bitPattern: UInt64(UInt(bitPattern: bits))) + value).bitPattern))
        }
    }

    /// Observations so far.
    var count: Int {
        (0...self.overflowSlot).reduce(0) { $0 + self.counters.value($1) }
    }

    /// The sum of every observation so far.
    var sum: Double {
        self.counters.stripeValues(self.sumSlot).reduce(0.0) { $0 + Double(bitPattern: UInt64(UInt(bitPattern: $1))) }
    }

    /// Writes `# HELP`, `# TYPE` and the samples, as swift-prometheus's `PrometheusCollectorRegistry.emit` writes a
    /// `ValueHistogram` without labels.
    func emit(into buffer: inout [UInt8]) {
        if !self.help.isEmpty {
            buffer.append(contentsOf: "# HELP \(self.name) \(self.help)\n".utf8)
        }
        buffer.append(contentsOf: "# TYPE \(self.name) histogram\n".utf8)
        var cumulative = 0
        for (slot, bound) in self.buckets.enumerated() {
            cumulative += self.counters.value(slot)
            buffer.append(contentsOf: "\(self.name)_bucket{le=\"\(bound.description)\"} \(cumulative)\n".utf8)
        }
        cumulative += self.counters.value(self.overflowSlot)
        buffer.append(contentsOf: "\(self.name)_bucket{le=\"+Inf\"} \(cumulative)\n".utf8)
        buffer.append(contentsOf: "\(self.name)_sum \(self.sum.description)\n".utf8)
        buffer.append(contentsOf: "\(self.name)_count \(cumulative)\n".utf8)
    }
}

import Prometheus

/// The per-server storage series of one store (``SluiceMetrics/storageServerMetrics(for:)``), indexed like the
/// store's servers, so recording one exchange takes no lock and no lookup.
public final class StorageServerMetrics: Sendable {
    private let errors: [Counter]
    private let latency: [ValueHistogram]

    init(errors: [Counter], latency: [ValueHistogram]) {
        self.errors = errors
        self.latency = latency
    }

    /// Records one exchange with server `index`: its time, or a failure (a failed exchange is not timed).
    public func observe(server index: Int, seconds: Double, failed: Bool) {
        guard self.errors.indices.contains(index) else { return }
        if failed {
            self.errors[index].increment()
        } else {
            self.latency[index].record(max(0, seconds))
        }
    }
}

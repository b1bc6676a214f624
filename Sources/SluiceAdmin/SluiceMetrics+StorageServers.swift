import Prometheus

extension SluiceMetrics {
    /// Sets `sluice_storage_server_up{server,role}` from the store's servers, read at each scrape: 1 for a server
    /// that answers, 0 for one that does not and for one no longer listed (a former Redis primary after a
    /// Sentinel failover: its series stays, Prometheus series must not vanish while the process lives).
    public func updateStorageServers(_ servers: [StorageServerHealth]) {
        let descriptor = MetricNameDescriptor(
            metricName: "sluice_storage_server",
            unitName: "up",
            helpText: "Whether a storage server answers (1) or not (0), by role: server (memcached), primary and sentinel (Redis Sentinel)."
        )
        self.storageServerUp.withLock { series in
            for gauge in series.values { gauge.set(Int64(0)) }
            for server in servers {
                let id = "\(server.role.rawValue) \(server.address)"
                let gauge: Gauge
                if let known = series[id] {
                    gauge = known
                } else {
                    gauge = self.registry.makeGauge(
                        descriptor: descriptor,
                        labels: [("server", server.address), ("role", server.role.rawValue)]
                    )
                    series[id] = gauge
                }
                gauge.set(Int64(server.available ? 1 : 0))
            }
        }
    }
}

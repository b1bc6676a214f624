import Yams

/// `upstream:` (SPEC §2).
extension ConfigReader {
    func readUpstream(_ node: Node) -> UpstreamConfiguration {
        var upstream = UpstreamConfiguration()
        let allowed = ["url", "targets", "preserve_host", "max_idle_per_loop", "tls", "adaptive_concurrency"]
        guard let fields = self.fields(node, "upstream", allowed: allowed) else { return upstream }
        switch (fields["url"], fields["targets"]) {
        case (nil, nil):
            self.error("upstream.url or upstream.targets is required", at: node)
        case (.some, .some(let targets)):
            self.error("upstream: give either 'url' or 'targets', not both", at: targets.keyNode)
        case (.some(let url), nil):
            if let text = self.text(url.value, "url"), let target = self.upstreamTarget(text, "url") {
                upstream.targets = [target]
            }
        case (nil, .some(let targets)):
            if let items = self.textList(targets.value, "targets") {
                if case .sequence(let sequence) = targets.value, sequence.isEmpty {
                    self.error("targets: at least one URL is required", at: targets.value)
                }
                let parsed = items.compactMap { self.upstreamTarget($0, "targets") }
                if !parsed.isEmpty { upstream.targets = parsed }
            }
        }
        if let entry = fields["preserve_host"], let value = self.boolean(entry.value, "preserve_host") {
            upstream.preserveHost = value
        }
        if let entry = fields["max_idle_per_loop"], let value = self.integer(entry.value, "max_idle_per_loop", in: 0...Int.max) {
            upstream.maxIdlePerLoop = value
        }
        if let entry = fields["tls"], let tlsFields = self.fields(entry.value, "tls", allowed: ["verify", "ca"]) {
            if let verify = tlsFields["verify"], let value = self.boolean(verify.value, "verify") {
                upstream.tls.verify = value
            }
            if let ca = tlsFields["ca"], let value = self.readableFile(ca.value, "ca") {
                upstream.tls.ca = value
            }
        }
        if let entry = fields["adaptive_concurrency"] {
            upstream.adaptiveConcurrency = self.readAdaptiveConcurrency(entry.value)
        }
        return upstream
    }

    /// The keys of `upstream.adaptive_concurrency` (issue 22), all optional.
    static let adaptiveConcurrencyKeys = [
        "min", "max", "sample_interval", "min_rtt_interval", "jitter", "min_rtt_samples", "buffer", "percentile",
        "retry_after",
    ]

    /// `adaptive_concurrency: { min: 8, max: 1000, sample_interval: 100ms, min_rtt_interval: 60s, jitter: 15%,
    /// min_rtt_samples: 50, buffer: 25%, percentile: 50%, retry_after: 1s }` (issue 22); every key optional.
    func readAdaptiveConcurrency(_ node: Node) -> AdaptiveConcurrencyConfiguration? {
        guard let fields = self.fields(node, "adaptive_concurrency", allowed: Self.adaptiveConcurrencyKeys) else {
            return nil
        }
        var failed = false
        var configuration = AdaptiveConcurrencyConfiguration()
        func read<T>(_ key: String, _ parse: (Node) -> T?, _ store: (T) -> Void) {
            guard let entry = fields[key] else { return }
            if let value = parse(entry.value) { store(value) } else { failed = true }
        }
        read("min", { self.integer($0, "min", in: 1...1_000_000) }) { configuration.min = $0 }
        read("max", { self.integer($0, "max", in: 1...1_000_000) }) { configuration.max = $0 }
        if !failed, configuration.max < configuration.min, let entry = fields["max"] ?? fields["min"] {
            self.error(
                "adaptive_concurrency: max (\(configuration.max)) must be at least min (\(configuration.min))",
                at: entry.value
            )
            failed = true
        }
        read("sample_interval", { self.boundedDuration($0, "sample_interval", atMost: .seconds(3600), "1h") }) {
            configuration.sampleInterval = $0
        }
        read("min_rtt_interval", { self.boundedDuration($0, "min_rtt_interval", atMost: .seconds(86400), "24h") }) {
            configuration.minRTTInterval = $0
        }
        read("jitter", { self.fraction($0, "jitter", atMost: 1) }) { configuration.jitter = $0 }
        read("min_rtt_samples", { self.integer($0, "min_rtt_samples", in: 1...100_000) }) { configuration.minRTTSamples = $0 }
        read("buffer", { self.fraction($0, "buffer", atMost: 10) }) { configuration.buffer = $0 }
        read("percentile", { self.fraction($0, "percentile", atMost: 1) }) { configuration.percentile = $0 }
        read("retry_after", { self.boundedDuration($0, "retry_after", atMost: .seconds(86400), "24h") }) {
            configuration.retryAfter = $0
        }
        return failed ? nil : configuration
    }

    /// A duration greater than 0 and at most `limit` (spelled `limitText` in the message).
    private func boundedDuration(_ node: Node, _ name: String, atMost limit: Duration, _ limitText: String) -> Duration? {
        guard let value = self.duration(node, name, allowZero: false) else { return nil }
        guard value <= limit else {
            self.error("\(name): at most \(limitText), got \(Self.describe(node))", at: node)
            return nil
        }
        return value
    }

    /// A fraction from 0 to `limit`, written as a number (`0.15`) or a percentage (`15%`).
    func fraction(_ node: Node, _ name: String, atMost limit: Double) -> Double? {
        guard let text = self.text(node, name) else { return nil }
        var digits = Substring(text.value.trimmingSpaces)
        let percent = digits.hasSuffix("%")
        if percent { digits = digits.dropLast() }
        guard let number = Double(digits), number.isFinite,
            digits.allSatisfy({ $0.isNumber || $0 == "." })
        else {
            self.error("\(name): expected a number such as 0.25 or a percentage such as 25%, got '\(text.value)'", at: text.position)
            return nil
        }
        let value = percent ? number / 100 : number
        guard value <= limit else {
            let bound = "\(Int(limit)) (\(Int(limit * 100))%)"
            self.error("\(name): must be between 0 and \(bound), got '\(text.value)'", at: text.position)
            return nil
        }
        return value
    }

    private func upstreamTarget(_ text: LocatedText, _ name: String) -> UpstreamTarget? {
        switch UpstreamTarget.parse(text.value.trimmingSpaces) {
        case .success(let target):
            return target
        case .failure(let problem):
            self.error("\(name): \(problem.message)", at: text.position(atOffset: problem.offset))
            return nil
        }
    }
}

import Yams

/// `upstream:` (SPEC §2).
extension ConfigReader {
    func readUpstream(_ node: Node) -> UpstreamConfiguration {
        var upstream = UpstreamConfiguration()
        let allowed = ["url", "targets", "preserve_host", "max_idle_per_loop", "tls"]
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
        return upstream
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

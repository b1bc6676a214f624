import Yams

/// `rules:` (SPEC §2): each rule, then the checks that span rules (unique names, consistent `shared` groups).
extension ConfigReader {
    private static let ruleKeys = [
        "name", "match", "key", "limits", "algorithm", "burst", "cost", "mode", "on_missing_key", "exempt",
        "block_for", "shared", "delay", "count_when", "tiers", "response", "concurrency",
    ]

    /// Keys that only shape rate limits: an error in a rule whose only limit is `concurrency`.
    private static let rateOnlyKeys = ["algorithm", "burst", "cost", "block_for", "shared", "delay", "count_when"]

    /// Where a rule's name and `shared` value were written, for errors that compare rules.
    private struct RuleSite {
        var rule: RuleConfiguration
        var namePosition: SourcePosition
        var sharedPosition: SourcePosition?
    }

    func readRules(_ node: Node, response: ResponseConfiguration) -> [RuleConfiguration] {
        guard case .sequence(let sequence) = node else {
            self.error("rules: expected a list of rules, got \(Self.describe(node))", at: node)
            return []
        }
        var sites: [RuleSite] = []
        for item in sequence {
            if let site = self.readRule(item, response: response) { sites.append(site) }
        }
        self.checkUniqueNames(sites)
        self.checkSharedGroups(sites)
        return sites.map(\.rule)
    }

    private func readRule(_ node: Node, response: ResponseConfiguration) -> RuleSite? {
        guard let fields = self.fields(node, "rule", allowed: Self.ruleKeys) else { return nil }
        var name = ""
        var namePosition = self.position(of: node)
        if let entry = fields["name"] {
            if let text = self.text(entry.value, "name") {
                namePosition = text.position
                if Self.isIdentifier(text.value) {
                    name = text.value
                } else {
                    self.error("name: '\(text.value)' must match [a-z0-9_-]+", at: text.position)
                }
            }
        } else {
            self.error("rule: 'name' is required", at: node)
        }

        var rule = RuleConfiguration(name: name, limits: [], response: response)
        if let entry = fields["match"] { rule.match = self.readMatch(entry.value) }
        if let entry = fields["key"], let parts = self.keyParts(entry.value, "key") { rule.key = parts }
        if let entry = fields["limits"], let limits = self.limits(entry.value, "limits") { rule.limits = limits }
        if let entry = fields["algorithm"] {
            let choices: [(String, Algorithm)] = [
                ("fixed_window", .fixedWindow), ("sliding_window", .slidingWindow), ("moving_window", .movingWindow),
                ("token_bucket", .tokenBucket), ("gcra", .gcra),
            ]
            if let algorithm = self.choice(entry.value, "algorithm", choices) { rule.algorithm = algorithm }
        }
        if let entry = fields["burst"], let burst = self.integer(entry.value, "burst", in: 0...Int.max) {
            // `burst: 0` is what every algorithm does anyway, so the spec's own example (sliding_window, burst: 0) loads.
            if burst > 0, rule.algorithm != .gcra, rule.algorithm != .tokenBucket {
                self.error("burst is only valid with algorithm gcra or token_bucket (algorithm is \(rule.algorithm.rawValue))", at: entry.keyNode)
            }
            rule.burst = burst
        }
        if let entry = fields["cost"], let cost = self.readCost(entry.value) { rule.cost = cost }
        if let entry = fields["mode"], let mode = self.choice(entry.value, "mode", [("enforce", RuleConfiguration.Mode.enforce), ("shadow", .shadow)]) {
            rule.mode = mode
        }
        if let entry = fields["on_missing_key"], let value = self.readOnMissingKey(entry.value) { rule.onMissingKey = value }
        if let entry = fields["exempt"] { rule.exempt = self.cidrList(entry.value, "exempt") }
        if let entry = fields["block_for"], let value = self.duration(entry.value, "block_for", allowZero: true) {
            rule.blockFor = value
        }
        var sharedPosition: SourcePosition?
        if let entry = fields["shared"], let text = self.text(entry.value, "shared") {
            sharedPosition = text.position
            if text.value.isEmpty {
                rule.shared = nil
            } else if Self.isIdentifier(text.value) {
                rule.shared = text.value
            } else {
                self.error("shared: '\(text.value)' must match [a-z0-9_-]+", at: text.position)
            }
        }
        if let entry = fields["delay"], let delay = self.duration(entry.value, "delay", allowZero: true) {
            if delay > .zero, rule.algorithm != .gcra {
                self.error("delay is only valid with algorithm gcra (algorithm is \(rule.algorithm.rawValue))", at: entry.keyNode)
            }
            rule.delay = delay
        }
        if let entry = fields["count_when"] { rule.countWhen = self.readCountWhen(entry.value) }
        if let entry = fields["tiers"] { rule.tiers = self.readTiers(entry.value) }
        if let entry = fields["response"] {
            rule.response = self.readResponse(entry.value, "response", base: response, isOverride: true)
        }

        if let entry = fields["concurrency"] {
            rule.concurrency = self.readConcurrency(entry.value)
        }
        let givesConcurrency = fields["concurrency"] != nil
        if !givesConcurrency, let tiers = fields["tiers"], rule.tiers.map({ !$0.concurrencyMax.isEmpty || $0.defaultConcurrencyMax != nil }) == true {
            self.error("tiers: a tier gives concurrency.max but rule '\(name)' has no 'concurrency'", at: tiers.keyNode)
        }

        if fields["limits"] == nil && givesConcurrency {
            // Concurrency alone, or with rate limits from tiers only (`limits` empty: unlisted values have none).
            rule.limits = rule.tiers?.defaultLimits ?? []
            if rule.tiers.map({ $0.values.isEmpty && $0.defaultLimits == nil }) ?? true {
                for key in Self.rateOnlyKeys {
                    if let entry = fields[key] {
                        self.error("\(key) applies to 'limits'; rule '\(name)' has only 'concurrency'", at: entry.keyNode)
                    }
                }
            }
        } else if fields["limits"] == nil {
            if let defaultLimits = rule.tiers?.defaultLimits {
                // `limits` is never empty in the model: with tiers and no `limits`, the tier default stands in.
                rule.limits = defaultLimits
            } else if fields["tiers"] != nil {
                self.error("rule '\(name)': tiers without 'default' need 'limits' for unlisted values", at: node)
            } else {
                self.error("rule '\(name)': 'limits', 'tiers' or 'concurrency' is required", at: node)
            }
        }
        self.checkDescriptorRule(rule, fields: fields)
        return RuleSite(rule: rule, namePosition: namePosition, sharedPosition: sharedPosition)
    }

    /// Options that need an HTTP request (issue 14): not in a rule with `match.descriptor`, which decides gRPC
    /// descriptors; and `descriptor:KEY` parts only there.
    private func checkDescriptorRule(_ rule: RuleConfiguration, fields: MappingFields) {
        var partSites: [(String, [KeyPart])] = [("key", rule.key)]
        if case .fallback(let parts) = rule.onMissingKey { partSites.append(("on_missing_key", parts)) }
        if let by = rule.tiers?.by { partSites.append(("tiers", [by])) }
        guard rule.match.descriptor != nil else {
            for (field, parts) in partSites {
                if let part = parts.first(where: { if case .descriptor = $0 { true } else { false } }), let entry = fields[field] {
                    self.error("\(field): key part '\(part)' needs match.descriptor (it reads a gRPC descriptor's entry)", at: entry.keyNode)
                }
            }
            return
        }
        for (field, parts) in partSites {
            let http = parts.first { part in
                switch part {
                case .descriptor, .ip, .ipPrefix, .const: false
                default: true
                }
            }
            if let http, let entry = fields[field] {
                self.error(
                    "\(field): key part '\(http)' reads an HTTP request; a rule with match.descriptor may use "
                        + "descriptor:KEY, ip, ip/N (the descriptor's remote_address) or const:TEXT",
                    at: entry.keyNode
                )
            }
        }
        let reasons = [
            ("cost", "the cost of a descriptor is the request's hits_addend"),
            ("count_when", "a descriptor has no response status"),
            ("delay", "the rate-limit service cannot hold a request"),
            ("concurrency", "a descriptor has no end to count in-flight requests to"),
        ]
        for (key, reason) in reasons {
            if let entry = fields[key] {
                self.error("\(key): not available with match.descriptor (\(reason))", at: entry.keyNode)
            }
        }
    }

    /// `[a-z0-9_-]+`: rule and shared names end up in headers, metric labels and storage keys.
    static func isIdentifier(_ text: String) -> Bool {
        !text.isEmpty
            && text.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }
    }

    private func checkUniqueNames(_ sites: [RuleSite]) {
        var first: [String: SourcePosition] = [:]
        for site in sites where !site.rule.name.isEmpty {
            if let previous = first[site.rule.name] {
                self.error("duplicate rule name '\(site.rule.name)' (first defined at line \(previous.line))", at: site.namePosition)
            } else {
                first[site.rule.name] = site.namePosition
            }
        }
    }

    /// Rules with one `shared` name count in one budget, which only makes sense if they agree on what it is.
    private func checkSharedGroups(_ sites: [RuleSite]) {
        var first: [String: RuleSite] = [:]
        for site in sites {
            guard let shared = site.rule.shared else { continue }
            guard let leader = first[shared] else {
                first[shared] = site
                continue
            }
            if Self.budget(of: site.rule) != Self.budget(of: leader.rule) {
                self.error(
                    "shared: rules sharing '\(shared)' must have the same limits, tiers, algorithm and burst; "
                        + "rule '\(site.rule.name)' differs from rule '\(leader.rule.name)' (line \(leader.namePosition.line))",
                    at: site.sharedPosition ?? site.namePosition
                )
            }
        }
    }

    /// What a shared budget is made of, ignoring how the limits were spelt.
    private struct Budget: Equatable {
        var limits: [[Int]]
        var tiers: [String: [[Int]]]
        var tierDefault: [[Int]]?
        var tierBy: KeyPart?
        var algorithm: Algorithm
        var burst: Int
    }

    private static func budget(of rule: RuleConfiguration) -> Budget {
        func normal(_ limits: [RateLimit]) -> [[Int]] { limits.map { [$0.count, $0.periodSeconds] }.sorted { $0.lexicographicallyPrecedes($1) } }
        return Budget(
            limits: normal(rule.limits),
            tiers: rule.tiers?.values.mapValues(normal) ?? [:],
            tierDefault: rule.tiers?.defaultLimits.map(normal),
            tierBy: rule.tiers?.by,
            algorithm: rule.algorithm,
            burst: rule.burst
        )
    }
}

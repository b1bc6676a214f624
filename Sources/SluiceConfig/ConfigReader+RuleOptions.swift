import Yams

/// The parts of a rule that have their own small grammar: `match`, `key`, `limits`, `cost`, `on_missing_key`,
/// `count_when` and `tiers`.
extension ConfigReader {
    func readMatch(_ node: Node) -> RuleMatch {
        var match = RuleMatch()
        guard let fields = self.fields(node, "match", allowed: ["methods", "path", "host", "headers", "jwt", "descriptor"]) else {
            return match
        }
        if let entry = fields["methods"], let items = self.textList(entry.value, "methods") {
            var methods: [String] = []
            for item in items {
                guard HTTPToken.isValid(item.value) else {
                    self.error("methods: invalid method '\(item.value)'", at: item.position)
                    continue
                }
                let method = item.value.uppercased()
                if !methods.contains(method) { methods.append(method) }
            }
            if items.isEmpty {
                self.error("methods: the list is empty, so the rule would never match", at: entry.value)
            }
            match.methods = methods
        }
        if let entry = fields["path"], let text = self.text(entry.value, "path") {
            switch PathPattern.parse(text.value) {
            case .success(let pattern): match.path = pattern
            case .failure(let problem): self.error("path: \(problem.message)", at: text.position(atOffset: problem.offset))
            }
        }
        if let entry = fields["host"], let text = self.text(entry.value, "host") {
            let host = text.value.lowercased()
            let isIPv6 = host.hasPrefix("[") && host.hasSuffix("]")
            if host.isEmpty || (!isIPv6 && host.contains(":")) {
                self.error("host: expected a host name without port, got '\(text.value)'", at: text.position)
            } else {
                match.host = host
            }
        }
        if let entry = fields["headers"], let pairs = self.pairs(entry.value, "headers") {
            for (key, value) in pairs {
                guard let name = self.headerName(key, "headers"), let text = self.text(value, "headers.\(key.value)") else {
                    continue
                }
                match.headers.append(RuleMatch.HeaderCondition(name: name.lowercased(), value: text.value == "*" ? nil : text.value))
            }
        }
        if let entry = fields["jwt"], let pairs = self.pairs(entry.value, "jwt") {
            self.jwtUses.append(self.position(of: entry.keyNode))
            for (key, value) in pairs {
                guard let path = JWTClaimPath.parse(key.value) else {
                    self.error("jwt: '\(key.value)' is not a claim name (dotted for nested claims, e.g. org.id)", at: key.position)
                    continue
                }
                guard let text = self.text(value, "jwt.\(key.value)") else { continue }
                match.claims.append(RuleMatch.ClaimCondition(path: path, value: text.value == "*" ? nil : text.value))
            }
        }
        if let entry = fields["descriptor"] {
            match.descriptor = self.readDescriptorCondition(entry.value)
            for key in ["methods", "path", "host", "headers", "jwt"] {
                if let other = fields[key] {
                    self.error(
                        "match.\(key): a rule with match.descriptor decides gRPC descriptors, which have no HTTP request",
                        at: other.keyNode
                    )
                }
            }
        }
        return match
    }

    /// `descriptor: { domain: D, entries: { KEY: VALUE or "*" }, exact: BOOL }` (issue 14).
    private func readDescriptorCondition(_ node: Node) -> RuleMatch.DescriptorCondition? {
        guard let fields = self.fields(node, "descriptor", allowed: ["domain", "entries", "exact"]) else { return nil }
        var condition = RuleMatch.DescriptorCondition(domain: "", entries: [])
        if let entry = fields["domain"] {
            guard let domain = self.nonEmptyString(entry.value, "domain") else { return nil }
            condition.domain = domain
        } else {
            self.error("descriptor: 'domain' is required", at: node)
            return nil
        }
        if let entry = fields["entries"], let pairs = self.pairs(entry.value, "entries") {
            for (key, value) in pairs {
                guard !key.value.isEmpty else {
                    self.error("entries: a descriptor entry key cannot be empty", at: key.position)
                    continue
                }
                guard let text = self.text(value, "entries.\(key.value)") else { continue }
                if text.value.isEmpty {
                    self.error("entries.\(key.value): a descriptor entry value cannot be empty (\"*\" takes any value)", at: text.position)
                    continue
                }
                condition.entries.append(.init(key: key.value, value: text.value == "*" ? nil : text.value))
            }
        }
        if let entry = fields["exact"], let exact = self.boolean(entry.value, "exact") {
            condition.exact = exact
        }
        return condition
    }

    /// Key parts as a list, or one part as a string; a part may also be written as a one-entry mapping
    /// (`- header: X-Api-Key`), which is what YAML makes of `header: X-Api-Key` with a space.
    func keyParts(_ node: Node, _ name: String) -> [KeyPart]? {
        let items: [Node]
        switch node {
        case .sequence(let sequence): items = Array(sequence)
        case .scalar, .mapping: items = [node]
        case .alias: items = []
        }
        if items.isEmpty {
            self.error("\(name): at least one key part is required", at: node)
            return nil
        }
        var parts: [KeyPart] = []
        var failed = false
        for item in items {
            var text: LocatedText?
            if case .mapping(let mapping) = item, mapping.count == 1, let (kindNode, argumentNode) = mapping.first,
                case .scalar(let kind) = kindNode, let argument = self.text(argumentNode, name)
            {
                text = LocatedText(value: "\(kind.string):\(argument.value)", position: self.position(of: item), contentStart: nil)
            } else if case .mapping = item {
                self.error("\(name): expected a key part such as ip or header:NAME, got a mapping", at: item)
                failed = true
                continue
            } else {
                text = self.text(item, name)
            }
            guard let text else {
                failed = true
                continue
            }
            switch KeyPart.parse(text.value.trimmingSpaces) {
            case .success(let part):
                if case .jwt = part { self.jwtUses.append(text.position) }
                parts.append(part)
            case .failure(let problem):
                self.error("\(name): \(problem.message)", at: text.position(atOffset: problem.offset))
                failed = true
            }
        }
        return failed ? nil : parts
    }

    /// Limit strings as a list, or `;`-separated in one string (or both); errors point inside the string.
    func limits(_ node: Node, _ name: String) -> [RateLimit]? {
        guard let items = self.textList(node, name) else { return nil }
        var limits: [RateLimit] = []
        var failed = false
        for item in items {
            var offset = 0
            for piece in item.value.unicodeScalars.split(separator: ";", omittingEmptySubsequences: false) {
                let pieceText = String(String.UnicodeScalarView(piece))
                let pieceOffset = offset
                offset += piece.count + 1
                if pieceText.trimmingSpaces.isEmpty { continue }
                let located = item.slice(from: pieceOffset, value: pieceText)
                switch RateLimit.parse(pieceText) {
                case .failure(let problem):
                    self.error("\(name): \(problem.message)", at: located.position(atOffset: problem.offset))
                    failed = true
                case .success(let limit):
                    if let same = limits.first(where: { $0.periodSeconds == limit.periodSeconds }) {
                        // Policies are named RULE-WINDOW (SPEC §5): two limits on one window would share a name.
                        let leading = pieceText.unicodeScalars.prefix { $0 == " " || $0 == "\t" }.count
                        self.error(
                            "\(name): '\(limit.text)' has the same period as '\(same.text)'; keep the stricter one",
                            at: located.position(atOffset: leading)
                        )
                        failed = true
                    } else {
                        limits.append(limit)
                    }
                }
            }
        }
        if limits.isEmpty && !failed {
            self.error("\(name): at least one limit is required, e.g. 10/minute", at: node)
            return nil
        }
        return failed ? nil : limits
    }

    /// `cost: N` or `cost: { header: X-Cost, default: 1, max: 100 }`; `max` defaults to 2³¹−1 (no cap: a cost
    /// above a limit's count is denied anyway).
    func readCost(_ node: Node) -> RuleConfiguration.Cost? {
        if case .mapping = node {
            guard let fields = self.fields(node, "cost", allowed: ["header", "default", "max"]) else { return nil }
            guard let headerEntry = fields["header"] else {
                self.error("cost: 'header' is required in the mapping form", at: node)
                return nil
            }
            guard let header = self.text(headerEntry.value, "header") else { return nil }
            guard HTTPToken.isValid(header.value) else {
                self.error("cost: invalid header name '\(header.value)'", at: header.position)
                return nil
            }
            var defaultCost = 1
            if let entry = fields["default"] {
                guard let value = self.integer(entry.value, "default", in: 1...Int(Int32.max)) else { return nil }
                defaultCost = value
            }
            var maxCost = Int(Int32.max)
            if let entry = fields["max"] {
                guard let value = self.integer(entry.value, "max", in: 1...Int(Int32.max)) else { return nil }
                guard value >= defaultCost else {
                    self.error("max: must be at least default (\(defaultCost)), got \(value)", at: entry.value)
                    return nil
                }
                maxCost = value
            }
            return .header(name: header.value.lowercased(), default: defaultCost, max: maxCost)
        }
        guard case .scalar = node else {
            self.error("cost: expected an integer or { header, default, max }, got \(Self.describe(node))", at: node)
            return nil
        }
        return self.integer(node, "cost", in: 1...Int(Int32.max)).map { .fixed($0) }
    }

    /// `skip`, `deny`, or the mapping `{ fallback: [parts] }`.
    func readOnMissingKey(_ node: Node) -> RuleConfiguration.OnMissingKey? {
        if case .mapping = node {
            guard let fields = self.fields(node, "on_missing_key", allowed: ["fallback"]) else { return nil }
            guard let entry = fields["fallback"] else {
                self.error("on_missing_key: 'fallback' is required in the mapping form", at: node)
                return nil
            }
            return self.keyParts(entry.value, "fallback").map { .fallback($0) }
        }
        guard let text = self.text(node, "on_missing_key") else { return nil }
        switch text.value {
        case "skip": return .skip
        case "deny": return .deny
        default:
            self.error("on_missing_key: expected skip, deny or { fallback: [parts] }, got '\(text.value)'", at: text.position)
            return nil
        }
    }

    /// `count_when: { status: [401, "4xx"] }`: exact codes 100...599 and classes `1xx`...`5xx`.
    func readCountWhen(_ node: Node) -> StatusSet? {
        guard let fields = self.fields(node, "count_when", allowed: ["status"]) else { return nil }
        guard let entry = fields["status"] else {
            self.error("count_when: 'status' is required", at: node)
            return nil
        }
        guard let items = self.textList(entry.value, "status") else { return nil }
        if items.isEmpty {
            self.error("status: at least one status is required", at: entry.value)
            return nil
        }
        var set = StatusSet()
        for item in items {
            let value = item.value.trimmingSpaces.lowercased()
            let scalars = Array(value.unicodeScalars)
            if scalars.count == 3, let hundreds = scalars[0].asciiDigit, (1...5).contains(hundreds), scalars[1] == "x", scalars[2] == "x" {
                set.classes.insert(hundreds)
            } else if let code = Int(value), (100...599).contains(code) {
                set.codes.insert(code)
            } else {
                self.error("status: expected a status code (100-599) or a class such as 4xx, got '\(item.value)'", at: item.position)
            }
        }
        return set
    }

    /// `tiers: { by: PART, values: { plan: limits, ... }, default: limits }`. A value (and `default`) may also be the
    /// mapping `{ limits: ..., concurrency: { max: N } }` (issue 22); what it leaves out comes from `default`, else the
    /// rule.
    func readTiers(_ node: Node) -> Tiers? {
        guard let fields = self.fields(node, "tiers", allowed: ["by", "values", "default"]) else { return nil }
        var by: KeyPart?
        if let entry = fields["by"] {
            if case .sequence = entry.value {
                self.error("by: expected one key part, got a list", at: entry.value)
            } else {
                by = self.keyParts(entry.value, "by")?.first
            }
        } else {
            self.error("tiers: 'by' is required", at: node)
        }
        var values: [String: [RateLimit]] = [:]
        var concurrencyMax: [String: Int] = [:]
        if let entry = fields["values"], let pairs = self.pairs(entry.value, "values") {
            if pairs.isEmpty { self.error("values: at least one value is required", at: entry.value) }
            for (key, value) in pairs {
                let tier = self.readTier(value, "values.\(key.value)")
                if let limits = tier.limits { values[key.value] = limits }
                if let max = tier.concurrencyMax { concurrencyMax[key.value] = max }
            }
        } else if fields["values"] == nil {
            self.error("tiers: 'values' is required", at: node)
        }
        var defaultTier = Tier()
        if let entry = fields["default"] { defaultTier = self.readTier(entry.value, "default") }
        guard let by else { return nil }
        var tiers = Tiers(by: by, values: values, defaultLimits: defaultTier.limits)
        tiers.concurrencyMax = concurrencyMax
        tiers.defaultConcurrencyMax = defaultTier.concurrencyMax
        return tiers
    }

    /// What one tier gives.
    private struct Tier {
        var limits: [RateLimit]?
        var concurrencyMax: Int?
    }

    /// A tier: limit strings (a list, or one string), or `{ limits: ..., concurrency: { max: N } }`.
    private func readTier(_ node: Node, _ name: String) -> Tier {
        guard case .mapping = node else { return Tier(limits: self.limits(node, name)) }
        guard let fields = self.fields(node, name, allowed: ["limits", "concurrency"]) else { return Tier() }
        var tier = Tier()
        if let entry = fields["limits"] { tier.limits = self.limits(entry.value, "limits") }
        if let entry = fields["concurrency"],
            let concurrency = self.fields(entry.value, "concurrency", allowed: ["max"])
        {
            if let max = concurrency["max"] {
                tier.concurrencyMax = self.integer(max.value, "max", in: 1...Int(Int32.max))
            } else {
                self.error("concurrency: 'max' is required", at: entry.value)
            }
        }
        if fields["limits"] == nil && fields["concurrency"] == nil {
            self.error("\(name): expected limits, or a mapping with 'limits' and/or 'concurrency'", at: node)
        }
        return tier
    }

    /// `concurrency: { max: N, queue: { size: S, timeout: D }, retry_after: D }` (issue 22).
    func readConcurrency(_ node: Node) -> ConcurrencyConfiguration? {
        guard let fields = self.fields(node, "concurrency", allowed: ["max", "queue", "retry_after"]) else { return nil }
        var failed = false
        var max = 1
        if let entry = fields["max"] {
            if let value = self.integer(entry.value, "max", in: 1...Int(Int32.max)) { max = value } else { failed = true }
        } else {
            self.error("concurrency: 'max' is required", at: node)
            failed = true
        }
        var configuration = ConcurrencyConfiguration(max: max)
        if let entry = fields["queue"] {
            if let queueFields = self.fields(entry.value, "queue", allowed: ["size", "timeout"]) {
                var queue = ConcurrencyConfiguration.Queue(size: 1)
                if let size = queueFields["size"] {
                    if let value = self.integer(size.value, "size", in: 1...1_000_000) { queue.size = value } else { failed = true }
                } else {
                    self.error("queue: 'size' is required", at: entry.value)
                    failed = true
                }
                if let timeout = queueFields["timeout"] {
                    if let value = self.duration(timeout.value, "timeout", allowZero: false) {
                        if value > .seconds(3600) {
                            self.error("timeout: at most 1h, got \(Self.describe(timeout.value))", at: timeout.value)
                            failed = true
                        } else {
                            queue.timeout = value
                        }
                    } else {
                        failed = true
                    }
                }
                configuration.queue = queue
            } else {
                failed = true
            }
        }
        if let entry = fields["retry_after"] {
            if let value = self.duration(entry.value, "retry_after", allowZero: false) {
                configuration.retryAfter = value
            } else {
                failed = true
            }
        }
        return failed ? nil : configuration
    }
}

import Yams

/// Converts a configuration of envoyproxy/ratelimit (`domain` and nested `descriptors`) into Sluice rules (issue 14,
/// `sluice import-envoy-ratelimit FILE`).
///
/// Mapping (docs/behaviour.md §2h):
/// - every descriptor with a `rate_limit` becomes one rule whose `match.descriptor` is the domain and the entries
///   of its path from the top (`value` or `"*"` without one), `exact: true` (envoyproxy/ratelimit matches a request
///   descriptor with as many entries as the path has levels), `key` the `descriptor:KEY` of every entry (one counter
///   per value), `algorithm: fixed_window` (its windows are fixed and aligned), `limits` `N/UNIT` (`week`, `month`
///   and `year` as 7, 30 and 365 days);
/// - `shadow_mode: true` becomes `mode: shadow`; `rate_limit.name` names the rule (made `[a-z0-9_-]`), else the
///   domain and the path do;
/// - the most specific match wins there: a descriptor with a value takes precedence over its sibling without one.
///   Sluice applies every rule that matches, so value siblings that are leaves are folded into the sibling's rule as
///   `tiers` by that entry (`tiers: { by: descriptor:KEY, values: { VALUE: LIMIT }, default: LIMIT }`); an
///   `unlimited` one as a tier of 4294967295 per second;
/// - `requests_per_unit: 0` (refuse every request) becomes a rule that is always refused (`key` reads an entry no
///   descriptor has, `on_missing_key: deny`);
/// - `unlimited: true` alone becomes no rule (no rule is what answers OK without a limit);
/// - not convertible, reported as warnings and left out: `replaces` (both limits apply in Sluice), values with a `*`
///   wildcard, a value sibling that cannot be folded (it has children, another shadow mode, or no wildcard sibling
///   with a limit: then both rules apply to the value); `detailed_metric` is ignored (Sluice's metrics are per rule).
public enum EnvoyRateLimitImporter {
    /// The result: the Sluice YAML and what could not be carried over.
    public struct Output: Sendable {
        public var yaml: String
        public var warnings: [String]
    }

    /// One descriptor of the file with a limit (or `unlimited`), flattened with its path.
    struct Leaf {
        var path: [(key: String, value: String?)]
        var requestsPerUnit: Int
        var periodText: String
        var unlimited: Bool
        var shadow: Bool
        var name: String?
        var hasChildren: Bool
        var line: Int
    }

    /// Converts `text` (the file's content; `file` names it in messages).
    ///
    /// - Parameter rulesOnly: print only the `rules:` list, to paste into an existing file; otherwise a whole file
    ///   with placeholder `server` and `upstream` sections that `sluice check` accepts.
    /// - Throws: ``ConfigErrorList`` with `FILE:LINE:COLUMN` errors when the file is not such a configuration.
    public static func convert(_ text: String, file: String, rulesOnly: Bool = false) throws(ConfigErrorList) -> Output {
        var errors: [ConfigError] = []
        var warnings: [String] = []
        func fail(_ message: String, _ node: Node?) {
            let mark = node?.mark
            errors.append(ConfigError(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1, message: message))
        }
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw ConfigErrorList(errors: [ConfigError(file: file, line: 1, column: 1, message: "the file is empty")])
            }
            root = node
        } catch let list as ConfigErrorList {
            throw list
        } catch {
            throw ConfigErrorList(errors: [ConfigError(file: file, line: 1, column: 1, message: "not YAML: \(error)")])
        }
        guard let top = root.mapping else {
            throw ConfigErrorList(errors: [ConfigError(file: file, line: 1, column: 1, message: "expected a mapping with domain and descriptors")])
        }
        for (key, _) in top where !["domain", "descriptors"].contains(key.string ?? "") {
            fail("unknown key '\(key.string ?? "?")' (expected domain, descriptors)", key)
        }
        guard let domain = top["domain"]?.string, !domain.isEmpty else {
            fail("'domain' is required", root)
            throw ConfigErrorList(errors: errors)
        }
        var leaves: [Leaf] = []
        func walk(_ node: Node?, path: [(key: String, value: String?)]) {
            guard let node else { return }
            guard let list = node.sequence else {
                fail("descriptors: expected a list", node)
                return
            }
            for item in list {
                guard let fields = item.mapping else {
                    fail("descriptor: expected a mapping with key", item)
                    continue
                }
                let allowed = ["key", "value", "rate_limit", "shadow_mode", "detailed_metric", "descriptors", "quota_mode"]
                for (key, _) in fields where !allowed.contains(key.string ?? "") {
                    fail("descriptor: unknown key '\(key.string ?? "?")'", key)
                }
                guard let key = fields["key"]?.string, !key.isEmpty else {
                    fail("descriptor: 'key' is required", item)
                    continue
                }
                let value = fields["value"]?.string
                if let value, value.contains("*") {
                    warnings.append("\(file):\(item.mark?.line ?? 0): value '\(value)' has a wildcard, which Sluice cannot match; left out")
                    continue
                }
                if fields["quota_mode"] != nil {
                    warnings.append("\(file):\(item.mark?.line ?? 0): quota_mode is not supported; ignored")
                }
                let here = path + [(key, value)]
                let children = fields["descriptors"]
                if let limit = fields["rate_limit"] {
                    guard let limitFields = limit.mapping else {
                        fail("rate_limit: expected a mapping", limit)
                        continue
                    }
                    for (k, _) in limitFields where !["unit", "requests_per_unit", "unlimited", "name", "replaces"].contains(k.string ?? "") {
                        fail("rate_limit: unknown key '\(k.string ?? "?")'", k)
                    }
                    if limitFields["replaces"] != nil {
                        warnings.append(
                            "\(file):\(limit.mark?.line ?? 0): replaces is not supported: in Sluice the replaced limit applies too"
                        )
                    }
                    let unlimited = limitFields["unlimited"]?.bool ?? false
                    var requests = 0
                    var period = ""
                    if !unlimited {
                        guard let count = limitFields["requests_per_unit"]?.int, count >= 0 else {
                            fail("rate_limit: 'requests_per_unit' (an integer of at least 0) is required", limit)
                            continue
                        }
                        let units = ["second": "second", "minute": "minute", "hour": "hour", "day": "day",
                                     "week": "7 days", "month": "30 days", "year": "365 days"]
                        guard let unitText = limitFields["unit"]?.string?.lowercased(), let mapped = units[unitText] else {
                            fail("rate_limit: 'unit' must be second, minute, hour, day, week, month or year", limitFields["unit"] ?? limit)
                            continue
                        }
                        requests = count
                        period = mapped
                    }
                    leaves.append(
                        Leaf(
                            path: here,
                            requestsPerUnit: requests,
                            periodText: period,
                            unlimited: unlimited,
                            shadow: fields["shadow_mode"]?.bool ?? false,
                            name: limitFields["name"]?.string,
                            hasChildren: children != nil,
                            line: item.mark?.line ?? 0
                        )
                    )
                }
                walk(children, path: here)
            }
        }
        walk(top["descriptors"], path: [])
        if top["descriptors"] == nil { fail("'descriptors' is required", root) }
        guard errors.isEmpty else { throw ConfigErrorList(errors: errors) }
        let rules = Self.rules(domain: domain, leaves: leaves, file: file, warnings: &warnings)
        var yaml = ""
        if !rulesOnly {
            yaml += "# Converted by `sluice import-envoy-ratelimit` from \(file) (envoyproxy/ratelimit domain \(Self.quoted(domain))).\n"
            yaml += "# server and upstream are placeholders: set them to your own.\n"
            yaml += "version: 1\nserver:\n  listen: \"127.0.0.1:8080\"\n  grpc_rls: \"127.0.0.1:8081\"\n"
            yaml += "upstream:\n  url: \"http://127.0.0.1:3000\"\n"
        }
        yaml += rules.isEmpty ? "rules: []\n" : "rules:\n" + rules
        return Output(yaml: yaml, warnings: warnings)
    }

    /// The rules of the flattened leaves, in file order, with value siblings folded into tiers.
    private static func rules(domain: String, leaves: [Leaf], file: String, warnings: inout [String]) -> String {
        var folded = Set<Int>()
        var tiers: [Int: [(value: String, limit: String)]] = [:]
        // A value leaf folds into its wildcard sibling: same prefix, same key, the sibling has no value.
        for (index, leaf) in leaves.enumerated() where leaf.path.last?.value != nil {
            let prefix = leaf.path.dropLast()
            let key = leaf.path.last!.key
            guard
                let sibling = leaves.firstIndex(where: { other in
                    other.path.count == leaf.path.count && other.path.last!.key == key && other.path.last!.value == nil
                        && Self.samePath(other.path.dropLast(), prefix) && !other.unlimited && other.requestsPerUnit > 0
                })
            else { continue }
            if leaf.requestsPerUnit == 0 && !leaf.unlimited { continue }  // its own always-refused rule overrides
            guard leaf.shadow == leaves[sibling].shadow else {
                warnings.append(
                    "\(file):\(leaf.line): '\(key)=\(leaf.path.last!.value!)' has another shadow_mode than its sibling "
                        + "without a value: both rules apply to it in Sluice"
                )
                continue
            }
            let limit = leaf.unlimited ? "4294967295/second" : "\(leaf.requestsPerUnit)/\(leaf.periodText)"
            tiers[sibling, default: []].append((leaf.path.last!.value!, limit))
            folded.insert(index)
        }
        var names = Set<String>()
        var out = ""
        for (index, leaf) in leaves.enumerated() where !folded.contains(index) {
            if leaf.unlimited {
                out += "  # \(Self.describe(leaf.path)): unlimited in envoyproxy/ratelimit; no rule is needed\n"
                continue
            }
            let pathName = leaf.path.map { entry in entry.value.map { "\(entry.key)-\($0)" } ?? entry.key }
            var name = Self.identifier(leaf.name ?? ([domain] + pathName).joined(separator: "-"))
            if names.contains(name) {
                var n = 2
                while names.contains("\(name)-\(n)") { n += 1 }
                name = "\(name)-\(n)"
            }
            names.insert(name)
            out += "  - name: \(name)\n"
            out += "    match:\n      descriptor:\n        domain: \(Self.quoted(domain))\n        entries:\n"
            for entry in leaf.path {
                out += "          \(Self.quoted(entry.key)): \(Self.quoted(entry.value ?? "*"))\n"
            }
            out += "        exact: true\n"
            if leaf.requestsPerUnit == 0 {
                out += "    # requests_per_unit: 0 refuses every request: the key reads an entry no descriptor has.\n"
                out += "    key: [\"descriptor:sluice-refuse-all\"]\n    on_missing_key: deny\n    limits: \"1/second\"\n"
            } else {
                let keys = leaf.path.map { Self.quoted("descriptor:\($0.key)") }.joined(separator: ", ")
                out += "    key: [\(keys)]\n    algorithm: fixed_window\n"
                let limit = "\(leaf.requestsPerUnit)/\(leaf.periodText)"
                if let values = tiers[index] {
                    out += "    tiers:\n      by: \(Self.quoted("descriptor:\(leaf.path.last!.key)"))\n      values:\n"
                    for tier in values { out += "        \(Self.quoted(tier.value)): \(Self.quoted(tier.limit))\n" }
                    out += "      default: \(Self.quoted(limit))\n"
                } else {
                    out += "    limits: \(Self.quoted(limit))\n"
                }
            }
            if leaf.shadow { out += "    mode: shadow\n" }
        }
        return out
    }

    private static func samePath(_ a: ArraySlice<(key: String, value: String?)>, _ b: ArraySlice<(key: String, value: String?)>) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    private static func describe(_ path: [(key: String, value: String?)]) -> String {
        path.map { "(\($0.key), \($0.value ?? "*"))" }.joined(separator: ", ")
    }

    /// `[a-z0-9_-]+`: lower-cased, anything else becomes `_`.
    static func identifier(_ text: String) -> String {
        let mapped = text.lowercased().unicodeScalars.map { c -> Character in
            ("a"..."z").contains(c) || ("0"..."9").contains(c) || c == "_" || c == "-" ? Character(c) : "_"
        }
        let result = String(mapped)
        return result.isEmpty ? "rule" : result
    }

    /// A YAML double-quoted scalar (JSON escapes are YAML's).
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\x" + String(scalar.value, radix: 16).leftPadded(to: 2)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - self.count)) + self
    }
}

import CYaml

/// A bound on what YAML aliases add to a document, checked on libyaml's events before the document is composed.
///
/// An alias stands for the whole node its anchor names, so a few lines of nested anchors stand for a tree of a billion
/// nodes ("billion laughs"). Composing is cheap (Yams shares the nodes), but Yams hashes every mapping key to find
/// duplicates, and a key that is an alias of such a tree took minutes (found by the `config` fuzz target,
/// docs/fuzzing.md); the reader would walk such a tree too. Each alias counts the nodes it stands for; past
/// ``maxAliasedNodes`` in one document the file is refused, at that alias.
///
/// Yams exposes no events, so this reads them from libyaml (`CYaml`, the module Yams is built on). A syntax error
/// ends the check: composing the same text stops at the same place and reports it.
enum YAMLAliasBudget {
    /// Nodes that aliases may stand for in one document: far above what reusing anchors in a configuration needs.
    static let maxAliasedNodes = 100_000

    /// Where the document first goes over the budget, with the message; `nil` when it does not.
    static func check(_ yaml: String, maxAliasedNodes: Int = Self.maxAliasedNodes) -> (line: Int, column: Int, message: String)? {
        var bytes = Array(yaml.utf8)
        if bytes.isEmpty { return nil }
        return bytes.withUnsafeMutableBufferPointer { buffer -> (line: Int, column: Int, message: String)? in
            var parser = yaml_parser_t()
            guard yaml_parser_initialize(&parser) == 1 else { return nil }
            defer { yaml_parser_delete(&parser) }
            yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)

            /// Nodes each anchor stands for (an anchor may be defined again; the latest counts, as in Yams).
            var anchors: [String: Int] = [:]
            /// The collections open, innermost last: their anchor, and the nodes in them so far (themselves included).
            var open: [(anchor: String?, nodes: Int)] = []
            var aliased = 0
            var event = yaml_event_t()
            while yaml_parser_parse(&parser, &event) == 1 {
                defer { yaml_event_delete(&event) }
                var finished: Int? = nil
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return nil
                case YAML_DOCUMENT_START_EVENT:
                    anchors.removeAll()
                    aliased = 0
                case YAML_ALIAS_EVENT:
                    let size = Self.anchor(event.data.alias.anchor).flatMap { anchors[$0] } ?? 1
                    aliased += size
                    if aliased > maxAliasedNodes {
                        return (
                            Int(event.start_mark.line) + 1, Int(event.start_mark.column) + 1,
                            "aliases stand for more than \(maxAliasedNodes) nodes (nested anchors, as in a billion laughs)"
                        )
                    }
                    finished = size
                case YAML_SCALAR_EVENT:
                    if let name = Self.anchor(event.data.scalar.anchor) { anchors[name] = 1 }
                    finished = 1
                case YAML_SEQUENCE_START_EVENT:
                    open.append((Self.anchor(event.data.sequence_start.anchor), 1))
                case YAML_MAPPING_START_EVENT:
                    open.append((Self.anchor(event.data.mapping_start.anchor), 1))
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    guard let collection = open.popLast() else { return nil }
                    if let name = collection.anchor { anchors[name] = collection.nodes }
                    finished = collection.nodes
                default:
                    break
                }
                if let finished, !open.isEmpty {
                    // Saturating: a count past the budget is refused at the next alias anyway.
                    open[open.count - 1].nodes = min(open[open.count - 1].nodes + finished, Int.max / 2)
                }
            }
            return nil
        }
    }

    private static func anchor(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        guard let pointer else { return nil }
        return String(cString: pointer)
    }
}

/// A JSON value whose objects keep their keys in insertion order.
///
/// `/config` lists sections and fields in the order of the YAML file and `/limits` in the order of SPEC §7, which
/// `JSONSerialization` (unordered or alphabetical) cannot do. Rendering is pretty-printed with two spaces: these
/// answers are read by people with `curl` as often as by programs.
indirect enum AdminJSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case string(String)
    case array([AdminJSON])
    case object([(String, AdminJSON)])

    static func == (lhs: AdminJSON, rhs: AdminJSON) -> Bool {
        lhs.rendered() == rhs.rendered()
    }

    /// `value` as a string, or `null`.
    static func string(_ value: String?) -> AdminJSON {
        value.map(AdminJSON.string) ?? .null
    }

    /// The JSON text.
    func rendered() -> String {
        var out = ""
        self.write(to: &out, indent: 0)
        return out
    }

    private func write(to out: inout String, indent: Int) {
        switch self {
        case .null:
            out += "null"
        case .bool(let value):
            out += value ? "true" : "false"
        case .int(let value):
            out += String(value)
        case .string(let value):
            JSONText.appendString(value, to: &out)
        case .array(let values):
            guard !values.isEmpty else {
                out += "[]"
                return
            }
            out += "[\n"
            for (index, value) in values.enumerated() {
                out += String(repeating: " ", count: indent + 2)
                value.write(to: &out, indent: indent + 2)
                out += index == values.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent) + "]"
        case .object(let members):
            guard !members.isEmpty else {
                out += "{}"
                return
            }
            out += "{\n"
            for (index, (key, value)) in members.enumerated() {
                out += String(repeating: " ", count: indent + 2)
                JSONText.appendString(key, to: &out)
                out += ": "
                value.write(to: &out, indent: indent + 2)
                out += index == members.count - 1 ? "\n" : ",\n"
            }
            out += String(repeating: " ", count: indent) + "}"
        }
    }
}

/// JSON text written by hand: the admin answers and the access log (whose lines are built without Foundation's
/// encoder, on the request path).
public enum JSONText {
    /// Appends `value` as a JSON string, escaped per RFC 8259 §7: quote, backslash and control characters.
    public static func appendString(_ value: String, to out: inout String) {
        out += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20:
                let hex = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

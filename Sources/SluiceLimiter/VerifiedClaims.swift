import SluiceConfig

/// The claims of a request's verified JWT that the rules read (issue 15), by dotted path (`org.id`).
///
/// Only the paths some rule names are kept (``SluiceConfiguration/jwtClaimPaths``); a path whose value is absent, `null`
/// or an object is left out, so its key part is missing and `on_missing_key` decides.
public struct VerifiedClaims: Sendable, Hashable {
    /// A claim's value as the rules read it.
    public enum Value: Sendable, Hashable {
        /// A string as is; a number as its JSON text (`42`, `1.5`); a boolean as `true` / `false`.
        case text(String)
        /// A list of such values (`"roles": ["admin", "dev"]`): `match.jwt` holds when one element equals the value;
        /// as a key part it is missing (a key must be one value).
        case list([String])
    }

    public var values: [String: Value]

    public init(values: [String: Value] = [:]) {
        self.values = values
    }

    /// The value of a `jwt:PATH` key part: a non-empty text claim, else `nil` (missing).
    @inline(__always)
    public func keyValue(_ path: String) -> String? {
        guard case .text(let text)? = self.values[path], !text.isEmpty else { return nil }
        return text
    }

    /// Whether `match.jwt` `{ path: expected }` holds; `expected` `nil` (`*`): the claim is present.
    public func matches(_ path: String, _ expected: String?) -> Bool {
        guard let value = self.values[path] else { return false }
        guard let expected else { return true }
        switch value {
        case .text(let text): return text == expected
        case .list(let items): return items.contains(expected)
        }
    }
}

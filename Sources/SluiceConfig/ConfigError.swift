/// One problem found in a configuration file, with the position of the offending YAML node.
///
/// `sluice check` prints ``description`` as is, so its format, `FILE:LINE:COLUMN: message`, is part of the
/// product contract (SPEC §1). Lines and columns are 1-based; columns count Unicode scalars, as libyaml does.
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The path of the file as it was given to ``ConfigLoader``.
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "\(self.file):\(self.line):\(self.column): \(self.message)" }
}

/// Every problem found in one configuration file, sorted by position.
///
/// The loader collects all errors it can before throwing, so an operator fixes a file in one pass
/// instead of one error per `sluice check` run.
public struct ConfigErrorList: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]

    public init(errors: [ConfigError]) {
        self.errors = errors
    }

    /// One error per line, in file order.
    public var description: String { self.errors.map(\.description).joined(separator: "\n") }
}

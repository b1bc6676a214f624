import Foundation
import Yams

/// Reads a Sluice YAML file into a validated ``SluiceConfiguration`` (SPEC §2).
///
/// `sluice serve`, `sluice check` and SIGHUP reloads all go through here, so what `check` accepts is exactly
/// what `serve` runs. The YAML is composed with Yams into a node tree that is walked by hand: this way every
/// error carries the line and column of the offending node (the key for an unknown key, the value for a bad
/// value, the mapping for a missing key), which a `Decodable` model cannot give. All errors that can be found
/// are collected and thrown together, sorted by position.
public enum ConfigLoader {
    /// Reads and validates the file. Collects all errors it can before throwing.
    ///
    /// - Parameters:
    ///   - path: The file to read; errors name it exactly as given.
    ///   - environment: Variables for `${VAR}` expansion.
    public static func load(
        path: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigErrorList) -> SluiceConfiguration {
        let yaml: String
        switch Self.read(path: path) {
        case .success(let text):
            yaml = text
        case .failure(let reason):
            throw ConfigErrorList(errors: [ConfigError(file: path, line: 1, column: 1, message: "cannot read file: \(reason)")])
        }
        return try Self.parse(yaml: yaml, file: path, environment: environment)
    }

    /// Validates YAML text; `file` is used in error messages and as ``SluiceConfiguration/sourcePath``.
    public static func parse(
        yaml: String,
        file: String,
        environment: [String: String]
    ) throws(ConfigErrorList) -> SluiceConfiguration {
        let reader = ConfigReader(file: file, yaml: yaml, environment: environment)
        if let problem = YAMLAliasBudget.check(yaml) {
            reader.error(problem.message, at: SourcePosition(line: problem.line, column: problem.column))
            throw ConfigErrorList(errors: reader.sortedErrors)
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            reader.syntaxError(error)
            throw ConfigErrorList(errors: reader.sortedErrors)
        }
        var configuration = reader.readRoot(root)
        configuration.sourcePath = file
        guard reader.errors.isEmpty else { throw ConfigErrorList(errors: reader.sortedErrors) }
        configuration.warnings = reader.warnings
        return configuration
    }

    private static func read(path: String) -> Result<String, ConfigFile.ReadFailure> {
        ConfigFile.read(path).flatMap { data in
            guard let text = String(data: data, encoding: .utf8) else {
                return .failure(ConfigFile.ReadFailure("not valid UTF-8"))
            }
            return .success(text)
        }
    }
}

extension ConfigReader {
    /// Turns a Yams syntax error into a positioned error.
    func syntaxError(_ error: any Error) {
        guard let yamlError = error as? YamlError else {
            self.error("invalid YAML: \(error)", at: .start)
            return
        }
        func describe(_ context: YamlError.Context?, _ problem: String) -> String {
            guard let context else { return "invalid YAML: \(problem)" }
            return "invalid YAML: \(problem) (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
        }
        switch yamlError {
        case .scanner(let context, let problem, let mark, _),
            .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            self.error(describe(context, problem), at: SourcePosition(line: mark.line, column: mark.column))
        case .reader(let problem, _, _, _):
            self.error("invalid YAML: \(problem)", at: .start)
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            self.error(
                "duplicate key \(keys) in one mapping",
                at: SourcePosition(line: context.mark.line, column: context.mark.column)
            )
        default:
            self.error("invalid YAML: \(yamlError)", at: .start)
        }
    }

    /// Reads the document root: `version`, `server`, `upstream`, `storage`, `response` and `rules`.
    func readRoot(_ root: Node?) -> SluiceConfiguration {
        var configuration = SluiceConfiguration()
        let allowed = ["version", "server", "upstream", "storage", "response", "jwt", "rules"]
        guard let root, !Self.isNull(root) else {
            self.error("upstream.url or upstream.targets is required", at: .start)
            return configuration
        }
        guard let fields = self.fields(root, "top level", allowed: allowed) else { return configuration }
        if let entry = fields["version"], let version = self.integer(entry.value, "version") {
            if version != 1 {
                self.error("version: unsupported version \(version) (this Sluice reads version 1)", at: entry.value)
            }
            configuration.version = version
        }
        if let entry = fields["server"] {
            configuration.server = self.readServer(entry.value)
        }
        if let entry = fields["upstream"] {
            configuration.upstream = self.readUpstream(entry.value)
        } else {
            self.error("upstream.url or upstream.targets is required", at: .start)
        }
        if let entry = fields["storage"] {
            configuration.storage = self.readStorage(entry.value)
        }
        if let entry = fields["response"] {
            configuration.response = self.readResponse(entry.value, "response", base: ResponseConfiguration(), isOverride: false)
        }
        if let entry = fields["jwt"] {
            configuration.jwt = self.readJWT(entry.value)
        }
        if let entry = fields["rules"] {
            configuration.rules = self.readRules(entry.value, response: configuration.response)
        }
        if fields["jwt"] == nil {
            for position in self.jwtUses {
                self.error("jwt: key parts and match.jwt need a top-level jwt: section (where the token is, which keys sign it)", at: position)
            }
        }
        return configuration
    }
}

import ArgumentParser
import Foundation
import SluiceConfig

/// `sluice import-envoy-ratelimit FILE` (issue 14): prints the Sluice rules of an envoyproxy/ratelimit configuration.
struct ImportEnvoyRateLimit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-envoy-ratelimit",
        abstract: "Convert an envoyproxy/ratelimit configuration (domain, descriptors) into Sluice rules.",
        discussion: """
            Prints a Sluice configuration on standard output (placeholder server and upstream sections, or only the \
            rules with --rules-only) and, on standard error, what could not be carried over. See docs/behaviour.md §2h.
            """
    )

    @Argument(help: "The envoyproxy/ratelimit YAML file.")
    var file: String

    @Flag(help: "Print only the rules: list, to paste into an existing file.")
    var rulesOnly = false

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: self.file), let text = String(data: data, encoding: .utf8) else {
            FileHandle.standardError.write(Data("\(self.file): cannot read the file\n".utf8))
            throw ExitCode(1)
        }
        do {
            let output = try EnvoyRateLimitImporter.convert(text, file: self.file, rulesOnly: self.rulesOnly)
            for warning in output.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
            FileHandle.standardOutput.write(Data(output.yaml.utf8))
        } catch {
            for e in error.errors { FileHandle.standardError.write(Data((e.description + "\n").utf8)) }
            throw ExitCode(1)
        }
    }
}

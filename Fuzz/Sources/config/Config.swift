import FuzzSupport
import SluiceConfig

/// The configuration loader (``ConfigLoader``) on arbitrary YAML text.
///
/// A file either loads or is refused with ``ConfigError``s, each naming the file with a line and column of at
/// least 1 and a message; nothing traps, and nothing runs away (libFuzzer's `-timeout` and `-rss_limit_mb` catch a
/// hang or an explosion; inputs are cut at ``maxBytes``, a size no configuration file comes near).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size <= ConfigFuzzing.maxBytes else { return -1 }  // -1: not added to the corpus
    let yaml = String(decoding: FuzzInput.bytes(data, size), as: UTF8.self)
    do {
        let configuration = try ConfigLoader.parse(yaml: yaml, file: "fuzz.yaml", environment: ConfigFuzzing.environment)
        fuzzCheck(configuration.sourcePath == "fuzz.yaml", "sourcePath \(configuration.sourcePath)")
        fuzzCheck(!configuration.server.listen.isEmpty, "a configuration without a listener was accepted")
    } catch {
        fuzzCheck(!error.errors.isEmpty, "refused without an error")
        for problem in error.errors {
            fuzzCheck(problem.file == "fuzz.yaml", "error names \(problem.file): \(problem)")
            fuzzCheck(problem.line >= 1 && problem.column >= 1, "error without a position: \(problem)")
            fuzzCheck(!problem.message.isEmpty, "error without a message at \(problem.line):\(problem.column)")
        }
    }
    return 0
}

enum ConfigFuzzing {
    /// The largest input tried (64 KiB).
    static let maxBytes = 64 * 1024

    /// What `${VAR}` can expand to.
    static let environment = ["SLUICE_TOKEN": "secret", "UPSTREAM": "http://127.0.0.1:8080", "EMPTY": "", "PORT": "8080"]
}

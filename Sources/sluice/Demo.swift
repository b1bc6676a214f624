import ArgumentParser
import Foundation
import NIOPosix
import SluiceConfig

/// `sluice demo`: the real proxy with `config/demo.yaml` in front of a built-in upstream (SPEC §1).
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run Sluice with config/demo.yaml in front of a tiny built-in upstream."
    )

    @Option(name: [.short, .long], help: "The demo configuration.")
    var config: String = "config/demo.yaml"

    func run() async throws {
        let logger = makeLogger(level: "info")
        var configuration: SluiceConfiguration
        do {
            configuration = try ConfigLoader.load(path: self.config)
        } catch {
            for e in error.errors { FileHandle.standardError.write(Data((e.description + "\n").utf8)) }
            throw ExitCode(1)
        }
        // The demo upstream listens where demo.yaml's upstream points.
        let target = configuration.upstream.targets[0]
        let upstream = try await DemoUpstream.start(
            group: MultiThreadedEventLoopGroup.singleton,
            host: target.host,
            port: target.port
        )
        let listen = configuration.server.listen.first.map { "\($0.host == "0.0.0.0" ? "127.0.0.1" : $0.host):\($0.port)" }
            ?? "127.0.0.1:8080"
        FileHandle.standardOutput.write(Data(
            """
            Sluice demo: proxy in front of a built-in upstream at \(target).
            Rules come from \(self.config); edit them and run `kill -HUP \(ProcessInfo.processInfo.processIdentifier)` to reload.
            Try:
              curl -i http://\(listen)/hello                   # admitted; watch RateLimit and RateLimit-Policy
              for i in $(seq 1 8); do curl -s -o /dev/null -w "%{http_code}\\n" http://\(listen)/hello; done
              curl -i -X POST http://\(listen)/login            # 3 per minute per IP
              curl -i -H 'X-Api-Key: demo' http://\(listen)/api/items
            Stop with Ctrl-C.

            """.utf8))
        defer { upstream.close(promise: nil) }
        try await runProxy(configuration: configuration, path: self.config, logger: logger)
    }
}

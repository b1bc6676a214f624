import ArgumentParser
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import SluiceAdmin
import SluiceConfig
import SluiceJWT
import SluiceProxy
import SluiceRLS
import UnixSignals

/// `sluice` — the command line of SPEC §1. Thin: every piece of work lives in the libraries.
@main
struct SluiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "A rate-limiting reverse proxy.",
        version: SluiceVersion.string,
        subcommands: [Serve.self, Check.self, Demo.self, ImportEnvoyRateLimit.self],
        defaultSubcommand: Serve.self
    )
}

enum SluiceVersion {
    static let string = "0.1.0"
}

struct ConfigOption: ParsableArguments {
    @Option(name: [.short, .long], help: "The YAML configuration file.")
    var config: String = "config/sluice.yaml"
}

/// `sluice check --config FILE`: like `nginx -t`.
struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate a configuration file.")

    @OptionGroup var options: ConfigOption

    func run() async throws {
        let configuration: SluiceConfiguration
        do {
            configuration = try ConfigLoader.load(path: self.options.config)
        } catch {
            for e in error.errors { print(e.description) }
            throw ExitCode(1)
        }
        // Like `nginx -t`, the certificates and keys are loaded too, not only found.
        do {
            _ = try TLSContexts(configuration: configuration)
        } catch {
            print("\(self.options.config): \(error)")
            throw ExitCode(1)
        }
        // The JWT keys too (issue 15): each PEM file and the JWKS file parsed and handed to jwt-kit.
        if configuration.jwt != nil {
            do {
                try await JWTVerifier(configuration: configuration).prepare()
            } catch {
                for e in error.errors { print(e.description) }
                throw ExitCode(1)
            }
        }
        // Valid, with things worth knowing (memcached's caveats): on standard error, so `ok` stays alone on stdout.
        for warning in configuration.warnings {
            FileHandle.standardError.write(Data((warning.description + "\n").utf8))
        }
        print("ok")
    }
}

/// `sluice serve --config FILE` (the default subcommand).
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the proxy.")

    @OptionGroup var options: ConfigOption

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        // A typo must not quietly log at another level.
        guard Logger.Level(rawValue: self.logLevel) != nil else {
            throw ValidationError("unknown log level '\(self.logLevel)' (trace, debug, info, notice, warning, error, critical)")
        }
    }

    func run() async throws {
        let logger = makeLogger(level: self.logLevel)
        let configuration: SluiceConfiguration
        do {
            configuration = try ConfigLoader.load(path: self.options.config)
        } catch {
            for e in error.errors { FileHandle.standardError.write(Data((e.description + "\n").utf8)) }
            throw ExitCode(1)
        }
        // Bad JWT key files are reported with their positions, as `sluice check` reports them.
        if configuration.jwt != nil {
            do {
                try await JWTVerifier(configuration: configuration).prepare()
            } catch {
                for e in error.errors { FileHandle.standardError.write(Data((e.description + "\n").utf8)) }
                throw ExitCode(1)
            }
        }
        try await runProxy(configuration: configuration, path: self.options.config, logger: logger)
    }
}

func makeLogger(level: String) -> Logger {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = Logger.Level(rawValue: level) ?? .info
        return handler
    }
    return Logger(label: "sluice")
}

/// Runs the proxy until SIGTERM/SIGINT, reloading on SIGHUP (SPEC §1, §6).
func runProxy(configuration: SluiceConfiguration, path: String, logger: Logger) async throws {
    let server: ProxyServer
    do {
        server = try ProxyServer(configuration: configuration, logger: logger) { address in
            // Written unbuffered so a script waiting for this line sees it at once.
            FileHandle.standardOutput.write(Data("sluice listening on \(address.hostPortDescription)\n".utf8))
        }
    } catch {
        FileHandle.standardError.write(Data("\(path): \(error)\n".utf8))
        throw ExitCode(1)
    }
    // SIGHUP is trapped before any listener announces itself: a script that reloads right after the
    // `listening on` line must neither kill the process (SIGHUP's default action) nor lose the reload.
    let reloadSignals = await UnixSignalsSequence(trapping: .sighup)
    let reloader = ReloadOnSignal(path: path, server: server, signals: reloadSignals, logger: logger)
    // SIGUSR1 reopens the access log file (logrotate's `postrotate`), like nginx's USR1.
    let reopenSignals = await UnixSignalsSequence(trapping: .sigusr1)
    let reopener = ReopenLogOnSignal(server: server, signals: reopenSignals, logger: logger)
    var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
        .init(service: server, successTerminationBehavior: .gracefullyShutdownGroup),
        .init(service: reloader),
        .init(service: reopener),
    ]
    if let admin = configuration.server.admin {
        let adminServer = AdminServer(
            backend: server,
            metrics: server.metrics,
            group: server.eventLoopGroup,
            logger: logger
        )
        services.append(.init(service: AdminService(server: adminServer, address: admin, logger: logger)))
    }
    if let grpc = configuration.server.grpcRLS {
        // One limiter for both front ends: each call reads the proxy's running one, so reloads apply to both.
        let handler = RateLimitServiceHandler(running: { [server] in server.limiterWithCounters }, logger: logger)
        // Its own loops (NIO's singleton group): the proxy's are shut down when the proxy stops, which may come before
        // the gRPC listener has closed.
        let rls = RateLimitGRPCServer(configuration: grpc, handler: handler)
        services.append(.init(service: RateLimitGRPCService(server: rls, address: grpc.listen)))
    }
    let group = ServiceGroup(
        configuration: .init(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
    )
    do {
        try await group.run()
    } catch {
        logger.error("sluice stopped: \(error)")
        FileHandle.standardError.write(Data("sluice: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// Re-reads the file on SIGHUP; a bad file is logged with its positions and the running config stays.
struct ReloadOnSignal: Service {
    let path: String
    let server: ProxyServer
    /// Created before the server starts, so no SIGHUP is missed.
    let signals: UnixSignalsSequence
    let logger: Logger

    func run() async throws {
        for await _ in self.signals.cancelOnGracefulShutdown() {
            let configuration: SluiceConfiguration
            do {
                configuration = try ConfigLoader.load(path: self.path)
            } catch {
                for e in error.errors {
                    self.logger.error("reload failed, keeping the running configuration: \(e.description)")
                }
                self.server.recordReloadFailure(reason: error.errors.map(\.description).joined(separator: "\n"))
                continue
            }
            do {
                try await self.server.reload(configuration)
                self.logger.info("configuration reloaded", metadata: ["file": "\(self.path)"])
            } catch {
                self.logger.error("reload failed, keeping the running configuration: \(self.path): \(error)")
                self.server.recordReloadFailure(reason: "\(self.path): \(error)")
            }
        }
    }
}

/// Reopens the access log file on SIGUSR1 (after logrotate moved it away).
struct ReopenLogOnSignal: Service {
    let server: ProxyServer
    let signals: UnixSignalsSequence
    let logger: Logger

    func run() async throws {
        for await _ in self.signals.cancelOnGracefulShutdown() {
            self.server.reopenAccessLog()
            self.logger.info("access log reopened")
        }
    }
}

extension SocketAddress {
    /// `127.0.0.1:8080` / `[::1]:8080`.
    var hostPortDescription: String {
        let ip = self.ipAddress ?? "?"
        let port = self.port ?? 0
        if case .v6 = self { return "[\(ip)]:\(port)" }
        return "\(ip):\(port)"
    }
}

/// The admin listener of SPEC §7 as a service: bound at start (a bind failure stops the process, like a proxy
/// listener's), closed on graceful shutdown. Its address is the one of the file at start; a reload does not move it.
struct AdminService: Service {
    let server: AdminServer
    let address: ListenAddress
    let logger: Logger

    func run() async throws {
        do {
            try await self.server.start(address: self.address)
        } catch {
            throw AdminListenError(description: "cannot listen on \(self.address.host):\(self.address.port) (admin): \(error)")
        }
        if let bound = self.server.localAddress {
            FileHandle.standardOutput.write(Data("sluice admin on \(bound.hostPortDescription)\n".utf8))
        }
        try? await gracefulShutdown()
        await self.server.stop()
    }
}

/// Envoy's rate-limit service (issue 14, `server.grpc_rls`) as a service: bound at start (a bind failure stops the
/// process), drained on graceful shutdown. Its address is the one of the file at start; a reload changes its rules.
struct RateLimitGRPCService: Service {
    let server: RateLimitGRPCServer
    let address: ListenAddress

    func run() async throws {
        try await withGracefulShutdownHandler {
            do {
                try await self.server.run { bound in
                    FileHandle.standardOutput.write(Data("sluice grpc_rls on \(bound)\n".utf8))
                }
            } catch {
                throw AdminListenError(description: "cannot listen on \(self.address) (grpc_rls): \(error)")
            }
        } onGracefulShutdown: {
            self.server.beginGracefulShutdown()
        }
    }
}

struct AdminListenError: Error, CustomStringConvertible {
    var description: String
}

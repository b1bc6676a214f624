import Foundation
import NIOSSL
import SluiceConfig

/// The TLS contexts of one configuration (SPEC §2 `server.tls`, `upstream.tls`), built from its PEM files.
///
/// Built once per configuration snapshot, at start and at every reload, never per connection: building one reads
/// and parses files, which must not happen on an event loop, and a context is then shared read-only by every
/// connection. A reload builds new contexts even when the YAML is unchanged, so certificates renewed in place are
/// picked up by SIGHUP (as with nginx); connections already open keep the context they were accepted with.
public struct TLSContexts: Sendable {
    /// Terminates TLS on the listeners (TLS 1.2 or later, ALPN `h2, http/1.1` with `server.http2`, else `http/1.1`);
    /// `nil` without `server.tls`.
    let server: NIOSSLContext?
    /// For `https://` targets; `nil` when every target is `http://`.
    let upstream: NIOSSLContext?

    /// No TLS anywhere.
    init() {
        self.server = nil
        self.upstream = nil
    }

    /// Reads and checks every file the configuration names for TLS.
    ///
    /// - Throws: ``TLSSetupError`` naming the setting, the file and the reason, for the first file that cannot be
    ///   read, holds no usable PEM, or does not fit the others (a key that is not the certificate's).
    public init(configuration: SluiceConfiguration) throws(TLSSetupError) {
        if let files = configuration.server.tls {
            self.server = try Self.serverContext(files, http2: configuration.server.http2)
        } else {
            self.server = nil
        }
        if configuration.upstream.targets.contains(where: { $0.scheme == .https }) {
            self.upstream = try Self.upstreamContext(configuration.upstream.tls)
        } else {
            self.upstream = nil
        }
        if let files = configuration.server.grpcRLS?.tls {
            // The gRPC listener (issue 14) loads its files itself, at start; they are checked here too, so `sluice
            // check` and `serve` refuse unusable files with the same message as for `server.tls`.
            _ = try Self.serverContext(files, http2: true, setting: "server.grpc_rls.tls")
        }
    }

    /// Protocols offered in ALPN to the upstream: Sluice forwards HTTP/1.1 only (SPEC §3).
    static let applicationProtocols = ["http/1.1"]
    /// Protocols offered to clients with `server.http2` (issue 13): HTTP/2 first, as clients prefer it.
    static let clientApplicationProtocols = ["h2", "http/1.1"]

    private static func serverContext(
        _ files: TLSFiles,
        http2: Bool,
        setting: String = "server.tls"
    ) throws(TLSSetupError) -> NIOSSLContext {
        let chain = try Self.certificates(files.cert, setting: "\(setting).cert")
        let bytes = try Self.read(files.key, setting: "\(setting).key")
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(bytes: bytes, format: .pem)
        } catch {
            throw TLSSetupError(
                setting: "\(setting).key",
                file: files.key,
                reason: "not a PEM private key, or an encrypted one (\(error))"
            )
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) },
            privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = http2 ? Self.clientApplicationProtocols : Self.applicationProtocols
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            // Both files parsed: what is left to refuse is a key that does not belong to the certificate.
            throw TLSSetupError(
                setting: "\(setting).key",
                file: files.key,
                reason: "does not match the certificate in '\(files.cert)' (\(error))"
            )
        }
    }

    private static func upstreamContext(_ tls: UpstreamTLS) throws(TLSSetupError) -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = Self.applicationProtocols
        if tls.verify {
            // Chain and name (or address, for an IP target): the name comes from the target, see UpstreamPool.
            configuration.certificateVerification = .fullVerification
            if let ca = tls.ca {
                configuration.trustRoots = .certificates(try Self.certificates(ca, setting: "upstream.tls.ca"))
            }
        } else {
            // Testing only (documented): anybody on the path can stand in for the upstream.
            configuration.certificateVerification = .none
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSSetupError(setting: "upstream.tls", file: tls.ca ?? "system trust roots", reason: "\(error)")
        }
    }

    private static func read(_ path: String, setting: String) throws(TLSSetupError) -> [UInt8] {
        switch ConfigFile.read(path) {
        case .success(let data):
            return Array(data)
        case .failure(let reason):
            throw TLSSetupError(setting: setting, file: path, reason: reason.description)
        }
    }

    private static func certificates(_ path: String, setting: String) throws(TLSSetupError) -> [NIOSSLCertificate] {
        let bytes = try Self.read(path, setting: setting)
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(bytes)
        } catch {
            throw TLSSetupError(setting: setting, file: path, reason: "not a PEM certificate file (\(error))")
        }
        guard !certificates.isEmpty else {
            throw TLSSetupError(setting: setting, file: path, reason: "no PEM certificate in it")
        }
        return certificates
    }
}

/// A TLS file that cannot be used; the message names the setting, the file and why.
public struct TLSSetupError: Error, CustomStringConvertible {
    /// The YAML setting that names the file, e.g. `server.tls.cert`.
    public var setting: String
    public var file: String
    public var reason: String

    public var description: String { "\(self.setting): cannot use '\(self.file)': \(self.reason)" }
}

import Foundation
import NIOSSL

/// A private certificate authority in a fresh temporary directory, and the certificates it issues, made with the
/// `openssl` command line at test time (nothing secret is checked in, nothing expires in the repository).
///
/// Every file is PEM. Call ``remove()`` when done.
public struct TestCertificates: Sendable {
    /// The directory holding every file.
    public let directory: String
    /// The CA's certificate: what a client trusts to accept the certificates ``issue(_:subject:altNames:)`` makes.
    public var caPath: String { "\(self.directory)/ca.pem" }

    /// A PEM certificate and its private key.
    public struct Pair: Sendable {
        public var cert: String
        public var key: String
        public init(cert: String, key: String) {
            self.cert = cert
            self.key = key
        }
    }

    /// Creates the directory and the CA (`CN=<caName>`).
    public init(caName: String = "Sluice test CA") throws {
        self.directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("sluice-tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        try Self.openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(self.directory)/ca.key",
            "-out", "\(self.directory)/ca.pem", "-days", "2", "-subj", "/CN=\(caName)"
        )
    }

    /// A leaf certificate signed by this CA, written to `NAME.pem` and `NAME.key`.
    ///
    /// - Parameters:
    ///   - name: the file name stem.
    ///   - subject: the certificate's common name.
    ///   - altNames: its `subjectAltName`; the default covers a server reached as `localhost` or `127.0.0.1`.
    @discardableResult
    public func issue(
        _ name: String,
        subject: String = "localhost",
        altNames: String = "DNS:localhost,IP:127.0.0.1"
    ) throws -> Pair {
        let d = self.directory
        try Self.openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(d)/\(name).key", "-out", "\(d)/\(name).csr",
            "-subj", "/CN=\(subject)"
        )
        try "subjectAltName=\(altNames)\n".write(toFile: "\(d)/\(name).ext", atomically: true, encoding: .utf8)
        // A random serial per certificate (no shared serial file), so two certificates for one name differ.
        try Self.openssl(
            "x509", "-req", "-in", "\(d)/\(name).csr", "-CA", "\(d)/ca.pem", "-CAkey", "\(d)/ca.key",
            "-set_serial", "0x" + (0..<16).map { _ in String(UInt8.random(in: 0...255), radix: 16) }.joined(),
            "-out", "\(d)/\(name).pem", "-days", "2", "-extfile", "\(d)/\(name).ext"
        )
        return Pair(cert: "\(d)/\(name).pem", key: "\(d)/\(name).key")
    }

    /// A self-signed CA certificate unrelated to this one (a trust store that must refuse this CA's leaves),
    /// written to `NAME.pem`.
    public func unrelatedCA(_ name: String) throws -> String {
        let d = self.directory
        try Self.openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(d)/\(name).key", "-out", "\(d)/\(name).pem",
            "-days", "2", "-subj", "/CN=Another CA"
        )
        return "\(d)/\(name).pem"
    }

    /// A client context that trusts this CA only, checks names, and offers ALPN `protocols`.
    public func clientContext(protocols: [String] = ["http/1.1"]) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .file(self.caPath)
        configuration.applicationProtocols = protocols
        return try NIOSSLContext(configuration: configuration)
    }

    /// A server context presenting `pair`.
    public static func serverContext(_ pair: Pair) throws -> NIOSSLContext {
        let configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(pair.cert).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: pair.key, format: .pem))
        )
        return try NIOSSLContext(configuration: configuration)
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: self.directory)
    }

    /// Runs `openssl`; it reports failures in its output only, so the file it was to write (`-out`) is checked.
    private static func openssl(_ arguments: String...) throws {
        let output = try CleanSpawn.run("/usr/bin/openssl", arguments)
        if let index = arguments.firstIndex(of: "-out"), !FileManager.default.fileExists(atPath: arguments[index + 1]) {
            throw CertificateError(description: "openssl \(arguments.joined(separator: " ")) failed: \(output)")
        }
    }

    struct CertificateError: Error, CustomStringConvertible {
        var description: String
    }
}

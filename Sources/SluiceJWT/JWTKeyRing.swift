import Foundation
import JWTKit
import SluiceConfig

/// The keys of a `jwt:` section, read from their files (issue 15).
///
/// Reading is two steps because jwt-kit builds its algorithms inside the `JWTKeyCollection` actor:
/// - ``init(_:sourcePath:)`` reads and parses every file synchronously (PEM keys, the JWKS file) and reports a bad one
///   as `FILE:LINE:COLUMN: message` at the line that names it; `sluice check`, start and reload all run it;
/// - ``algorithms()`` hands the parsed keys to jwt-kit and takes back one verifying algorithm per key (async, once per
///   load, off the event loops). A request then calls the algorithm's synchronous `verify(_:signs:)` directly.
struct JWTKeyRing: Sendable {
    /// One parsed key, before jwt-kit wraps it.
    enum ParsedKey: Sendable {
        case hmac(HMACKey)
        case rsa(Insecure.RSA.PublicKey, DigestAlgorithm)
        case es256(ES256PublicKey)
        case es384(ES384PublicKey)
        case eddsa(EdDSA.PublicKey)
        /// A JWKS entry and the algorithm it is for (its `alg`, or the one its key type and curve imply).
        case jwk(JWK, algorithm: String)
    }

    /// A key ready to check signatures: the algorithm name a token's `alg` must equal, its `kid`, jwt-kit's algorithm.
    struct Entry: Sendable {
        var name: String
        var kid: String?
        var algorithm: any JWTAlgorithm
    }

    var keys: [(kid: String?, key: ParsedKey)] = []
    /// Where each of ``keys`` is named in the file (for errors jwt-kit raises in ``algorithms()``).
    var positions: [JWTConfiguration.Position] = []
    let sourcePath: String

    init(_ jwt: JWTConfiguration, sourcePath: String) throws(ConfigErrorList) {
        self.sourcePath = sourcePath
        var errors: [ConfigError] = []
        func fail(_ position: JWTConfiguration.Position, _ message: String) {
            errors.append(ConfigError(file: sourcePath, line: position.line, column: position.column, message: message))
        }
        if let secret = jwt.hs256Secret {
            self.keys.append((nil, .hmac(HMACKey(from: Array(secret.utf8)))))
            self.positions.append(jwt.hs256SecretPosition)
        }
        for file in jwt.keys {
            guard let pem = Self.read(file.path) else {
                fail(file.position, "file: cannot read '\(file.path)'")
                continue
            }
            do {
                let key: ParsedKey
                switch file.algorithm {
                case .rs256: key = .rsa(try Insecure.RSA.PublicKey(pem: pem), .sha256)
                case .rs384: key = .rsa(try Insecure.RSA.PublicKey(pem: pem), .sha384)
                case .rs512: key = .rsa(try Insecure.RSA.PublicKey(pem: pem), .sha512)
                case .es256: key = .es256(try ES256PublicKey(pem: pem))
                case .es384: key = .es384(try ES384PublicKey(pem: pem))
                case .eddsa: key = .eddsa(try EdDSA.PublicKey(pem: pem))
                }
                self.keys.append((file.kid, key))
                self.positions.append(file.position)
            } catch {
                fail(file.position, "file: '\(file.path)' is not a PEM \(file.algorithm.rawValue) public key (\(Self.describe(error)))")
            }
        }
        if let path = jwt.jwksFile {
            do {
                let read = try Self.readJWKS(path)
                self.keys += read
                self.positions += Array(repeating: jwt.jwksFilePosition, count: read.count)
            } catch {
                fail(jwt.jwksFilePosition, "jwks_file: '\(path)': \(error.message)")
            }
        }
        if !errors.isEmpty { throw ConfigErrorList(errors: errors) }
    }

    struct JWKSProblem: Error {
        var message: String
    }

    /// The keys of a JWKS file; each needs a `kid` (tokens name it) and a key type Sluice verifies with.
    static func readJWKS(_ path: String) throws(JWKSProblem) -> [(kid: String?, key: ParsedKey)] {
        guard let text = Self.read(path) else { throw JWKSProblem(message: "cannot read the file") }
        let jwks: JWKS
        do {
            jwks = try JSONDecoder().decode(JWKS.self, from: Data(text.utf8))
        } catch {
            throw JWKSProblem(message: "not a JWKS document (\(Self.describe(error)))")
        }
        var keys: [(kid: String?, key: ParsedKey)] = []
        for (index, jwk) in jwks.keys.enumerated() {
            guard let kid = jwk.keyIdentifier?.string, !kid.isEmpty else {
                throw JWKSProblem(message: "key \(index + 1) has no kid")
            }
            guard let algorithm = Self.algorithm(of: jwk) else {
                throw JWKSProblem(message: "key '\(kid)': unsupported key (kty \(jwk.keyType.rawValue), alg \(jwk.algorithm?.rawValue ?? "none"))")
            }
            keys.append((kid, .jwk(jwk, algorithm: algorithm)))
        }
        return keys
    }

    /// The algorithm a JWK verifies: its `alg`, else RS256 for RSA keys, ES256/ES384 by curve, EdDSA for Ed25519.
    private static func algorithm(of jwk: JWK) -> String? {
        let supported: Set<String> = ["RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"]
        if let alg = jwk.algorithm?.rawValue { return supported.contains(alg) ? alg : nil }
        switch jwk.keyType {
        case .rsa: return "RS256"
        case .ecdsa:
            switch jwk.curve?.rawValue {
            case "P-256": return "ES256"
            case "P-384": return "ES384"
            default: return nil
            }
        case .octetKeyPair: return jwk.curve?.rawValue == "Ed25519" ? "EdDSA" : nil
        default: return nil
        }
    }

    /// Every key as jwt-kit's algorithm; a JWKS key jwt-kit cannot use (a bad modulus, say) throws.
    func algorithms() async throws(ConfigErrorList) -> [Entry] {
        var entries: [Entry] = []
        let kid = JWKIdentifier(string: "sluice")
        for (index, (keyID, parsed)) in self.keys.enumerated() {
            let collection = JWTKeyCollection()
            do {
                switch parsed {
                case .hmac(let key): await collection.add(hmac: key, digestAlgorithm: .sha256, kid: kid)
                case .rsa(let key, let digest): await collection.add(rsa: key, digestAlgorithm: digest, kid: kid)
                case .es256(let key): await collection.add(ecdsa: key, kid: kid)
                case .es384(let key): await collection.add(ecdsa: key, kid: kid)
                case .eddsa(let key): await collection.add(eddsa: key, kid: kid)
                case .jwk(var jwk, _):
                    jwk.keyIdentifier = kid
                    try await collection.add(jwk: jwk)
                }
                let alg: String? = if case .jwk(_, let algorithm) = parsed { algorithm } else { nil }
                let algorithm = try await collection.getKey(for: kid, alg: alg)
                entries.append(Entry(name: algorithm.name, kid: keyID, algorithm: algorithm))
            } catch {
                let position = self.positions[index]
                throw ConfigErrorList(errors: [
                    ConfigError(
                        file: self.sourcePath,
                        line: position.line,
                        column: position.column,
                        message: "jwt: key \(keyID.map { "'\($0)'" } ?? "\(index + 1)") cannot verify: \(Self.describe(error))"
                    )
                ])
            }
        }
        return entries
    }

    private static func read(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return String(data: data, encoding: .utf8)
    }

    private static func describe(_ error: any Error) -> String {
        let text = String(describing: error)
        return text.count > 160 ? String(text.prefix(160)) + "…" : text
    }
}

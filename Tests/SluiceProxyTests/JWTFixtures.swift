import Crypto
import CryptoExtras
import Foundation
import JWTKit
import SluiceConfig

/// Keys and tokens for the JWT tests (issue 15), all made here with jwt-kit: one signer per algorithm, their public
/// keys written as PEM files (and a JWKS file) in a fresh directory.
final class JWTFixtures: Sendable {
    static let hsSecret = "0123456789abcdef0123456789abcdef-test-secret"

    let directory: String
    let rsaPrivate: JWTKit.Insecure.RSA.PrivateKey
    let esPrivate: ES256PrivateKey
    let edPrivate: EdDSA.PrivateKey
    /// A second ES256 key, for JWKS rotation and "signed by another key".
    let otherESPrivate: ES256PrivateKey
    let rsaPath: String
    let esPath: String
    let edPath: String
    let jwksPath: String

    init() throws {
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-jwt-\(UUID())").path
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        self.rsaPrivate = try JWTKit.Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
        self.esPrivate = ES256PrivateKey()
        self.edPrivate = try EdDSA.PrivateKey()
        self.otherESPrivate = ES256PrivateKey()
        self.rsaPath = self.directory + "/rsa.pem"
        self.esPath = self.directory + "/es256.pem"
        self.edPath = self.directory + "/ed25519.pem"
        self.jwksPath = self.directory + "/jwks.json"
        try self.rsaPrivate.publicKey.pemRepresentation.write(toFile: self.rsaPath, atomically: true, encoding: .utf8)
        try self.esPrivate.publicKey.pemRepresentation.write(toFile: self.esPath, atomically: true, encoding: .utf8)
        try self.edPrivate.publicKey.pemRepresentation.write(toFile: self.edPath, atomically: true, encoding: .utf8)
        try self.writeJWKS(kid: "k1", key: self.esPrivate)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: self.directory)
    }

    /// Writes the JWKS file with one ES256 key under `kid` (rotation rewrites it).
    func writeJWKS(kid: String, key: ES256PrivateKey) throws {
        let (x, y) = key.publicKey.parameters!
        let json = #"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"\#(kid)","x":"\#(x)","y":"\#(y)"}]}"#
        try json.write(toFile: self.jwksPath, atomically: true, encoding: .utf8)
    }

    /// A `jwt:` section accepting every fixture key: the HS256 secret, the three PEM files, the JWKS file.
    func configuration(
        issuers: [String] = ["https://auth.test"],
        audiences: [String] = ["api"],
        token: JWTConfiguration.TokenSource = .bearer
    ) -> JWTConfiguration {
        JWTConfiguration(
            token: token,
            hs256Secret: Self.hsSecret,
            keys: [
                .init(algorithm: .rs256, path: self.rsaPath),
                .init(algorithm: .es256, path: self.esPath),
                .init(algorithm: .eddsa, path: self.edPath),
            ],
            jwksFile: self.jwksPath,
            issuers: issuers,
            audiences: audiences
        )
    }

    enum Signer {
        case hs256, rs256, es256, eddsa
        /// ES256 with the JWKS key under `kid`.
        case jwks(kid: String, key: ES256PrivateKey)
        /// An HMAC secret of the caller's choosing (algorithm confusion: the RSA public key's PEM).
        case hmac(secret: String)
    }

    /// Claims of a valid token for `sub`, expiring in an hour, from the accepted issuer and audience.
    static func claims(sub: String, _ extra: [String: JWTHeaderField] = [:]) -> [String: JWTHeaderField] {
        let now = Int(Date().timeIntervalSince1970)
        var claims: [String: JWTHeaderField] = [
            "sub": .string(sub), "iss": .string("https://auth.test"), "aud": .string("api"),
            "exp": .int(now + 3600), "iat": .int(now),
        ]
        for (key, value) in extra { claims[key] = value }
        return claims
    }

    func token(_ signer: Signer, _ claims: [String: JWTHeaderField]) async throws -> String {
        let keys = JWTKeyCollection()
        var kid: JWKIdentifier? = nil
        switch signer {
        case .hs256: await keys.add(hmac: HMACKey(from: Self.hsSecret), digestAlgorithm: .sha256)
        case .rs256: await keys.add(rsa: self.rsaPrivate, digestAlgorithm: .sha256)
        case .es256: await keys.add(ecdsa: self.esPrivate)
        case .eddsa: await keys.add(eddsa: self.edPrivate)
        case .jwks(let id, let key):
            kid = JWKIdentifier(string: id)
            await keys.add(ecdsa: key, kid: kid)
        case .hmac(let secret): await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        }
        return try await keys.sign(TestClaims(fields: claims), kid: kid)
    }

    /// An unsigned token: `{"alg":"none"}`, the claims, an empty signature.
    static func unsignedToken(_ claims: [String: JWTHeaderField]) throws -> String {
        func part(_ data: Data) -> String {
            data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        let header = part(Data(#"{"alg":"none","typ":"JWT"}"#.utf8))
        let payload = part(try JSONEncoder().encode(claims))
        return "\(header).\(payload)."
    }
}

/// A payload of any claims.
struct TestClaims: JWTPayload {
    var fields: [String: JWTHeaderField]

    init(fields: [String: JWTHeaderField]) {
        self.fields = fields
    }

    init(from decoder: any Decoder) throws {
        self.fields = try [String: JWTHeaderField](from: decoder)
    }

    func encode(to encoder: any Encoder) throws {
        try self.fields.encode(to: encoder)
    }

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

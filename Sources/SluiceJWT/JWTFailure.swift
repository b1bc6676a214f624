import SluiceLimiter

/// Why a request's token gave no claims (issue 15): its `jwt:` key parts are then missing and `on_missing_key`
/// decides. ``rawValue`` is what the access log writes after `jwt: ` (never the token).
public enum JWTFailure: String, Sendable, Hashable, CaseIterable {
    /// No token where `jwt.token` says it is.
    case absent = "absent"
    /// Not three base64url parts of JSON, or a claim of the wrong type (`exp` not a number).
    case malformed = "malformed"
    /// `alg: none`: always refused.
    case algorithmNone = "alg none"
    /// An algorithm no configured key is for (HS256 when only RSA keys are configured: algorithm confusion).
    case algorithmNotAllowed = "algorithm not allowed"
    /// The header's `kid` names no configured key.
    case unknownKey = "unknown key"
    case badSignature = "bad signature"
    case expired = "expired"
    case notYetValid = "not yet valid"
    case wrongIssuer = "wrong issuer"
    case wrongAudience = "wrong audience"
    /// The verifier's keys are not loaded yet (only between a server's init and its start).
    case keysNotLoaded = "keys not loaded"

    /// Whether the same token always fails the same way (so the failure may be cached): everything but `nbf`, which
    /// time can cure, and unloaded keys.
    var isPermanent: Bool {
        switch self {
        case .notYetValid, .keysNotLoaded, .absent: false
        default: true
        }
    }
}

/// The result of checking one token.
public enum JWTCheck: Sendable, Hashable {
    case verified(VerifiedClaims)
    case failed(JWTFailure)
}

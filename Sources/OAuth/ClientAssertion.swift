import Common
import Cryptography
import JOSE

/// `private_key_jwt` (RFC 7523 §2.2 and §3, OIDC Core §9): a client proves
/// itself with a short-lived JWT signed by one of the public keys it
/// registered (`jwks`); Latchkey holds no secret of it.
public enum ClientAssertion {
    public static let type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    /// SPEC 10.2: `exp` at most five minutes ahead (plus `skewSeconds` for the client's clock).
    public static let maxLifetimeSeconds: Int64 = 300
    public static let skewSeconds: Int64 = 30
    public static let maxKeys = 10
    public static let maxLength = 8192
    /// What only a private JWK holds (RFC 7518 §6): registering one is refused.
    static let privateMembers = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]

    /// Nil when `jwks` is a JWK Set of 1 to 10 public signature keys Latchkey
    /// verifies with (EC P-256, RSA of 2048 bits or more, Ed25519), else why not.
    public static func jwksProblem(_ jwks: JSON) -> String? {
        guard jwks.objectValue != nil, let keys = jwks["keys"]?.arrayValue else { return "must be a JWK Set: {\"keys\": [...]}" }
        guard (1...maxKeys).contains(keys.count) else { return "must hold 1 to \(maxKeys) keys" }
        // With more than one key each has its kid, once: an assertion names the one it was signed with.
        let kids = keys.compactMap { $0["kid"]?.stringValue }
        if keys.count > 1 && (kids.count != keys.count || Set(kids).count != kids.count) { return "keys must each have a distinct kid" }
        guard jwks.serialized().count <= 16 * 1024 else { return "must serialize to at most 16 KiB" }
        for (i, key) in keys.enumerated() {
            if let problem = shapeProblem(key) { return "keys[\(i)] \(problem)" }
            guard let imported = try? SigningKey(jwk: key) else { return "keys[\(i)] is not an EC P-256, RSA or Ed25519 public key" }
            // RFC 7517 §4.4: the algorithm the key is meant for. Latchkey verifies each kind of key with one
            // algorithm; a key that says another (HS256 on an EC key) is refused, not silently used otherwise.
            if let alg = key["alg"], alg.stringValue != imported.algorithm.rawValue {
                return "keys[\(i)] alg must be \(imported.algorithm.rawValue) for this key (or left out)"
            }
        }
        return nil
    }

    /// What makes a JWK unacceptable before it is even imported: not an
    /// object, a private member, not for signatures, an RSA key outside
    /// 2048–4096 bits or without a small odd exponent (bounded work per
    /// verification; a DPoP proof's key, which anyone may send, must have
    /// 65537: `DPoP.verify`). Nil when its shape is fine.
    public static func shapeProblem(_ key: JSON) -> String? {
        guard key.objectValue != nil else { return "must be a JWK object" }
        if let member = privateMembers.first(where: { key[$0] != nil }) { return "holds the private member \(member): public keys only" }
        if let use = key["use"]?.stringValue, use != "sig" { return "is not a signature key (use \(Echo.name(use)))" }
        if key["kty"]?.stringValue == "RSA" {
            let n = key["n"]?.stringValue.flatMap(Base64.urlDecode)?.drop { $0 == 0 }.count ?? 0
            guard (256...512).contains(n) else { return "must be an RSA key of 2048 to 4096 bits" }
            let e = Array(key["e"]?.stringValue.flatMap(Base64.urlDecode)?.drop { $0 == 0 } ?? [])
            let value = e.count <= 4 ? e.reduce(UInt64(0)) { $0 << 8 | UInt64($1) } : 0
            guard value >= 3, value % 2 == 1 else { return "must have a small odd public exponent (65537)" }
        }
        return nil
    }

    /// A JWT's `jti` as Latchkey records it for single use (client assertions,
    /// DPoP proofs): a string of 1 to 256 bytes without control characters
    /// (PostgreSQL's text holds no NUL: refused here, not failed there).
    static func recordableJTI(_ claim: JSON?) -> String? {
        guard let jti = claim?.stringValue, (1...256).contains(jti.utf8.count), !jti.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            return nil
        }
        return jti
    }

    /// The assertion parsed once, and the client it names (its `sub`, unverified: only to find the keys to verify it with).
    static func parse(_ token: String) -> (parsed: JWS.Parsed, subject: String)? {
        guard let parsed = JWS.parse(token, maxLength: maxLength), let subject = parsed.payload["sub"]?.stringValue else { return nil }
        return (parsed, subject)
    }

    /// The assertion's `jti` and expiry once it verifies with one of the
    /// client's keys (the header's `alg` must be the key's, RFC 8725 §3.1)
    /// and its claims hold (RFC 7523 §3): `iss` and `sub` the client, `aud`
    /// naming one of `audiences` (the issuer, the token or PAR endpoint; a
    /// FAPI 2.0 client's: the issuer, as a string), `exp`
    /// in the future and at most five minutes ahead, `jti` present.
    static func verify(_ parsed: JWS.Parsed, client: Client, audiences: [String], now: Int64) -> (jti: String, expiresAt: Int64)? {
        guard let keys = client.jwks?["keys"]?.arrayValue else { return nil }
        let kid = parsed.kid
        // One verification per assertion: with several keys the assertion must say which.
        if kid == nil && keys.count > 1 { return nil }
        let verified = keys.contains { jwk in
            guard kid == nil || jwk["kid"]?.stringValue == kid else { return false }
            // FAPI 2.0 §5.4 (no RS256): an RSA key registered before the rule does not authenticate a FAPI client.
            if jwk["kty"]?.stringValue == "RSA" && !client.allows(.rs256) { return false }
            return ForeignKeys.shared.verify(jwk, { JWS.verifyForeign(parsed, key: $0) }) != nil
        }
        guard verified else { return nil }
        let claims = parsed.payload, nowSeconds = now / 1000
        guard claims["iss"]?.stringValue == client.clientID, claims["sub"]?.stringValue == client.clientID,
              let exp = claims["exp"]?.numericDateValue, exp > nowSeconds, exp <= nowSeconds + maxLifetimeSeconds + skewSeconds,
              let jti = recordableJTI(claims["jti"]) else { return nil }
        // nbf and iat are optional, but one that is there and no NumericDate is a malformed assertion, not an absent claim.
        for name in ["nbf", "iat"] {
            guard let value = claims[name] else { continue }
            guard let seconds = value.numericDateValue, seconds <= nowSeconds + skewSeconds else { return nil }
        }
        // FAPI 2.0 Security Profile §5.3.2.1: a FAPI client's `aud` is the issuer as a string, never an array that
        // could also name another server (the audience injection its final text closes).
        if client.fapi2 && claims["aud"]?.stringValue == nil { return nil }
        let aud = claims["aud"]?.stringValue.map { [$0] } ?? (claims["aud"]?.arrayValue ?? []).compactMap(\.stringValue)
        guard aud.contains(where: audiences.contains) else { return nil }
        // Kept past exp by more than the clock skew allowed, so a node whose clock lags cannot take it again; plus this
        // server's millisecond, so that assertions whose client pins one `exp` do not all share one expiry (ExpiredRows).
        return (jti, (exp + 2 * skewSeconds) * 1000 + now % 1000)
    }
}

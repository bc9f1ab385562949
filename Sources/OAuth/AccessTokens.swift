import Common
import Cryptography
import JOSE

/// The claims of a Latchkey access token (RFC 9068 §2.2).
public struct AccessTokenClaims: Sendable, Equatable {
    public var issuer: String
    public var subject: String
    public var audience: String
    public var clientID: String
    public var scope: [String]
    public var issuedAt: Int64
    public var expiresAt: Int64
    public var jti: String
    public var authTime: Int64?
    /// The grant (user authorization) a user token descends from.
    public var grantID: String?
    /// The client's token generation at issuance (`gen`, absent when 0).
    public var generation: Int
    /// The DPoP key the token is bound to (`cnf.jkt`, RFC 9449 §6): only its holder may use it.
    public var jkt: String?

    public init(issuer: String, subject: String, audience: String, clientID: String, scope: [String], issuedAt: Int64,
                expiresAt: Int64, jti: String, authTime: Int64? = nil, grantID: String? = nil, generation: Int = 0, jkt: String? = nil) {
        self.issuer = issuer
        self.subject = subject
        self.audience = audience
        self.clientID = clientID
        self.scope = scope
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.jti = jti
        self.authTime = authTime
        self.grantID = grantID
        self.generation = generation
        self.jkt = jkt
    }

    /// A token the client obtained for itself (client_credentials): no user,
    /// no grant, and its subject is the client (RFC 9068 §2.2). Only such a
    /// token is a management caller (SPEC 3). Client ids can never take a
    /// user's `usr-` form (SPEC 6.1), so the two kinds of subject stay apart.
    public var isClientCredentials: Bool { grantID == nil && authTime == nil && subject == clientID }

    /// The claims as the token's JWS payload (RFC 9068 §2.2), written directly: every token request builds one.
    var serialized: [UInt8] {
        var claims = JSONObjectWriter(capacity: 320)
        claims.string("iss", issuer)
        claims.string("sub", subject)
        claims.string("aud", audience)
        claims.string("client_id", clientID)
        claims.string("scope", Scopes.join(scope))
        claims.int("iat", issuedAt)
        claims.int("exp", expiresAt)
        claims.string("jti", jti)
        if let authTime { claims.int("auth_time", authTime) }
        if let grantID { claims.string("gid", grantID) }
        if generation != 0 { claims.int("gen", Int64(generation)) }
        if let jkt { claims.value("cnf", ["jkt": .string(jkt)]) }
        return claims.finish()
    }

    init?(json: JSON) {
        guard let iss = json["iss"]?.stringValue, let sub = json["sub"]?.stringValue, let aud = json["aud"]?.stringValue,
              let cid = json["client_id"]?.stringValue, let scope = json["scope"]?.stringValue, let iat = json["iat"]?.intValue,
              let exp = json["exp"]?.intValue, let jti = json["jti"]?.stringValue else { return nil }
        self.init(issuer: iss, subject: sub, audience: aud, clientID: cid, scope: Scopes.parse(scope) ?? [], issuedAt: iat,
                  expiresAt: exp, jti: jti, authTime: json["auth_time"]?.intValue, grantID: json["gid"]?.stringValue,
                  generation: Int(json["gen"]?.intValue ?? 0), jkt: json["cnf"]?["jkt"]?.stringValue)
    }
}

/// Signature checks already done by this worker thread: a token seen again
/// skips the signature verification (the costliest step) until it expires.
/// Revocation, family and client checks still run on every use. One per
/// thread, so no locking. Bounded by count and by bytes, the token's and its
/// scopes': a client's tokens may be 16 KB of scopes, and 4,096 of them were
/// 120 MB a thread (attacker review, session 24). A token over `maxTokenBytes`
/// is verified on every use instead (a few of them would otherwise empty the
/// cache of everyone else's). A full cache starts over.
public final class VerifiedTokenCache {
    private var entries: [String: AccessTokenClaims] = [:]
    private let capacity: Int
    private let maxBytes: Int
    /// The bytes of the tokens held.
    private(set) var bytes = 0

    public static let maxTokenBytes = 4096

    public init(capacity: Int = 4096, maxBytes: Int = 3 << 20) {
        self.capacity = capacity
        self.maxBytes = maxBytes
    }

    /// What an entry is counted as: the token's bytes, and its scopes' (each a string of its own in the claims).
    static func weight(_ token: String, _ claims: AccessTokenClaims) -> Int {
        claims.scope.reduce(token.utf8.count) { $0 + $1.utf8.count + 16 }
    }

    /// Tokens held (tests).
    var count: Int { entries.count }

    /// What the keys were when the entries were verified (`KeyRing.currentVerificationEpoch`).
    private var epoch = 0

    /// Whether what is held was verified under the keys as they are
    /// (`epoch`); when they have lost one since, every entry goes.
    func holds(epoch: Int) -> Bool {
        guard epoch != self.epoch else { return true }
        entries.removeAll(keepingCapacity: true)
        bytes = 0
        self.epoch = epoch
        return false
    }

    /// The claims verified for `token`, unexpired; whether the keys still
    /// stand behind them is `holds(epoch:)`.
    func claims(_ token: String, now: Int64) -> AccessTokenClaims? {
        guard let claims = entries[token] else { return nil }
        if claims.expiresAt <= now {
            entries[token] = nil
            bytes -= VerifiedTokenCache.weight(token, claims)
            return nil
        }
        return claims
    }

    func insert(_ token: String, _ claims: AccessTokenClaims) {
        guard token.utf8.count <= VerifiedTokenCache.maxTokenBytes else { return }
        let size = VerifiedTokenCache.weight(token, claims)
        if entries.count >= capacity || bytes + size > maxBytes {
            entries.removeAll(keepingCapacity: true)
            bytes = 0
        }
        if entries.updateValue(claims, forKey: token) == nil { bytes += size }
    }
}

/// Issues and validates JWT access tokens (RFC 9068).
public struct AccessTokens {
    public static let type = "at+jwt"
    let env: Environment
    let store: any ClientStorage & CredentialStorage & GrantStorage
    let keys: KeyRing
    let cache: VerifiedTokenCache?

    public init(env: Environment, store: any ClientStorage & CredentialStorage & GrantStorage, keys: KeyRing, cache: VerifiedTokenCache? = nil) {
        self.env = env
        self.store = store
        self.keys = keys
        self.cache = cache
    }

    /// The audience of tokens Latchkey issues: its own APIs under the issuer.
    public var audience: String { env.issuer }

    public func issue(client: Client, subject: String, scope: [String], ttl: Int, authTime: Int64? = nil, grantID: String? = nil,
                      jkt: String? = nil) throws -> (token: String, claims: AccessTokenClaims) {
        let now = env.nowSeconds
        let claims = AccessTokenClaims(issuer: env.issuer, subject: subject, audience: audience, clientID: client.clientID, scope: scope,
                                       issuedAt: now, expiresAt: now + Int64(ttl), jti: env.randomToken(bytes: 18),
                                       authTime: authTime, grantID: grantID, generation: client.tokenGeneration, jkt: jkt)
        let (key, header) = try keys.accessTokenSigner(for: client)
        let token = try JWS.sign(serializedPayload: claims.serialized, key: key, encodedHeader: header)
        return (token, claims)
    }

    /// The claims of a token this server issued that is still active: a
    /// published key's signature with its own algorithm, `typ` at+jwt, our
    /// issuer and audience, not expired, not revoked, and its client still
    /// present, enabled and of the token's generation. nil for anything
    /// else, garbage included.
    public func validate(_ token: String) throws -> (claims: AccessTokenClaims, client: Client)? {
        guard case let .usable(claims, client) = try standing(token) else { return nil }
        return (claims, client)
    }

    /// What a presented token is, from one verification: usable (as
    /// `validate`), genuine and active but of a client deleted since (a
    /// surface may say so, SPEC 6.2's AU0006), or neither.
    public enum Standing {
        case usable(AccessTokenClaims, Client)
        case ofDeletedClient(AccessTokenClaims)
        case unusable
    }

    public func standing(_ token: String) throws -> Standing {
        guard let claims = try verifiedClaims(token) else { return .unusable }
        guard let client = try store.client(claims.clientID) else { return .ofDeletedClient(claims) }
        guard client.enabled, client.tokenGeneration == claims.generation else { return .unusable }
        return .usable(claims, client)
    }

    /// The claims of a genuine, unexpired, unrevoked token, whether or not its
    /// client still exists (a surface may say "the calling client no longer exists").
    public func verifiedClaims(_ token: String) throws -> AccessTokenClaims? {
        let claims: AccessTokenClaims
        var remembered = false
        if let cached = cache?.claims(token, now: env.nowSeconds) {
            claims = cached
            remembered = true
        } else {
            guard let verified = try verifySignatureAndClaims(token) else { return nil }
            cache?.insert(token, verified)
            claims = verified
        }
        if try store.isAccessTokenRevoked(jti: claims.jti) { return nil }
        // A user token dies with its family (code replay, refresh reuse, a disconnected app).
        if let family = claims.grantID, try store.isFamilyRevoked(id: family) { return nil }
        // A remembered verification holds while the keys lost none since; asked after the reads above, which on
        // PostgreSQL go with the request's first round trip (review of the change, session 29).
        if remembered, let cache, !cache.holds(epoch: try keys.currentVerificationEpoch()) {
            guard try verifySignatureAndClaims(token) != nil else { return nil }
            cache.insert(token, claims)
        }
        return claims
    }

    func verifySignatureAndClaims(_ token: String) throws -> AccessTokenClaims? {
        guard let parsed = JWS.parse(token), let kid = parsed.kid,
              let typ = parsed.typ?.lowercased(), typ == AccessTokens.type || typ == "application/at+jwt",
              let key = try keys.verificationKey(kid: kid), JWS.verify(parsed, key: key),
              let claims = AccessTokenClaims(json: parsed.payload),
              claims.issuer == env.issuer, claims.audience == audience,
              claims.expiresAt > env.nowSeconds, claims.issuedAt <= env.nowSeconds + 60,
              // No token Latchkey signs lives longer (and none past its key's retention, KeyRing).
              claims.expiresAt - claims.issuedAt <= Int64(ClientSpec.maxAccessTokenTTL)
        else { return nil }
        return claims
    }
}

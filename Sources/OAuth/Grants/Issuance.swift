import Common
import Cryptography
import JOSE

/// What the user-facing grants share: the outcome of a grant's transaction,
/// the refresh token a grant stores, and the access and ID tokens signed
/// once it has committed (OIDC Core §2, §3.1.3.6).
extension TokenService {
    /// The outcome of a transaction that must commit even when the request fails
    /// (a replay revokes tokens, then answers invalid_grant). Signing happens
    /// after the commit, so the writer lock is held only for the database work.
    enum Outcome {
        case issued(Issuance)
        case refused(OAuthError)
    }

    /// What to sign once the grant's transaction has committed.
    struct Issuance {
        var client: Client
        /// The token's subject.
        var userID: String
        /// Needed only for an ID token's claims.
        var user: User?
        var scope: [String]
        var authTime: Int64
        var familyID: String
        var nonce: String?
        var refreshToken: String?
        var idToken: Bool
        /// The session signed into (the ID token's `sid`, Back-Channel Logout 1.0 §2.1).
        var sid: String?
        /// `acr` asked for with the claims parameter.
        var acr: Bool
        /// The DPoP key the access token is bound to.
        var jkt: String? = nil
        /// The user's profile for the ID token's claims, read inside the grant's transaction (`profileForIDToken`).
        var profile: UserProfile? = nil
    }

    /// A single-use grant (a code, a device code) redeemed twice at once: the
    /// redemption that lost the race revokes what the winner issued, its
    /// family read again once the winner committed (`nil`: withdrawn, nothing
    /// was issued), as a second redemption after it does (RFC 6749 §4.1.2).
    func revokeWinnersFamily(_ family: String?, at now: Int64) throws {
        if let family { try store.revokeFamily(id: family, at: now) }
    }

    /// What an ID token for `scope` will say of the user beyond `User`, read
    /// inside the grant's transaction: nothing is read once it has committed,
    /// for a read failing then (the database gone a moment) would answer 503
    /// for a grant that exists, and the client's retry would be a replay that
    /// revokes it (attacker review, session 18).
    func profileForIDToken(_ user: User, scope: [String]) throws -> UserProfile? {
        scope.contains("openid") && UserProfile.needed(for: scope) ? try store.userProfile(userID: user.id) : nil
    }

    /// Signs the access token (and the ID token) of a committed grant.
    /// Whether the client gets a refresh token: it registered the grant, its
    /// refresh_token_ttl is not 0, and the user granted offline_access or the
    /// client is configured to always get one.
    func issuesRefreshToken(_ client: Client, scope: [String]) -> Bool {
        client.grantTypes.contains(.refreshToken) && client.refreshTokenTTL > 0
            && (scope.contains("offline_access") || client.refreshTokenPolicy == .always)
    }

    /// Records the request's DPoP proof (its jti, RFC 9449 §11.1) inside the
    /// grant's transaction, once the code, refresh token or device code has
    /// proved to be the client's and before anything else is checked or
    /// spent: false when the proof was used before (the grant then answers
    /// `OAuthError.proofReplayed` and changes nothing).
    func useProof(_ request: TokenRequest) throws -> Bool {
        guard let proof = request.proof else { return !request.proofWithheld }
        return try store.useProof(proof)
    }

    /// Stores a new refresh token of the family (inside the grant's transaction),
    /// expiring at `expiresAt` (`refreshTokenExpiry`) with its grant's `sessionEndsAt`.
    /// A public client's refresh token is bound to its DPoP key when it sent a proof (RFC 9449 §5): `jkt`.
    /// `parent`: the hash of the token whose rotation issues this one.
    func storeRefreshToken(client: Client, userID: String, scope: [String], authTime: Int64, familyID: String, expiresAt: Int64,
                           sessionEndsAt: Int64?, jkt: String? = nil, parent: String? = nil) throws -> String {
        let refresh = env.randomToken(prefix: "lkr_", bytes: 32)
        try store.insertRefreshToken(RefreshTokenRecord(tokenHash: TokenService.hash(refresh), familyID: familyID, clientID: client.clientID,
                                                        userID: userID, scope: scope, authTime: authTime, createdAt: env.now(),
                                                        expiresAt: expiresAt, jkt: client.isPublic ? jkt : nil, parentHash: parent,
                                                        sessionEndsAt: sessionEndsAt))
        return refresh
    }

    /// When the sign-in a grant came from ends, for its refresh tokens:
    /// without `offline_access` none outlives it (OIDC Core §11; Back-Channel
    /// Logout §2.7), `signedInAt` (seconds; `authTime` unless the grant says
    /// otherwise) plus a session's lifetime. nil with offline_access.
    static func sessionEnd(scope: [String], signedInAt: Int64) -> Int64? {
        scope.contains("offline_access") ? nil : signedInAt * 1000 + SessionService.lifetimeMillis
    }

    /// When a refresh token made now expires: the client's lifetime for it, within its grant's session.
    func refreshTokenExpiry(_ client: Client, sessionEndsAt: Int64?) -> Int64 {
        min(env.now() + Int64(client.refreshTokenTTL) * 1000, sessionEndsAt ?? .max)
    }

    /// A new grant's family, its connection touched, and the first refresh token when the client gets one
    /// (inside the grant's transaction). The family is stored with an expiry that covers that token, so its
    /// insert has nothing to move (a write of an indexed column saved from every code flow).
    func openFamily(_ familyID: String, client: Client, userID: String, scope: [String], authTime: Int64, sid: String?, jkt: String?,
                    signedInAt: Int64? = nil) throws -> String? {
        let now = env.now(), sessionEndsAt = Self.sessionEnd(scope: scope, signedInAt: signedInAt ?? authTime)
        let expiresAt: Int64? = issuesRefreshToken(client, scope: scope) ? refreshTokenExpiry(client, sessionEndsAt: sessionEndsAt) : nil
        try store.insertFamily(id: familyID, clientID: client.clientID, userID: userID, createdAt: now, sid: sid,
                               expiresAt: expiresAt.map { $0 + TokenFamilies.keptAfterExpiryMillis } ?? now)
        try store.touchConnection(userID: userID, clientID: client.clientID, accessTime: now)
        guard let expiresAt else { return nil }
        return try storeRefreshToken(client: client, userID: userID, scope: scope, authTime: authTime, familyID: familyID, expiresAt: expiresAt,
                                     sessionEndsAt: sessionEndsAt, jkt: jkt)
    }

    func sign(_ i: Issuance) throws -> TokenResponse {
        let access = try tokens.issue(client: i.client, subject: i.userID, scope: i.scope, ttl: i.client.accessTokenTTL,
                                      authTime: i.authTime, grantID: i.familyID, jkt: i.jkt)
        var response = TokenResponse(accessToken: access.token, expiresIn: i.client.accessTokenTTL, scope: i.scope)
        response.dpopBound = i.jkt != nil
        response.refreshToken = i.refreshToken
        if i.idToken, let user = i.user {
            response.idToken = try idToken(client: i.client, user: user, i, accessToken: access.token)
        }
        return response
    }

    /// OIDC Core §2: `at_hash` is the left half of the access token's hash
    /// with the ID token's algorithm (SHA-256; SHA-512 for EdDSA).
    func idToken(client: Client, user: User, _ i: Issuance, accessToken: String) throws -> String {
        let scope = i.scope
        let (kid, key) = try keys.signingKey(for: client.signingAlgorithm(client.idTokenAlg))
        let digest = key.algorithm == .edDSA ? Digest.sha512(Array(accessToken.utf8)) : Digest.sha256(accessToken)
        let now = env.nowSeconds
        var claims: [(String, JSON)] = [
            ("iss", .string(env.issuer)), ("sub", .string(user.id)), ("aud", .string(client.clientID)), ("azp", .string(client.clientID)),
            ("exp", .int(now + Int64(client.accessTokenTTL))), ("iat", .int(now)), ("auth_time", .int(i.authTime)),
            ("at_hash", .string(Base64.urlEncode(Array(digest.prefix(digest.count / 2))))),
        ]
        if let nonce = i.nonce { claims.append(("nonce", .string(nonce))) }
        if let sid = i.sid { claims.append(("sid", .string(sid))) }
        // Latchkey signs users in with a password only (RFC 8176), the one context it names (OIDC Core §2 acr).
        claims.append(("amr", ["pwd"]))
        if i.acr { claims.append(("acr", .string(ClaimsRequest.passwordACR))) }
        claims += UserProfile.claims(user, i.profile, scope: scope)
        return try JWS.sign(payload: .object(claims), key: key, kid: kid, typ: "JWT")
    }
}

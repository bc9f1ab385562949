import Common
import Cryptography
import JOSE

/// The user-facing grants: authorization_code (RFC 6749 §4.1.3, RFC 7636
/// §4.6), refresh_token (§6) with rotation and reuse detection (RFC 9700
/// §4.14.2), ID tokens (OIDC Core §2, §3.1.3.6) and userinfo (§5.3).
extension TokenService {
    static func hash(_ value: String) -> String { Base64.urlEncode(Digest.sha256(value)) }

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
    }

    public func authorizationCode(client: Client, code: String, redirectURI: String?, verifier: String?) throws -> TokenResponse {
        let codeHash = TokenService.hash(code)
        let now = env.now()
        let outcome: Outcome = try store.write {
            guard let record = try store.code(hash: codeHash), record.clientID == client.clientID else {
                return .refused(.invalidGrant(detail: "unknown code or another client's"))
            }
            if record.consumedAt != nil {
                // RFC 6749 §4.1.2: a second redemption revokes what the first one issued.
                if let family = record.familyID { try store.revokeFamily(id: family, at: now) }
                return .refused(.invalidGrant(detail: "code replayed"))
            }
            guard record.expiresAt > now else { return .refused(.invalidGrant(detail: "code expired")) }
            if record.redirectURISent || redirectURI != nil {
                guard redirectURI == record.redirectURI else { return .refused(.invalidGrant("redirect_uri does not match the authorization request.")) }
            }
            if let challenge = record.codeChallenge {
                guard let verifier, AuthorizationService.isValidCodeChallenge(verifier),
                      Digest.constantTimeEqual(Array(Base64.urlEncode(Digest.sha256(verifier)).utf8), Array(challenge.utf8)) else {
                    return .refused(.invalidGrant("The code_verifier does not match the code_challenge."))
                }
            } else if verifier != nil {
                return .refused(.invalidGrant("No code_challenge was sent with the authorization request."))
            }
            // SPEC 5.2: a grant exists only with its connection; a code the user
            // disconnected meanwhile is gone (deleteConnection), and this is the
            // second line of that rule.
            guard try store.connection(userID: record.userID, clientID: client.clientID) != nil else {
                return .refused(.invalidGrant(detail: "the user disconnected the client"))
            }
            let familyID = env.randomToken(bytes: 16)
            guard try store.consumeCode(hash: codeHash, at: now, familyID: familyID) else {
                return .refused(.invalidGrant(detail: "code consumed concurrently"))
            }
            guard let user = try store.user(id: record.userID) else { return .refused(.invalidGrant(detail: "user gone")) }
            try store.insertFamily(id: familyID, clientID: client.clientID, userID: user.id, createdAt: now)
            try store.touchConnection(userID: user.id, clientID: client.clientID, accessTime: now)
            let refresh = try storeRefreshToken(client: client, userID: user.id, scope: record.scope, authTime: record.authTime, familyID: familyID,
                                                issue: issuesRefreshToken(client, scope: record.scope))
            return .issued(Issuance(client: client, userID: user.id, user: user, scope: record.scope, authTime: record.authTime, familyID: familyID,
                                    nonce: record.nonce, refreshToken: refresh, idToken: record.scope.contains("openid")))
        }
        switch outcome {
        case let .issued(issuance): return try sign(issuance)
        case let .refused(error): throw error
        }
    }

    public func refresh(client: Client, refreshToken: String, requestedScope: String?) throws -> TokenResponse {
        let tokenHash = TokenService.hash(refreshToken)
        let now = env.now()
        let outcome: Outcome = try store.write {
            guard let record = try store.refreshToken(hash: tokenHash), record.clientID == client.clientID else {
                return .refused(.invalidGrant(detail: "unknown refresh token or another client's"))
            }
            if record.rotatedAt != nil {
                // Reuse of a rotated-out token: the family is compromised.
                try store.revokeFamily(id: record.familyID, at: now)
                return .refused(.invalidGrant(detail: "refresh token reused"))
            }
            guard record.expiresAt > now, !(try store.isFamilyRevoked(id: record.familyID)) else {
                return .refused(.invalidGrant(detail: "refresh token expired or revoked"))
            }
            var scope = record.scope
            if let requestedScope {
                guard let requested = Scopes.parse(requestedScope), requested.allSatisfy(record.scope.contains) else {
                    return .refused(.invalidScope())
                }
                scope = requested
            }
            guard try store.rotateRefreshToken(hash: tokenHash, at: now) else {
                try store.revokeFamily(id: record.familyID, at: now)
                return .refused(.invalidGrant(detail: "refresh token reused concurrently"))
            }
            // The user exists: deleting a user deletes its refresh tokens (foreign key, ON DELETE CASCADE).
            try store.touchConnection(userID: record.userID, clientID: client.clientID, accessTime: now)
            let refresh = try storeRefreshToken(client: client, userID: record.userID, scope: record.scope, authTime: record.authTime,
                                                familyID: record.familyID, issue: true)
            // OIDC Core §12.2: a refreshed response "might not contain an id_token"; the client has one.
            return .issued(Issuance(client: client, userID: record.userID, user: nil, scope: scope, authTime: record.authTime, familyID: record.familyID,
                                    nonce: nil, refreshToken: refresh, idToken: false))
        }
        switch outcome {
        case let .issued(issuance): return try sign(issuance)
        case let .refused(error): throw error
        }
    }

    /// Whether the client gets a refresh token: it registered the grant, its
    /// refresh_token_ttl is not 0, and the user granted offline_access or the
    /// client is configured to always get one.
    func issuesRefreshToken(_ client: Client, scope: [String]) -> Bool {
        client.grantTypes.contains("refresh_token") && client.refreshTokenTTL > 0
            && (scope.contains("offline_access") || client.attributes["always_issue_refresh_token"]?.boolValue == true)
    }

    /// Stores a new refresh token of the family (inside the grant's transaction).
    func storeRefreshToken(client: Client, userID: String, scope: [String], authTime: Int64, familyID: String, issue: Bool) throws -> String? {
        guard issue else { return nil }
        let refresh = env.randomToken(prefix: "lkr_", bytes: 32)
        let now = env.now()
        try store.insertRefreshToken(RefreshTokenRecord(tokenHash: TokenService.hash(refresh), familyID: familyID, clientID: client.clientID,
                                                        userID: userID, scope: scope, authTime: authTime, createdAt: now,
                                                        expiresAt: now + Int64(client.refreshTokenTTL) * 1000))
        return refresh
    }

    /// Signs the access token (and the ID token) of a committed grant.
    func sign(_ i: Issuance) throws -> TokenResponse {
        let access = try tokens.issue(client: i.client, subject: i.userID, scope: i.scope, ttl: i.client.accessTokenTTL,
                                      authTime: i.authTime, grantID: i.familyID)
        var response = TokenResponse(accessToken: access.token, expiresIn: i.client.accessTokenTTL, scope: i.scope)
        response.refreshToken = i.refreshToken
        if i.idToken, let user = i.user {
            response.idToken = try idToken(client: i.client, user: user, scope: i.scope, authTime: i.authTime, nonce: i.nonce, accessToken: access.token)
        }
        return response
    }

    /// OIDC Core §2: `at_hash` is the left half of the access token's hash
    /// with the ID token's algorithm (SHA-256; SHA-512 for EdDSA).
    func idToken(client: Client, user: User, scope: [String], authTime: Int64, nonce: String?, accessToken: String) throws -> String {
        let (kid, key) = try keys.signingKey()
        let digest = key.algorithm == .edDSA ? Digest.sha512(Array(accessToken.utf8)) : Digest.sha256(accessToken)
        let now = env.nowSeconds
        var claims: [(String, JSON)] = [
            ("iss", .string(env.issuer)), ("sub", .string(user.id)), ("aud", .string(client.clientID)), ("azp", .string(client.clientID)),
            ("exp", .int(now + Int64(client.accessTokenTTL))), ("iat", .int(now)), ("auth_time", .int(authTime)),
            ("at_hash", .string(Base64.urlEncode(Array(digest.prefix(digest.count / 2))))),
        ]
        if let nonce { claims.append(("nonce", .string(nonce))) }
        claims += TokenService.userClaims(user, scope: scope)
        return try JWS.sign(payload: .object(claims), key: key, kid: kid, typ: "JWT")
    }

    /// Profile and email claims per granted scope (OIDC Core §5.4).
    static func userClaims(_ user: User, scope: [String]) -> [(String, JSON)] {
        var claims: [(String, JSON)] = []
        if scope.contains("profile") {
            claims.append(("preferred_username", .string(user.username)))
            if let name = user.name { claims.append(("name", .string(name))) }
        }
        if scope.contains("email"), let email = user.email {
            claims.append(("email", .string(email)))
            claims.append(("email_verified", false))
        }
        return claims
    }

    /// OIDC Core §5.3: the claims of the user behind a token with `openid`.
    public func userinfo(_ token: String?) throws -> JSON {
        let (claims, _) = try authenticateBearer(token, requiredScope: [])
        guard claims.grantID != nil else { throw OAuthError.invalidToken(description: "The access token was not issued to a user.") }
        guard let user = try store.user(id: claims.subject) else { throw OAuthError.invalidToken() }
        guard claims.scope.contains("openid") else { throw OAuthError.insufficientScope("openid") }
        return .object([("sub", .string(user.id))] + TokenService.userClaims(user, scope: claims.scope))
    }

    /// Introspection of an opaque refresh token (RFC 7662).
    func introspectRefresh(_ token: String, caller: Client) throws -> JSON? {
        guard token.hasPrefix("lkr_"), let record = try store.refreshToken(hash: TokenService.hash(token)) else { return nil }
        guard record.rotatedAt == nil, record.expiresAt > env.now(), !(try store.isFamilyRevoked(id: record.familyID)),
              let owner = try store.client(record.clientID), owner.enabled,
              owner.clientID == caller.clientID || (caller.scope.contains("tokens:introspect") && owner.organizationID == caller.organizationID)
        else { return ["active": false] }
        return [
            "active": true, "scope": .string(Scopes.join(record.scope)), "client_id": .string(record.clientID), "sub": .string(record.userID),
            "token_type": "refresh_token", "exp": .int(record.expiresAt / 1000), "iat": .int(record.createdAt / 1000),
            "iss": .string(env.issuer),
        ]
    }

    /// Revocation of a refresh token revokes its family (RFC 7009 §2.1).
    func revokeRefresh(_ token: String, caller: Client) throws -> Bool {
        guard token.hasPrefix("lkr_"), let record = try store.read({ try store.refreshToken(hash: TokenService.hash(token)) }) else { return false }
        guard record.clientID == caller.clientID else { return true }
        try store.write { try store.revokeFamily(id: record.familyID, at: env.now()) }
        return true
    }
}

/// The apps a user has connected (SPEC 5.2).
public struct ConnectionService {
    let env: Environment
    let store: Store

    public init(env: Environment, store: Store) {
        self.env = env
        self.store = store
    }

    public func list(userID: String, limit: Int = 250, offset: Int = 0) throws -> [(UserConnection, Client)] {
        try store.read {
            try store.connections(userID: userID, limit: limit, offset: offset).connections.compactMap { c in
                try store.client(c.clientID).map { (c, $0) }
            }
        }
    }

    public func get(userID: String, clientID: String) throws -> (UserConnection, Client)? {
        try store.read {
            guard let c = try store.connection(userID: userID, clientID: clientID), let client = try store.client(clientID) else { return nil }
            return (c, client)
        }
    }

    /// Revokes every token of the user for the client and forgets the consent.
    public func delete(userID: String, clientID: String) throws -> Bool {
        try store.write {
            guard try store.connection(userID: userID, clientID: clientID) != nil else { return false }
            try store.revokeFamilies(userID: userID, clientID: clientID, at: env.now())
            try store.deleteConnection(userID: userID, clientID: clientID)
            return true
        }
    }
}

import Common

/// A successful token response (RFC 6749 §5.1).
public struct TokenResponse: Sendable, Equatable {
    public var accessToken: String
    public var expiresIn: Int
    public var scope: [String]
    public var refreshToken: String?
    public var idToken: String?
    /// Bound to a DPoP key (RFC 9449 §5): token_type DPoP.
    public var dpopBound = false

    /// The response body (RFC 6749 §5.1), written directly: every token request sends one.
    public var serialized: [UInt8] {
        var body = JSONObjectWriter(capacity: accessToken.utf8.count + (refreshToken?.utf8.count ?? 0) + (idToken?.utf8.count ?? 0) + 128)
        body.string("access_token", accessToken)
        body.string("token_type", dpopBound ? "DPoP" : "Bearer")
        body.int("expires_in", Int64(expiresIn))
        body.string("scope", Scopes.join(scope))
        if let refreshToken { body.string("refresh_token", refreshToken) }
        if let idToken { body.string("id_token", idToken) }
        return body.finish()
    }
}

/// Tokens independent of HTTP: what the grants (`Grants/`) sign with,
/// introspection (RFC 7662), revocation (RFC 7009) and bearer
/// authentication (RFC 6750).
public struct TokenService {
    let env: Environment
    let store: Store
    let tokens: AccessTokens
    let keys: KeyRing

    public init(env: Environment, store: Store, keys: KeyRing, cache: VerifiedTokenCache? = nil) {
        self.env = env
        self.store = store
        self.tokens = AccessTokens(env: env, store: store, keys: keys, cache: cache)
        self.keys = keys
    }

    /// RFC 7662 §2.2. A client may introspect tokens issued to itself; a
    /// client holding `tokens:introspect` may introspect any token of its
    /// organization. Everything else is `{"active": false}`.
    public func introspect(token: String, caller: Client) throws -> JSON {
        if let refresh = try introspectRefresh(token, caller: caller) { return refresh }
        guard let (claims, owner) = try tokens.validate(token) else { return ["active": false] }
        let allowed = owner.clientID == caller.clientID
            || (caller.scope.contains("tokens:introspect") && owner.organizationID == caller.organizationID)
        guard allowed else { return ["active": false] }
        var members: [(String, JSON)] = [
            ("active", true), ("scope", .string(Scopes.join(claims.scope))), ("client_id", .string(claims.clientID)),
            ("token_type", claims.jkt == nil ? "Bearer" : "DPoP"), ("exp", .int(claims.expiresAt)), ("iat", .int(claims.issuedAt)),
            ("sub", .string(claims.subject)), ("aud", .string(claims.audience)), ("iss", .string(claims.issuer)),
            ("jti", .string(claims.jti)),
        ]
        if let authTime = claims.authTime { members.append(("auth_time", .int(authTime))) }
        if let jkt = claims.jkt { members.append(("cnf", ["jkt": .string(jkt)])) }
        return .object(members)
    }

    /// RFC 7009 §2.1: revokes a token issued to the calling client; any other
    /// token (unknown, foreign, already invalid) is answered the same way.
    /// A public client's token bound to a DPoP key (RFC 9449 §5) is revoked
    /// only with `proof`, a verified proof of that key, whose `jti` is
    /// recorded with the revocation: the client id alone is anyone's, and
    /// without the key a stolen token could not be used, so it must not end
    /// its family either (attacker review, session 24). Without one the
    /// client is told to send one (`invalid_dpop_proof`, 400: the token is its
    /// own). A confidential client has authenticated itself.
    /// `proof`: the request's DPoP proof, verified only when a bound token of
    /// a public caller needs it (an anonymous caller naming a public client
    /// makes no signature check for a token that is unknown, another client's
    /// or unbound: review, session 25).
    public func revoke(token: String, caller: Client, proof: () throws -> DPoPProof? = { nil }) throws {
        if try revokeRefresh(token, caller: caller, proof: proof) { return }
        guard let (claims, _) = try store.read({ try tokens.validate(token) }), claims.clientID == caller.clientID else { return }
        let spent = try TokenService.proofForRevoking(boundTo: claims.jkt, caller: caller, proof: proof)
        try store.write {
            if let spent, try !store.useProof(spent) { throw OAuthError.proofReplayed }
            try store.revokeAccessToken(jti: claims.jti, expiresAt: claims.expiresAt * 1000, now: env.now())
        }
    }

    /// The proof a revocation of a token bound to `jkt` must record: nil when
    /// none is needed (an unbound token, a confidential caller); a refusal
    /// when the public caller sent none, or one of another key.
    static func proofForRevoking(boundTo jkt: String?, caller: Client, proof: () throws -> DPoPProof?) throws -> DPoPProof? {
        guard let jkt, caller.isPublic else { return nil }
        guard let proof = try proof(), proof.jkt == jkt else {
            throw OAuthError("invalid_dpop_proof", status: 400, "The token is bound to a DPoP key: send a proof of that key.")
        }
        return proof
    }

    /// The API caller behind a bearer token (RFC 6750). What it may do
    /// (`requireScope`) is asked after its binding is checked (a DPoP-bound
    /// token's proof): who calls comes before what the token allows, so a
    /// stolen bound token sent without its key learns nothing of its scope.
    /// With `clientOnly` (every management API, SPEC 3) only a token issued to
    /// the client itself through client_credentials is accepted: a user's
    /// token is `invalid_token`, whatever its scope.
    public func authenticateBearer(_ token: String?, clientOnly: Bool = false) throws -> (claims: AccessTokenClaims, client: Client) {
        guard let token, !token.isEmpty else { throw OAuthError.invalidToken(missing: true) }
        switch try tokens.standing(token) {
        case let .usable(claims, client):
            if clientOnly && !claims.isClientCredentials {
                throw OAuthError.invalidToken(description: "A token issued to a user cannot call this API; use the client's own token.")
            }
            return (claims, client)
        // Said on the refusal itself, so a surface that names it does not verify the token a second time to find
        // out (anyone may send a forged token, and each costs a signature check).
        case let .ofDeletedClient(claims): throw OAuthError.invalidToken().ofDeletedClient(claims)
        case .unusable: throw OAuthError.invalidToken()
        }
    }

    /// RFC 6750 §3.1: the token must hold one of `scopes` (any when empty).
    public static func requireScope(_ scopes: [String], of claims: AccessTokenClaims) throws {
        if !scopes.isEmpty && !scopes.contains(where: claims.scope.contains) { throw OAuthError.insufficientScope(Scopes.join(scopes)) }
    }
}

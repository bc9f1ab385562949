import Common
import JOSE
import Cryptography

/// Tokens issued to users outside the token endpoint's grants: userinfo
/// (OIDC Core §5.3), and introspection and revocation of refresh tokens
/// (RFC 7662, RFC 7009 §2.1). The grants themselves are in `Grants/`.
extension TokenService {
    static func hash(_ value: String) -> String { Base64.urlEncode(Digest.sha256(value)) }

    /// OIDC Core §5.3: the claims of the user behind a token with `openid`.
    /// The userinfo answer (OIDC Core §5.3.2): the claims as JSON, or as a
    /// JWT signed with the client's `userinfo_signed_response_alg` key (with
    /// `iss` and `aud`) when it registered one.
    public enum Userinfo: Sendable {
        case json(JSON)
        case jwt(String)
    }

    /// The answer for a token `authenticateBearer` accepted (and, if bound to a DPoP key, whose proof the caller checked).
    public func userinfo(claims: AccessTokenClaims, client: Client) throws -> Userinfo {
        guard claims.grantID != nil else { throw OAuthError.invalidToken(description: "The access token was not issued to a user.") }
        guard let user = try store.user(id: claims.subject) else { throw OAuthError.invalidToken() }
        guard claims.scope.contains("openid") else { throw OAuthError.insufficientScope("openid") }
        let profile = UserProfile.needed(for: claims.scope) ? try store.userProfile(userID: user.id) : nil
        let released: [(String, JSON)] = [("sub", .string(user.id))] + UserProfile.claims(user, profile, scope: claims.scope)
        guard let alg = client.userinfoAlg else { return .json(.object(released)) }
        let (kid, key) = try keys.signingKey(for: client.signingAlgorithm(alg))
        let signed: [(String, JSON)] = released + [("iss", .string(env.issuer)), ("aud", .string(client.clientID))]
        return .jwt(try JWS.sign(payload: .object(signed), key: key, kid: kid, typ: "JWT"))
    }

    /// Introspection of an opaque refresh token (RFC 7662).
    func introspectRefresh(_ token: String, caller: Client) throws -> JSON? {
        guard token.hasPrefix("lkr_"), let record = try store.refreshToken(hash: TokenService.hash(token)) else { return nil }
        guard record.rotatedAt == nil, record.expiresAt > env.now(), !(try store.isFamilyRevoked(id: record.familyID)),
              let owner = try store.client(record.clientID), owner.enabled,
              owner.clientID == caller.clientID || (caller.scope.contains("tokens:introspect") && owner.organizationID == caller.organizationID)
        else { return ["active": false] }
        var answer: [(String, JSON)] = [
            ("active", true), ("scope", .string(Scopes.join(record.scope))), ("client_id", .string(record.clientID)), ("sub", .string(record.userID)),
            ("token_type", "refresh_token"), ("exp", .int(record.expiresAt / 1000)), ("iat", .int(record.createdAt / 1000)),
            ("iss", .string(env.issuer)),
        ]
        // A public client's refresh token bound to its DPoP key (RFC 9449 §5) says so, as a bound access token does (§6.2).
        if let jkt = record.jkt { answer.append(("cnf", ["jkt": .string(jkt)])) }
        return .object(answer)
    }

    /// Revocation of a refresh token revokes its family (RFC 7009 §2.1); a
    /// public client's bound one only with a proof of its key (`revoke`).
    func revokeRefresh(_ token: String, caller: Client, proof: () throws -> DPoPProof?) throws -> Bool {
        guard token.hasPrefix("lkr_"), let record = try store.read({ try store.refreshToken(hash: TokenService.hash(token)) }) else { return false }
        guard record.clientID == caller.clientID else { return true }
        let spent = try TokenService.proofForRevoking(boundTo: record.jkt, caller: caller, proof: proof)
        try store.write {
            if let spent, try !store.useProof(spent) { throw OAuthError.proofReplayed }
            try store.revokeFamily(id: record.familyID, at: env.now())
        }
        return true
    }
}

import Common
import Cryptography

/// RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6): a code is redeemed once, by
/// the client it was issued to, with the redirect URI of its request and
/// the verifier of its challenge; a second redemption revokes what the first
/// issued (§4.1.2). The grant's rows (the code consumed, the family, the
/// refresh token, the connection's use) are one transaction; the tokens are
/// signed after it commits.
public struct AuthorizationCodeGrant: Grant {
    public let type = GrantType.authorizationCode
    public let allowsPublicClients = true

    public init() {}

    public func exchange(_ request: TokenRequest, client: Client, service s: TokenService) throws -> TokenResponse {
        let code = try request.required("code")
        let codeHash = TokenService.hash(code)
        let now = s.env.now()
        let outcome: TokenService.Outcome = try s.store.write {
            // The code is read and, when unspent and this client's (with the key it is bound to), consumed in one
            // step (one round trip on PostgreSQL); a refusal below gives it back in the same transaction.
            let familyID = s.env.randomToken(bytes: 16)
            guard let claim = try s.store.claimCode(hash: codeHash, clientID: client.clientID, jkt: request.dpopJKT, at: now,
                                                    familyID: familyID) else {
                return .refused(.invalidGrant(detail: "unknown code or another client's"))
            }
            let outcome = try redeem(claim, familyID: familyID, request: request, client: client, service: s, now: now)
            if claim.claimed, case .refused = outcome { try s.store.unclaimCode(hash: codeHash) }
            return outcome
        }
        switch outcome {
        case let .issued(issuance): return try s.sign(issuance)
        case let .refused(error): throw error
        }
    }

    public func namesItsOwn(_ request: TokenRequest, client: Client, service s: TokenService) throws -> Bool {
        guard let code = request["code"] else { return true }
        return try s.store.code(hash: TokenService.hash(code))?.clientID == client.clientID
    }

    /// RFC 7636 §4.6 (S256): whether `verifier` is the one `challenge` was made from, compared in constant time.
    static func verifier(_ verifier: String?, matches challenge: String) -> Bool {
        guard let verifier, AuthorizationService.isValidCodeChallenge(verifier) else { return false }
        return Digest.constantTimeEqual(Array(Base64.urlEncode(Digest.sha256(verifier)).utf8), Array(challenge.utf8))
    }

    /// The checks of a redemption on the code as its claim found it, in
    /// their order, and the grant when it passes them all.
    private func redeem(_ claim: Claimed<AuthorizationCodeRecord>, familyID: String, request: TokenRequest, client: Client,
                        service s: TokenService, now: Int64) throws -> TokenService.Outcome {
        let redirectURI = request["redirect_uri"], verifier = request["code_verifier"]
        let record = claim.record
        guard record.clientID == client.clientID else { return .refused(.invalidGrant(detail: "unknown code or another client's")) }
        // RFC 9449 §10: a code bound to a DPoP key is redeemed only with a proof of that key (and stays unspent
        // otherwise); checked before replay detection, so without the key a replay cannot revoke the grant either.
        if let bound = record.dpopJKT, request.dpopJKT != bound {
            return .refused(OAuthError("invalid_dpop_proof", status: 400, "The code is bound to a DPoP key: send a proof of that key."))
        }
        // The proof is recorded once the code is known to be this client's (RFC 9449 §11.1; nothing stored for a made-up one).
        guard try s.useProof(request) else { return .refused(.proofReplayed) }
        // RFC 6749 §4.1.2: a second redemption revokes what the first one issued; of a code with PKCE, only one
        // that holds its verifier. The code alone (kept in a browser's history or a log for as long as a spent code
        // is kept) ended a public client's grant, DPoP-bound or not (attacker review, session 24).
        let provesRequest = record.codeChallenge.map { AuthorizationCodeGrant.verifier(verifier, matches: $0) } ?? true
        if record.consumedAt != nil {
            if let family = record.familyID, provesRequest { try s.store.revokeFamily(id: family, at: now) }
            return .refused(.invalidGrant(detail: "code replayed"))
        }
        if !claim.claimed {
            // Unspent when read, yet consumed by a redemption that won the race to it (another node's, which held
            // the row until it committed): a second redemption all the same, with the family the winner wrote, now
            // committed (attacker review, session 18: the winner's tokens stayed live).
            if provesRequest { try s.revokeWinnersFamily(try s.store.code(hash: record.codeHash)?.familyID, at: now) }
            return .refused(.invalidGrant(detail: "code consumed concurrently"))
        }
        guard record.expiresAt > now else { return .refused(.invalidGrant(detail: "code expired")) }
        if record.redirectURISent || redirectURI != nil {
            guard redirectURI == record.redirectURI else { return .refused(.invalidGrant("redirect_uri does not match the authorization request.")) }
        }
        if record.codeChallenge != nil {
            guard provesRequest else { return .refused(.invalidGrant("The code_verifier does not match the code_challenge.")) }
        } else if verifier != nil {
            return .refused(.invalidGrant("No code_challenge was sent with the authorization request."))
        } else if client.mustUsePKCE {
            // Made public (or FAPI 2.0) since the code was issued: without a challenge, the code alone would do.
            return .refused(.invalidGrant("This client must use PKCE: the authorization request sent no code_challenge."))
        }
        // The client as it is now, as for issuing the code (`answerableClient`), which a consent racing the change
        // that withdrew the client's codes may have passed just before it (review, session 25): the redirect URI still
        // registered, and the request pushed if the client must push its requests now (RFC 9126 §6, FAPI 2.0).
        guard AuthorizationService.redirectURIMatches(record.redirectURI, registered: client.redirectURIs) else {
            return .refused(.invalidGrant("The code's redirect URI is no longer registered for the client."))
        }
        if client.mustPushRequests && !record.pushed {
            return .refused(.invalidGrant("This client must push its authorization requests: the code's request was not pushed."))
        }
        // Only scopes the client still holds are issued (one taken off it since the code was made is not).
        let scope = record.scope.filter(client.scope.contains)
        guard !scope.isEmpty else { return .refused(.invalidGrant(detail: "the client no longer holds any scope of the code")) }
        // SPEC 5.2: a grant exists only with its connection; a code the user
        // disconnected meanwhile is gone (deleteConnection), and this is the
        // second line of that rule.
        guard try s.store.connection(userID: record.userID, clientID: client.clientID) != nil else {
            return .refused(.invalidGrant(detail: "the user disconnected the client"))
        }
        guard let user = try s.store.user(id: record.userID) else { return .refused(.invalidGrant(detail: "user gone")) }
        // Back-Channel Logout 1.0 §2.7: a grant without offline_access ends with the session it was made in.
        let endsWithSession = scope.contains("offline_access") ? nil : record.sid
        let refresh = try s.openFamily(familyID, client: client, userID: user.id, scope: scope, authTime: record.authTime, sid: endsWithSession,
                                       jkt: request.dpopJKT)
        return .issued(TokenService.Issuance(client: client, userID: user.id, user: user, scope: scope, authTime: record.authTime, familyID: familyID,
                                nonce: record.nonce, refreshToken: refresh, idToken: scope.contains("openid"), sid: record.sid,
                                acr: record.claims?.wantsACR == true, jkt: request.dpopJKT,
                                profile: try s.profileForIDToken(user, scope: scope)))
    }
}

extension GrantType {
    public static let authorizationCode = GrantType(rawValue: "authorization_code")
}

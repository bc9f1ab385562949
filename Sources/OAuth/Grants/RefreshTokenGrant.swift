import Common

/// RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2): each
/// refresh token is used once and replaced; presenting a rotated-out token
/// revokes its whole family. A narrower scope may be asked for, never a
/// wider one. A FAPI 2.0 client may retry with the token a rotation replaced,
/// within `retryWindowMillis` of that rotation, while the token it got
/// instead is unused (§5.3.2.1 item 10: rotation only where a retry after a
/// lost response succeeds): that unused token is withdrawn and a new one
/// issued. Otherwise the old one is reuse like any other, and so is a
/// withdrawn token presented again.
public struct RefreshTokenGrant: Grant {
    public let type = GrantType.refreshToken
    public let allowsPublicClients = true

    public init() {}

    /// How long after a rotation a FAPI 2.0 client may retry with the token it replaced (as Okta's grace period at most).
    public static let retryWindowMillis: Int64 = 60_000

    public func exchange(_ request: TokenRequest, client: Client, service s: TokenService) throws -> TokenResponse {
        let refreshToken = try request.required("refresh_token")
        let tokenHash = TokenService.hash(refreshToken)
        let now = s.env.now()
        let outcome: TokenService.Outcome = try s.store.write {
            // The token is read and, when current and this client's (with the key it is bound to), rotated in one
            // step (one round trip on PostgreSQL); a refusal below gives the rotation back in the same transaction.
            guard let claim = try s.store.claimRefreshToken(hash: tokenHash, clientID: client.clientID, jkt: request.dpopJKT, at: now) else {
                return .refused(.invalidGrant(detail: "unknown refresh token or another client's"))
            }
            let outcome = try rotate(claim, request: request, client: client, service: s, now: now)
            if claim.claimed, case .refused = outcome { try s.store.unclaimRefreshToken(hash: tokenHash) }
            return outcome
        }
        switch outcome {
        case let .issued(issuance): return try s.sign(issuance)
        case let .refused(error): throw error
        }
    }

    public func namesItsOwn(_ request: TokenRequest, client: Client, service s: TokenService) throws -> Bool {
        guard let token = request["refresh_token"] else { return true }
        return try s.store.refreshToken(hash: TokenService.hash(token))?.clientID == client.clientID
    }

    /// The checks of a rotation on the token as its claim found it, in their
    /// order, and the new token when it passes them all.
    private func rotate(_ claim: Claimed<RefreshTokenRecord>, request: TokenRequest, client: Client, service s: TokenService,
                        now: Int64) throws -> TokenService.Outcome {
        var record = claim.record
        // A FAPI client's retry sent while the first request was still running: on PostgreSQL its claim read the
        // token current, then waited for that request's commit and rotated nothing. Read again (that commit is seen
        // now): the retry it is, not a race lost (attacker review of the change, session 30).
        if client.fapi2, !claim.claimed, record.rotatedAt == nil, let fresh = try s.store.refreshToken(hash: record.tokenHash), fresh.rotatedAt != nil {
            record = fresh
        }
        guard record.clientID == client.clientID else { return .refused(.invalidGrant(detail: "unknown refresh token or another client's")) }
        // RFC 9449 §5: a public client's bound refresh token is used only with a proof of the same key. Checked
        // before reuse detection: without the key a stolen, rotated-out token cannot revoke its family either.
        if let bound = record.jkt, bound != request.dpopJKT {
            return .refused(OAuthError("invalid_dpop_proof", status: 400, "This refresh token is bound to a DPoP key: prove it."))
        }
        guard try s.useProof(request) else { return .refused(.proofReplayed) }
        if let rotatedAt = record.rotatedAt, !client.fapi2 || record.withdrawnAt != nil || now - rotatedAt > Self.retryWindowMillis {
            // Reuse of a rotated-out token (or of one a retry withdrew): the family is compromised.
            try s.store.revokeFamily(id: record.familyID, at: now)
            return .refused(.invalidGrant(detail: "refresh token reused"))
        }
        guard record.expiresAt > now, !(try s.store.isFamilyRevoked(id: record.familyID)) else {
            return .refused(.invalidGrant(detail: "refresh token expired or revoked"))
        }
        // The family's scopes the client still holds (one taken off it since is not issued again).
        let held = record.scope.filter(client.scope.contains)
        guard !held.isEmpty else { return .refused(.invalidGrant(detail: "the client no longer holds any scope of the grant")) }
        var scope = held
        if let requestedScope = request["scope"] {
            guard let requested = Scopes.parse(requestedScope), requested.allSatisfy(held.contains) else {
                return .refused(.invalidScope())
            }
            scope = requested
        }
        // The grant's session bound, kept from its first token on (a device grant's is its redemption's, not the
        // browser's sign-in: review of time handling, session 32). A token stored before schema 22, or a grant whose
        // client no longer holds offline_access, is bound by its auth_time's session. A rotation that could issue
        // only a token already expired is refused (it answered 200 with one).
        let sessionEndsAt = held.contains("offline_access") ? nil
            : record.sessionEndsAt ?? TokenService.sessionEnd(scope: held, signedInAt: record.authTime)
        let expiresAt = s.refreshTokenExpiry(client, sessionEndsAt: sessionEndsAt)
        guard expiresAt > now else { return .refused(.invalidGrant(detail: "the sign-in the grant came from has ended")) }
        if record.rotatedAt != nil {
            // A FAPI 2.0 client's retry (checked last: nothing is withdrawn for a refused one), or reuse.
            guard try s.store.withdrawUnusedSuccessor(of: record, at: now) else {
                try s.store.revokeFamily(id: record.familyID, at: now)
                return .refused(.invalidGrant(detail: "refresh token reused"))
            }
        } else if !claim.claimed {
            // Current when read, yet rotated by a transaction that won the race to it.
            try s.store.revokeFamily(id: record.familyID, at: now)
            return .refused(.invalidGrant(detail: "refresh token reused concurrently"))
        }
        // The user exists: deleting a user deletes its refresh tokens (foreign key, ON DELETE CASCADE).
        try s.store.touchConnection(userID: record.userID, clientID: client.clientID, accessTime: now)
        let refresh = try s.storeRefreshToken(client: client, userID: record.userID, scope: held, authTime: record.authTime,
                                              familyID: record.familyID, expiresAt: expiresAt, sessionEndsAt: sessionEndsAt,
                                              jkt: record.jkt ?? request.dpopJKT, parent: record.tokenHash)
        // OIDC Core §12.2: a refreshed response "might not contain an id_token"; the client has one.
        return .issued(TokenService.Issuance(client: client, userID: record.userID, user: nil, scope: scope, authTime: record.authTime,
                                             familyID: record.familyID, nonce: nil, refreshToken: refresh, idToken: false, sid: nil,
                                             acr: false, jkt: request.dpopJKT))
    }
}

extension GrantType {
    public static let refreshToken = GrantType(rawValue: "refresh_token")
}

import Common

/// RFC 8628 §3.4, §3.5: the device polls with its device code until the
/// user has answered. Each poll is one transaction: a poll sooner than the
/// code's interval is `slow_down` (and the interval grows by 5 seconds), a
/// pending code is `authorization_pending`, a denied one `access_denied`,
/// an expired one `expired_token`; an approved code is redeemed once, with
/// the connection the approval recorded still there (SPEC 5.2), into a token
/// family as a redeemed authorization code is; presented again, it revokes
/// that family.
public struct DeviceCodeGrant: Grant {
    public let type = GrantType.deviceCode
    public let allowsPublicClients = true

    public init() {}

    public func namesItsOwn(_ request: TokenRequest, client: Client, service s: TokenService) throws -> Bool {
        guard let code = request["device_code"] else { return true }
        return try s.store.deviceCode(hash: AuthorizationService.hash(code))?.clientID == client.clientID
    }

    public func exchange(_ request: TokenRequest, client: Client, service s: TokenService) throws -> TokenResponse {
        let hash = AuthorizationService.hash(try request.required("device_code"))
        let now = s.env.now()
        let outcome: TokenService.Outcome = try s.store.write {
            guard let record = try s.store.deviceCode(hash: hash), record.clientID == client.clientID else {
                return .refused(.invalidGrant(detail: "unknown device code or another client's"))
            }
            guard try s.useProof(request) else { return .refused(.proofReplayed) }
            // A redeemed code presented again is reuse past its expiry too, as an authorization code's replay is
            // (review of time handling, session 32: it was expired_token and revoked nothing), for as long as rows
            // are kept (`keptAfterExpiryMillis`): a row left over longer, until the next device authorization
            // purges it, is not a stale code's way to end a device's grant days later (review of the change).
            let replayable = record.status == .redeemed && now < record.expiresAt + DeviceCodeRecord.keptAfterExpiryMillis
            guard record.expiresAt > now || replayable else {
                return .refused(OAuthError("expired_token", status: 400, "The device code has expired."))
            }
            switch record.status {
            case .pending:
                guard try s.store.pollDeviceCode(hash: hash, now: now) else {
                    return .refused(OAuthError("slow_down", status: 400, "Polling too often: wait 5 more seconds between requests."))
                }
                return .refused(OAuthError("authorization_pending", status: 400, "The user has not answered yet."))
            case .denied:
                return .refused(OAuthError("access_denied", status: 400, "The user denied the request."))
            case .redeemed:
                // As for an authorization code (RFC 6749 §4.1.2, RFC 9700 §4.5): a device code presented again
                // may have been stolen, and which of the two holders is the device is unknown, so what it issued is revoked.
                // Redeemed with a DPoP key, only by a holder of that key: the device code alone (from a device's log,
                // say) does not end a grant whose tokens it could never use (review, session 25).
                if let bound = record.dpopJKT, request.dpopJKT != bound {
                    return .refused(OAuthError("invalid_dpop_proof", status: 400, "The device code was redeemed with a DPoP key: send a proof of that key."))
                }
                if let family = record.familyID { try s.store.revokeFamily(id: family, at: now) }
                return .refused(.invalidGrant(detail: "device code already redeemed"))
            case .approved:
                break
            }
            // Only scopes the client still holds are issued (one taken off it since the user approved is not).
            let scope = record.scope.filter(client.scope.contains)
            guard !scope.isEmpty else { return .refused(.invalidGrant(detail: "the client no longer holds any scope of the code")) }
            guard let userID = record.userID, let authTime = record.authTime,
                  try s.store.connection(userID: userID, clientID: client.clientID) != nil,
                  let user = try s.store.user(id: userID) else {
                return .refused(.invalidGrant(detail: "the user disconnected the client"))
            }
            let familyID = s.env.randomToken(bytes: 16)
            guard try s.store.redeemDeviceCode(hash: hash, familyID: familyID, jkt: request.dpopJKT) else {
                // Approved when read, yet redeemed by a request that won the race to it (on another node): revoked
                // as a device code presented again is.
                try s.revokeWinnersFamily(try s.store.deviceCode(hash: hash)?.familyID, at: now)
                return .refused(.invalidGrant(detail: "device code redeemed concurrently"))
            }
            // Approved in a browser, used on another device: the grant does not end with that browser's session,
            // and without offline_access its refresh token lives a session's length from now, not from that sign-in.
            let refresh = try s.openFamily(familyID, client: client, userID: user.id, scope: scope, authTime: authTime, sid: nil,
                                           jkt: request.dpopJKT, signedInAt: now / 1000)
            return .issued(TokenService.Issuance(client: client, userID: user.id, user: user, scope: scope, authTime: authTime,
                                                 familyID: familyID, nonce: nil, refreshToken: refresh, idToken: scope.contains("openid"),
                                                 sid: nil, acr: false, jkt: request.dpopJKT,
                                                 profile: try s.profileForIDToken(user, scope: scope)))
        }
        switch outcome {
        case let .issued(issuance): return try s.sign(issuance)
        case let .refused(error): throw error
        }
    }
}

extension GrantType {
    public static let deviceCode = GrantType(rawValue: "urn:ietf:params:oauth:grant-type:device_code")
}

import Common
import OAuth

extension SharedRows {
    public static let authorizationRequestSQL = "SELECT id_hash, params, created_at, expires_at, answered_at FROM authorization_requests WHERE id_hash = ?"

    /// A row of `authorizationRequestSQL`; nil when its parameters do not parse.
    public static func authorizationRequest(_ r: some SQLRowValues) -> StoredAuthorizationRequest? {
        guard let json = try? JSON.parse(r.string(1)), let request = AuthorizationRequest(json: json) else { return nil }
        return StoredAuthorizationRequest(idHash: r.string(0), request: request, createdAt: r.int(2), expiresAt: r.int(3), answeredAt: r.optionalInt(4))
    }

    /// A stored `claims` request (its JSON text), or nil.
    public static func claims(_ text: String?) -> ClaimsRequest? {
        text.flatMap { try? JSON.parse(Array($0.utf8)) }.flatMap(ClaimsRequest.init(json:))
    }
}

/// The updates that take a single-use grant record: each store sends them its
/// own way (SQLite after the read, PostgreSQL in the read's round trip).
/// Only its client, with the DPoP key it is bound to, takes one: another
/// caller's refused request writes nothing (and so never conflicts with the
/// owner's, even on a store running snapshot isolation).
public enum ClaimSQL {
    public static let consumeCode = """
        UPDATE authorization_codes SET consumed_at = ?, family_id = ?
        WHERE code_hash = ? AND consumed_at IS NULL AND client_id = ? AND (dpop_jkt IS NULL OR dpop_jkt = ?)
        """
    public static func consumeCodeArguments(hash: String, clientID: String, jkt: String?, at: Int64, familyID: String) -> [SQLArgument] {
        [.int(at), .text(familyID), .text(hash), .text(clientID), SQLArgument(jkt)]
    }
    public static let rotateRefreshToken = """
        UPDATE refresh_tokens SET rotated_at = ?
        WHERE token_hash = ? AND rotated_at IS NULL AND client_id = ? AND (dpop_jkt IS NULL OR dpop_jkt = ?)
        """
    public static func rotateRefreshTokenArguments(hash: String, clientID: String, jkt: String?, at: Int64) -> [SQLArgument] {
        [.int(at), .text(hash), .text(clientID), SQLArgument(jkt)]
    }
}

/// Revocations, pending authorization requests, codes, token families and refresh tokens (GrantStorage), on both stores:
/// what reads them along with other rows, or through a memo, stays in each store.
extension SQLStatementRunner {
    /// A revoked token's record is kept until it has expired on every node (`ExpiredRows.revocationMarginMillis`
    /// past its expiry), then purged by a later revocation. It was kept until a
    /// revocation of a token expiring two days after it, so a minted-and-revoked one-hour token's record stayed a
    /// day or two (review, session 34).
    public func revokeAccessToken(jti: String, expiresAt: Int64, now: Int64) throws {
        try update("INSERT INTO revoked_tokens(jti, expires_at) VALUES(?, ?) ON CONFLICT (jti) DO NOTHING", [.text(jti), .int(expiresAt)])
        try update(ExpiredRows.revokedTokens, ExpiredRows.arguments(before: now - ExpiredRows.revocationMarginMillis))
    }

    public func insertAuthorizationRequest(idHash: String, request: AuthorizationRequest, createdAt: Int64, expiresAt: Int64) throws {
        try blindUpdate("INSERT INTO authorization_requests(id_hash, client_id, params, created_at, expires_at) VALUES(?, ?, ?, ?, ?)",
                 [.text(idHash), .text(request.clientID), .text(request.json.text), .int(createdAt), .int(expiresAt)])
        // SPEC 7.1: what an anonymous authorize stored is gone once it expires (at the next insert).
        try blindUpdate(ExpiredRows.authorizationRequests, ExpiredRows.arguments(before: createdAt))
    }

    public func authorizationRequest(idHash: String) throws -> StoredAuthorizationRequest? {
        try query(SharedRows.authorizationRequestSQL, [.text(idHash)]).first.flatMap(SharedRows.authorizationRequest)
    }

    public func markAuthorizationRequestAnswered(idHash: String, at: Int64) throws -> Bool {
        try update("UPDATE authorization_requests SET answered_at = ? WHERE id_hash = ? AND answered_at IS NULL", [.int(at), .text(idHash)]) == 1
    }

    public func insertPushedRequest(uriHash: String, clientID: String, request: AuthorizationRequest, expiresAt: Int64, now: Int64) throws {
        try blindUpdate(ExpiredRows.pushedRequests, ExpiredRows.arguments(before: now))
        try update("INSERT INTO pushed_requests(uri_hash, client_id, params, expires_at) VALUES(?, ?, ?, ?)",
                   [.text(uriHash), .text(clientID), .text(request.json.text), .int(expiresAt)])
    }

    public func takePushedRequest(uriHash: String, clientID: String, now: Int64) throws -> AuthorizationRequest? {
        guard let row = try query("SELECT params, expires_at FROM pushed_requests WHERE uri_hash = ? AND client_id = ?",
                                  [.text(uriHash), .text(clientID)]).first,
              try update("DELETE FROM pushed_requests WHERE uri_hash = ? AND client_id = ?", [.text(uriHash), .text(clientID)]) == 1,
              row.int(1) > now, let json = try? JSON.parse(row.string(0)) else { return nil }
        return AuthorizationRequest(json: json)
    }

    public func insertCode(_ c: AuthorizationCodeRecord) throws {
        try blindUpdate("""
            INSERT INTO authorization_codes(code_hash, client_id, user_id, redirect_uri, redirect_uri_sent, scope, nonce, code_challenge,
              auth_time, created_at, expires_at, sid, claims, dpop_jkt, pushed) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [.text(c.codeHash), .text(c.clientID), .text(c.userID), .text(c.redirectURI), SQLArgument(flag: c.redirectURISent),
                  .text(Scopes.join(c.scope)), SQLArgument(c.nonce), SQLArgument(c.codeChallenge), .int(c.authTime), .int(c.createdAt),
                  .int(c.expiresAt), SQLArgument(c.sid), SQLArgument(c.claims?.json.text), SQLArgument(c.dpopJKT), SQLArgument(flag: c.pushed)])
        try blindUpdate(ExpiredRows.authorizationCodes, ExpiredRows.arguments(before: c.createdAt - 86_400_000))
    }

    /// Consumes a code: true for exactly one caller, however many race (the second half of a claim).
    public func consumeCode(hash: String, clientID: String, jkt: String?, at: Int64, familyID: String) throws -> Bool {
        try update(ClaimSQL.consumeCode, ClaimSQL.consumeCodeArguments(hash: hash, clientID: clientID, jkt: jkt, at: at, familyID: familyID)) == 1
    }

    public func unclaimCode(hash: String) throws {
        try blindUpdate("UPDATE authorization_codes SET consumed_at = NULL, family_id = NULL WHERE code_hash = ?", [.text(hash)])
    }

    /// `sid`: the session the family ends with (granted without offline_access, Back-Channel Logout 1.0 §2.7).
    /// A family without a refresh token expires at its creation; one with, no sooner than its newest token
    /// (given here for the first, `insertRefreshToken` moves it on). Families expired
    /// `TokenFamilies.keptAfterExpiryMillis` ago are purged (their refresh tokens with them), as nothing they
    /// issued is valid any more.
    public func insertFamily(id: String, clientID: String, userID: String, createdAt: Int64, sid: String?, expiresAt: Int64) throws {
        try blindUpdate("INSERT INTO token_families(id, client_id, user_id, created_at, sid, expires_at) VALUES(?, ?, ?, ?, ?, ?)",
                 [.text(id), .text(clientID), .text(userID), .int(createdAt), SQLArgument(sid), .int(expiresAt)])
        try blindUpdate(ExpiredRows.tokenFamilies, ExpiredRows.arguments(before: createdAt - TokenFamilies.keptAfterExpiryMillis))
    }

    public func expireCodes(userID: String, sid: String, at: Int64) throws {
        try update("UPDATE authorization_codes SET consumed_at = ? WHERE user_id = ? AND sid = ? AND consumed_at IS NULL",
                   [.int(at), .text(userID), .text(sid)])
    }

    public func revokeFamilies(sid: String, at: Int64) throws {
        try update("UPDATE token_families SET revoked_at = ? WHERE sid = ? AND revoked_at IS NULL", [.int(at), .text(sid)])
    }

    public func revokeFamily(id: String, at: Int64) throws {
        try update("UPDATE token_families SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [.int(at), .text(id)])
    }

    public func revokeFamilies(userID: String, clientID: String, at: Int64) throws {
        try update("UPDATE token_families SET revoked_at = ? WHERE user_id = ? AND client_id = ? AND revoked_at IS NULL",
                 [.int(at), .text(userID), .text(clientID)])
    }

    public func revokeFamilies(clientID: String, at: Int64) throws {
        try update("UPDATE token_families SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL", [.int(at), .text(clientID)])
    }

    public func withdrawPendingGrants(clientID: String) throws {
        try blindUpdate("DELETE FROM authorization_codes WHERE client_id = ? AND consumed_at IS NULL", [.text(clientID)])
        try blindUpdate("UPDATE device_codes SET status = 'denied' WHERE client_id = ? AND status IN ('pending', 'approved')", [.text(clientID)])
        try blindUpdate("DELETE FROM pushed_requests WHERE client_id = ?", [.text(clientID)])
    }

    /// Stores a refresh token; its family then expires no sooner than it. Refresh tokens that expired over
    /// `TokenFamilies.keptAfterExpiryMillis` ago are purged: every rotation leaves a row behind for reuse
    /// detection (RFC 9700 §4.14.2), which matters no more once that token could not be used anyway.
    public func insertRefreshToken(_ t: RefreshTokenRecord) throws {
        try blindUpdate("""
            INSERT INTO refresh_tokens(token_hash, family_id, client_id, user_id, scope, auth_time, created_at, expires_at, dpop_jkt, parent_hash,
              session_ends_at)
            VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [.text(t.tokenHash), .text(t.familyID), .text(t.clientID), .text(t.userID), .text(Scopes.join(t.scope)),
                  .int(t.authTime), .int(t.createdAt), .int(t.expiresAt), SQLArgument(t.jkt), SQLArgument(t.parentHash), SQLArgument(t.sessionEndsAt)])
        // Moved a day past the token's expiry when it falls short of it: a family refreshed every few minutes is
        // written once a day, not at each rotation (an indexed column: SQLite's refresh cost 8% more).
        try blindUpdate("UPDATE token_families SET expires_at = ? WHERE id = ? AND expires_at < ?",
                        [.int(t.expiresAt + TokenFamilies.keptAfterExpiryMillis), .text(t.familyID), .int(t.expiresAt)])
        try blindUpdate(ExpiredRows.refreshTokens, ExpiredRows.arguments(before: t.createdAt - TokenFamilies.keptAfterExpiryMillis))
    }

    /// Marks a refresh token rotated: true for exactly one caller, however many race (the second half of a claim).
    public func rotateRefreshToken(hash: String, clientID: String, jkt: String?, at: Int64) throws -> Bool {
        try update(ClaimSQL.rotateRefreshToken, ClaimSQL.rotateRefreshTokenArguments(hash: hash, clientID: clientID, jkt: jkt, at: at)) == 1
    }

    public func withdrawUnusedSuccessor(of token: RefreshTokenRecord, at now: Int64) throws -> Bool {
        // The retried token's row first (written as it is): on PostgreSQL its lock lines up retries racing on several
        // nodes, each then reading what the one before it left, as SQLite's single writer does.
        try update("UPDATE refresh_tokens SET rotated_at = rotated_at WHERE token_hash = ?", [.text(token.tokenHash)])
        // Its successor, the token its rotation (or a retry since) issued, while unused; marked, not deleted.
        return try update("""
            UPDATE refresh_tokens SET rotated_at = ?, withdrawn_at = ?
            WHERE family_id = ? AND parent_hash = ? AND rotated_at IS NULL
            """, [.int(now), .int(now), .text(token.familyID), .text(token.tokenHash)]) == 1
    }

    public func unclaimRefreshToken(hash: String) throws {
        try blindUpdate("UPDATE refresh_tokens SET rotated_at = NULL WHERE token_hash = ?", [.text(hash)])
    }

    // MARK: Device codes (RFC 8628)

    public func insertDeviceCode(_ d: DeviceCodeRecord) throws -> Bool {
        // What an anonymous caller stored is gone a while after it expired (kept that long to answer expired_token).
        try blindUpdate(ExpiredRows.deviceCodes, ExpiredRows.arguments(before: d.createdAt - DeviceCodeRecord.keptAfterExpiryMillis))
        return try update("""
            INSERT INTO device_codes(device_code_hash, user_code_hash, client_id, scope, created_at, expires_at, poll_interval, status,
              requested_from)
            VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_code_hash) DO NOTHING
            """, [.text(d.deviceCodeHash), .text(d.userCodeHash), .text(d.clientID), .text(Scopes.join(d.scope)), .int(d.createdAt),
                  .int(d.expiresAt), SQLArgument(d.interval), .text(d.status.rawValue), .text(d.requestedFrom)]) == 1
    }

    public func liveDeviceCodes(clientID: String, address: String, now: Int64) throws -> (client: Int, address: Int, firstExpiry: Int64?) {
        // Two counts, each read from an index alone: the address's codes (a few dozen at most) and the client's
        // (up to its allowance). One count of both read every live row of the client (review, session 25).
        let fromAddress = try query("""
            SELECT COUNT(*), MIN(expires_at) FROM device_codes WHERE client_id = ? AND requested_from = ? AND expires_at > ?
            """, [.text(clientID), .text(address), .int(now)]).first
        let all = try query("SELECT COUNT(*) FROM device_codes WHERE client_id = ? AND expires_at > ?", [.text(clientID), .int(now)]).first
        return (Int(all?.int(0) ?? 0), Int(fromAddress?.int(0) ?? 0), fromAddress?.optionalInt(1))
    }

    static var deviceCodeColumns: String {
        "device_code_hash, user_code_hash, client_id, scope, created_at, expires_at, poll_interval, last_polled_at, status, user_id, auth_time, " +
            "family_id, requested_from, dpop_jkt"
    }

    func deviceCodeRecord(_ r: Row) -> DeviceCodeRecord? {
        guard let status = DeviceCodeRecord.Status(rawValue: r.string(8)) else { return nil }
        return DeviceCodeRecord(deviceCodeHash: r.string(0), userCodeHash: r.string(1), clientID: r.string(2), scope: Scopes.parse(r.string(3)) ?? [],
                                createdAt: r.int(4), expiresAt: r.int(5), interval: Int(r.int(6)), lastPolledAt: r.optionalInt(7), status: status,
                                userID: r.optionalString(9), authTime: r.optionalInt(10), familyID: r.optionalString(11), requestedFrom: r.string(12),
                                dpopJKT: r.optionalString(13))
    }

    public func deviceCode(hash: String) throws -> DeviceCodeRecord? {
        try query("SELECT \(Self.deviceCodeColumns) FROM device_codes WHERE device_code_hash = ?", [.text(hash)]).first.flatMap(deviceCodeRecord)
    }

    public func deviceCode(userCodeHash: String) throws -> DeviceCodeRecord? {
        try query("SELECT \(Self.deviceCodeColumns) FROM device_codes WHERE user_code_hash = ?", [.text(userCodeHash)]).first.flatMap(deviceCodeRecord)
    }

    public func answerDeviceCode(hash: String, status: DeviceCodeRecord.Status, userID: String, scope: [String], authTime: Int64, now: Int64) throws -> Bool {
        try update("""
            UPDATE device_codes SET status = ?, user_id = ?, scope = ?, auth_time = ?
            WHERE device_code_hash = ? AND status = 'pending' AND expires_at > ?
            """, [.text(status.rawValue), .text(userID), .text(Scopes.join(scope)), .int(authTime), .text(hash), .int(now)]) == 1
    }

    public func pollDeviceCode(hash: String, now: Int64) throws -> Bool {
        if try update("""
            UPDATE device_codes SET last_polled_at = ?
            WHERE device_code_hash = ? AND (last_polled_at IS NULL OR last_polled_at + poll_interval * 1000 <= ?)
            """, [.int(now), .text(hash), .int(now)]) == 1 { return true }
        try update("""
            UPDATE device_codes SET last_polled_at = ?, poll_interval = CASE WHEN poll_interval < 60 THEN poll_interval + 5 ELSE poll_interval END
            WHERE device_code_hash = ?
            """, [.int(now), .text(hash)])
        return false
    }

    public func redeemDeviceCode(hash: String, familyID: String, jkt: String?) throws -> Bool {
        try update("UPDATE device_codes SET status = 'redeemed', family_id = ?, dpop_jkt = ? WHERE device_code_hash = ? AND status = 'approved'",
                   [.text(familyID), SQLArgument(jkt), .text(hash)]) == 1
    }
}

import Common
import Foundation
import OAuth
import SharedSQL
import Postgres

/// Revocations, pending authorization requests, codes, token families and refresh tokens (GrantStorage).
extension PostgresStore {
    // MARK: Revocation

    public func isAccessTokenRevoked(jti: String) throws -> Bool {
        try memoized(\.revokedTokens, jti) { !(try rows("SELECT 1 FROM revoked_tokens WHERE jti = ?", [.text(jti)]).isEmpty) }
    }

    // MARK: Authorization requests and codes

    public func code(hash: String) throws -> AuthorizationCodeRecord? {
        try rows(PostgresStore.codeSQL, [.text(hash)]).first.map(codeRecord)
    }

    /// The code (with its user and connection, read along) and its consumption in one round trip.
    public func claimCode(hash: String, clientID: String, jkt: String?, at: Int64, familyID: String) throws -> Claimed<AuthorizationCodeRecord>? {
        let claim = ClaimSQL.consumeCodeArguments(hash: hash, clientID: clientID, jkt: jkt, at: at, familyID: familyID)
        let (rows, claimed) = try readThenClaim(PostgresStore.codeSQL, [.text(hash)], ClaimSQL.consumeCode, claim.map(PostgresStore.value))
        return rows.first.map { Claimed(record: codeRecord($0), claimed: claimed) }
    }

    // The user and the connection come along: redeeming a code reads both next.
    static let codeSQL = """
            SELECT c.code_hash, c.client_id, c.user_id, c.redirect_uri, c.redirect_uri_sent, c.scope, c.nonce, c.code_challenge,
              c.auth_time, c.created_at, c.expires_at, c.consumed_at, c.family_id,
              u.id, u.username, u.email, u.name, u.password_hash, u.created_at,
              n.user_id, n.client_id, n.remembered_scope, n.granted_scope, n.auth_time, n.access_time, n.created_at, c.sid, c.claims, c.dpop_jkt,
              c.pushed
            FROM authorization_codes c LEFT JOIN users u ON u.id = c.user_id
              LEFT JOIN connections n ON n.user_id = c.user_id AND n.client_id = c.client_id
            WHERE c.code_hash = ?
            """

    private func codeRecord(_ r: PGRow) -> AuthorizationCodeRecord {
        keepUser(r, from: 13, id: r.string(2))
        if keepsAlong {
            along.connections[AlongRows.key(r.string(2), r.string(1))] = r.isNull(19) ? .some(nil) : SharedRows.connection(r.columns(from: 19))
        }
        return AuthorizationCodeRecord(codeHash: r.string(0), clientID: r.string(1), userID: r.string(2), redirectURI: r.string(3),
                                       redirectURISent: r.bool(4), scope: Scopes.parse(r.string(5)) ?? [], nonce: r.optionalString(6),
                                       codeChallenge: r.optionalString(7), authTime: r.int(8), createdAt: r.int(9), expiresAt: r.int(10),
                                       consumedAt: r.optionalInt(11), familyID: r.optionalString(12), sid: r.optionalString(26),
                                       claims: SharedRows.claims(r.optionalString(27)), dpopJKT: r.optionalString(28),
                                       pushed: r.bool(29))
    }

    // MARK: Authorization requests

    public func authorizationRequest(idHash: String) throws -> StoredAuthorizationRequest? {
        try sendIfReadAhead(.request(idHash))
        if keepsAlong, let known = along.requests[idHash] { return known }
        return try rows(SharedRows.authorizationRequestSQL, [.text(idHash)]).first.flatMap(SharedRows.authorizationRequest)
    }

    /// Queued to travel with the next statement of this read or write (in a
    /// read, with its generation read); its row is then kept as read along.
    public func prefetchAuthorizationRequest(idHash: String) throws {
        guard depth > 0, keepsAlong, !committedEarly, !commitsWithNextStatement, along.requests[idHash] == nil,
              !idHash.contains("\u{0}") else { return }
        readAhead(.request(idHash), SharedRows.authorizationRequestSQL, [.text(idHash)])
    }

    // MARK: Token families and refresh tokens

    public func isFamilyRevoked(id: String) throws -> Bool {
        if keepsAlong, let known = along.families[id] { return known }
        // A family not (yet) seen is answered afresh each time: only answers
        // about existing families are remembered.
        // Nothing remembered for the family: the read takes the generation read along (one round trip for both).
        if !generationPending || memo.revokedFamilies[id] != nil { try validateIfPending() }
        if memoUsable, let hit = memo.revokedFamilies[id] { return hit }
        guard let row = try rows("SELECT revoked_at FROM token_families WHERE id = ?", [.text(id)]).first else { return true }
        let revoked = row.optionalInt(0) != nil
        if memoUsable {
            if memo.revokedFamilies.count >= MemoBounds.capacity { memo.revokedFamilies.removeAll(keepingCapacity: true) }
            memo.revokedFamilies[id] = revoked
        }
        return revoked
    }

    public func refreshToken(hash: String) throws -> RefreshTokenRecord? {
        try rows(PostgresStore.refreshTokenSQL, [.text(hash)]).first.map(refreshTokenRecord)
    }

    /// The token (with its family's state, read along) and its rotation in one round trip.
    public func claimRefreshToken(hash: String, clientID: String, jkt: String?, at: Int64) throws -> Claimed<RefreshTokenRecord>? {
        let claim = ClaimSQL.rotateRefreshTokenArguments(hash: hash, clientID: clientID, jkt: jkt, at: at)
        let (rows, claimed) = try readThenClaim(PostgresStore.refreshTokenSQL, [.text(hash)], ClaimSQL.rotateRefreshToken, claim.map(PostgresStore.value))
        return rows.first.map { Claimed(record: refreshTokenRecord($0), claimed: claimed) }
    }

    // The family's state comes along (a round trip saved): a rotation asks for it next, in the same transaction.
    static let refreshTokenSQL = """
        SELECT t.token_hash, t.family_id, t.client_id, t.user_id, t.scope, t.auth_time, t.created_at, t.expires_at, t.rotated_at,
          f.id, f.revoked_at, t.dpop_jkt, t.parent_hash, t.withdrawn_at, t.session_ends_at
        FROM refresh_tokens t LEFT JOIN token_families f ON f.id = t.family_id WHERE t.token_hash = ?
        """

    private func refreshTokenRecord(_ r: PGRow) -> RefreshTokenRecord {
        if keepsAlong, let family = r.optionalString(9) { along.families[family] = r.optionalInt(10) != nil }
        return RefreshTokenRecord(tokenHash: r.string(0), familyID: r.string(1), clientID: r.string(2), userID: r.string(3),
                                  scope: Scopes.parse(r.string(4)) ?? [], authTime: r.int(5), createdAt: r.int(6), expiresAt: r.int(7),
                                  rotatedAt: r.optionalInt(8), jkt: r.optionalString(11), parentHash: r.optionalString(12),
                                  withdrawnAt: r.optionalInt(13), sessionEndsAt: r.optionalInt(14))
    }
}

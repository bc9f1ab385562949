import Common
import Foundation
import OAuth
import Postgres

/// Revocations, pending authorization requests, codes, token families and refresh tokens (GrantStorage).
extension PostgresStore {
    // MARK: Revocation

    public func revokeAccessToken(jti: String, expiresAt: Int64) throws {
        try exec("INSERT INTO revoked_tokens(jti, expires_at) VALUES(?, ?) ON CONFLICT (jti) DO NOTHING", [.text(jti), .int(expiresAt)])
        try exec("DELETE FROM revoked_tokens WHERE expires_at < ?", [.int(expiresAt - 2 * 86_400_000)])
    }

    public func isAccessTokenRevoked(jti: String) throws -> Bool {
        try memoized(\.revokedTokens, jti) { !(try rows("SELECT 1 FROM revoked_tokens WHERE jti = ?", [.text(jti)]).isEmpty) }
    }

    // MARK: Authorization requests and codes

    public func insertAuthorizationRequest(idHash: String, request: AuthorizationRequest, createdAt: Int64, expiresAt: Int64) throws {
        try blindWrite("INSERT INTO authorization_requests(id_hash, client_id, params, created_at, expires_at) VALUES(?, ?, ?, ?, ?)",
                 [.text(idHash), .text(request.clientID), .text(request.json.text), .int(createdAt), .int(expiresAt)])
        // SPEC 7.1: what an anonymous authorize stored is gone once it expires (at the next insert).
        try blindWrite("DELETE FROM authorization_requests WHERE expires_at < ?", [.int(createdAt)])
    }

    public func authorizationRequest(idHash: String) throws -> StoredAuthorizationRequest? {
        guard let r = try rows("SELECT id_hash, params, created_at, expires_at, answered_at FROM authorization_requests WHERE id_hash = ?",
                               [.text(idHash)]).first,
              let json = try? JSON.parse(r.string(1)), let request = AuthorizationRequest(json: json) else { return nil }
        return StoredAuthorizationRequest(idHash: r.string(0), request: request, createdAt: r.int(2), expiresAt: r.int(3), answeredAt: r.optionalInt(4))
    }

    public func markAuthorizationRequestAnswered(idHash: String, at: Int64) throws -> Bool {
        try exec("UPDATE authorization_requests SET answered_at = ? WHERE id_hash = ? AND answered_at IS NULL", [.int(at), .text(idHash)]) == 1
    }

    public func insertCode(_ c: AuthorizationCodeRecord) throws {
        try blindWrite("""
            INSERT INTO authorization_codes(code_hash, client_id, user_id, redirect_uri, redirect_uri_sent, scope, nonce, code_challenge,
              auth_time, created_at, expires_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [.text(c.codeHash), .text(c.clientID), .text(c.userID), .text(c.redirectURI), PGValue(flag: c.redirectURISent),
                  .text(Scopes.join(c.scope)), PGValue(c.nonce), PGValue(c.codeChallenge), .int(c.authTime), .int(c.createdAt),
                  .int(c.expiresAt)])
        try blindWrite("DELETE FROM authorization_codes WHERE expires_at < ?", [.int(c.createdAt - 86_400_000)])
    }

    public func code(hash: String) throws -> AuthorizationCodeRecord? {
        // The user and the connection come along: redeeming a code reads both next.
        guard let r = try rows("""
            SELECT c.code_hash, c.client_id, c.user_id, c.redirect_uri, c.redirect_uri_sent, c.scope, c.nonce, c.code_challenge,
              c.auth_time, c.created_at, c.expires_at, c.consumed_at, c.family_id,
              u.id, u.username, u.email, u.name, u.password_hash, u.created_at,
              n.user_id, n.client_id, n.remembered_scope, n.granted_scope, n.auth_time, n.access_time, n.created_at
            FROM authorization_codes c LEFT JOIN users u ON u.id = c.user_id
              LEFT JOIN connections n ON n.user_id = c.user_id AND n.client_id = c.client_id
            WHERE c.code_hash = ?
            """, [.text(hash)]).first else { return nil }
        keepUser(r, from: 13, id: r.string(2))
        if keepsAlong {
            along.connections[AlongRows.key(r.string(2), r.string(1))] = r.isNull(19) ? .some(nil) : PostgresStore.connection(r.columns(from: 19))
        }
        return AuthorizationCodeRecord(codeHash: r.string(0), clientID: r.string(1), userID: r.string(2), redirectURI: r.string(3),
                                       redirectURISent: r.bool(4), scope: Scopes.parse(r.string(5)) ?? [], nonce: r.optionalString(6),
                                       codeChallenge: r.optionalString(7), authTime: r.int(8), createdAt: r.int(9), expiresAt: r.int(10),
                                       consumedAt: r.optionalInt(11), familyID: r.optionalString(12))
    }

    public func consumeCode(hash: String, at: Int64, familyID: String) throws -> Bool {
        try exec("UPDATE authorization_codes SET consumed_at = ?, family_id = ? WHERE code_hash = ? AND consumed_at IS NULL",
                 [.int(at), .text(familyID), .text(hash)]) == 1
    }

    // MARK: Token families and refresh tokens

    public func insertFamily(id: String, clientID: String, userID: String, createdAt: Int64) throws {
        try blindWrite("INSERT INTO token_families(id, client_id, user_id, created_at) VALUES(?, ?, ?, ?)",
                 [.text(id), .text(clientID), .text(userID), .int(createdAt)])
    }

    public func revokeFamily(id: String, at: Int64) throws {
        try exec("UPDATE token_families SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [.int(at), .text(id)])
    }

    public func revokeFamilies(userID: String, clientID: String, at: Int64) throws {
        try exec("UPDATE token_families SET revoked_at = ? WHERE user_id = ? AND client_id = ? AND revoked_at IS NULL",
                 [.int(at), .text(userID), .text(clientID)])
    }

    public func revokeFamilies(clientID: String, at: Int64) throws {
        try exec("UPDATE token_families SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL", [.int(at), .text(clientID)])
    }

    public func isFamilyRevoked(id: String) throws -> Bool {
        if keepsAlong, let known = along.families[id] { return known }
        // A family not (yet) seen is answered afresh each time: only answers
        // about existing families are remembered.
        if memoUsable, let hit = memo.revokedFamilies[id] { return hit }
        guard let row = try rows("SELECT revoked_at FROM token_families WHERE id = ?", [.text(id)]).first else { return true }
        let revoked = row.optionalInt(0) != nil
        if memoUsable {
            if memo.revokedFamilies.count >= PostgresMemo.capacity { memo.revokedFamilies.removeAll(keepingCapacity: true) }
            memo.revokedFamilies[id] = revoked
        }
        return revoked
    }

    public func insertRefreshToken(_ t: RefreshTokenRecord) throws {
        try blindWrite("""
            INSERT INTO refresh_tokens(token_hash, family_id, client_id, user_id, scope, auth_time, created_at, expires_at)
            VALUES(?, ?, ?, ?, ?, ?, ?, ?)
            """, [.text(t.tokenHash), .text(t.familyID), .text(t.clientID), .text(t.userID), .text(Scopes.join(t.scope)),
                  .int(t.authTime), .int(t.createdAt), .int(t.expiresAt)])
    }

    public func refreshToken(hash: String) throws -> RefreshTokenRecord? {
        // The family's state comes along (a round trip saved): a rotation asks for it next, in the same transaction.
        guard let r = try rows("""
            SELECT t.token_hash, t.family_id, t.client_id, t.user_id, t.scope, t.auth_time, t.created_at, t.expires_at, t.rotated_at,
              f.id, f.revoked_at
            FROM refresh_tokens t LEFT JOIN token_families f ON f.id = t.family_id WHERE t.token_hash = ?
            """, [.text(hash)]).first else { return nil }
        if keepsAlong, let family = r.optionalString(9) { along.families[family] = r.optionalInt(10) != nil }
        return RefreshTokenRecord(tokenHash: r.string(0), familyID: r.string(1), clientID: r.string(2), userID: r.string(3),
                                  scope: Scopes.parse(r.string(4)) ?? [], authTime: r.int(5), createdAt: r.int(6), expiresAt: r.int(7),
                                  rotatedAt: r.optionalInt(8))
    }

    public func rotateRefreshToken(hash: String, at: Int64) throws -> Bool {
        try exec("UPDATE refresh_tokens SET rotated_at = ? WHERE token_hash = ? AND rotated_at IS NULL", [.int(at), .text(hash)]) == 1
    }
}

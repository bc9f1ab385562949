import Common
import Foundation
import OAuth
import SQLite
import Synchronization

/// Revocations, pending authorization requests, codes, token families and refresh tokens (GrantStorage).
extension SQLiteStore {
    // MARK: Revocation

    public func revokeAccessToken(jti: String, expiresAt: Int64) throws {
        try exec("INSERT OR IGNORE INTO revoked_tokens(jti, expires_at) VALUES(?, ?)", [.text(jti), .integer(expiresAt)])
        try exec("DELETE FROM revoked_tokens WHERE expires_at < ?", [.integer(expiresAt - 2 * 86_400_000)])
    }

    public func isAccessTokenRevoked(jti: String) throws -> Bool {
        try memoized(\.revokedTokens, jti) { !(try rows("SELECT 1 FROM revoked_tokens WHERE jti = ?", [.text(jti)]).isEmpty) }
    }

    // MARK: Authorization requests and codes

    public func insertAuthorizationRequest(idHash: String, request: AuthorizationRequest, createdAt: Int64, expiresAt: Int64) throws {
        try exec("INSERT INTO authorization_requests(id_hash, client_id, params, created_at, expires_at) VALUES(?, ?, ?, ?, ?)",
                 [.text(idHash), .text(request.clientID), .text(request.json.text), .integer(createdAt), .integer(expiresAt)])
        // SPEC 7.1: what an anonymous authorize stored is gone once it expires (at the next insert).
        try exec("DELETE FROM authorization_requests WHERE expires_at < ?", [.integer(createdAt)])
    }

    public func authorizationRequest(idHash: String) throws -> StoredAuthorizationRequest? {
        guard let r = try rows("SELECT id_hash, params, created_at, expires_at, answered_at FROM authorization_requests WHERE id_hash = ?",
                               [.text(idHash)]).first,
              let json = try? JSON.parse(r.string(1)), let request = AuthorizationRequest(json: json) else { return nil }
        return StoredAuthorizationRequest(idHash: r.string(0), request: request, createdAt: r.int(2), expiresAt: r.int(3), answeredAt: r.optionalInt(4))
    }

    public func markAuthorizationRequestAnswered(idHash: String, at: Int64) throws -> Bool {
        try exec("UPDATE authorization_requests SET answered_at = ? WHERE id_hash = ? AND answered_at IS NULL", [.integer(at), .text(idHash)]) == 1
    }

    public func insertCode(_ c: AuthorizationCodeRecord) throws {
        try exec("""
            INSERT INTO authorization_codes(code_hash, client_id, user_id, redirect_uri, redirect_uri_sent, scope, nonce, code_challenge,
              auth_time, created_at, expires_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [.text(c.codeHash), .text(c.clientID), .text(c.userID), .text(c.redirectURI), SQLValue(c.redirectURISent),
                  .text(Scopes.join(c.scope)), SQLValue(c.nonce), SQLValue(c.codeChallenge), .integer(c.authTime), .integer(c.createdAt),
                  .integer(c.expiresAt)])
        try exec("DELETE FROM authorization_codes WHERE expires_at < ?", [.integer(c.createdAt - 86_400_000)])
    }

    public func code(hash: String) throws -> AuthorizationCodeRecord? {
        try rows("""
            SELECT code_hash, client_id, user_id, redirect_uri, redirect_uri_sent, scope, nonce, code_challenge, auth_time, created_at,
              expires_at, consumed_at, family_id FROM authorization_codes WHERE code_hash = ?
            """, [.text(hash)]).first.map {
            AuthorizationCodeRecord(codeHash: $0.string(0), clientID: $0.string(1), userID: $0.string(2), redirectURI: $0.string(3),
                                    redirectURISent: $0.bool(4), scope: Scopes.parse($0.string(5)) ?? [], nonce: $0.optionalString(6),
                                    codeChallenge: $0.optionalString(7), authTime: $0.int(8), createdAt: $0.int(9), expiresAt: $0.int(10),
                                    consumedAt: $0.optionalInt(11), familyID: $0.optionalString(12))
        }
    }

    public func consumeCode(hash: String, at: Int64, familyID: String) throws -> Bool {
        try exec("UPDATE authorization_codes SET consumed_at = ?, family_id = ? WHERE code_hash = ? AND consumed_at IS NULL",
                 [.integer(at), .text(familyID), .text(hash)]) == 1
    }

    // MARK: Token families and refresh tokens

    public func insertFamily(id: String, clientID: String, userID: String, createdAt: Int64) throws {
        try exec("INSERT INTO token_families(id, client_id, user_id, created_at) VALUES(?, ?, ?, ?)",
                 [.text(id), .text(clientID), .text(userID), .integer(createdAt)])
    }

    public func revokeFamily(id: String, at: Int64) throws {
        try exec("UPDATE token_families SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [.integer(at), .text(id)])
    }

    public func revokeFamilies(userID: String, clientID: String, at: Int64) throws {
        try exec("UPDATE token_families SET revoked_at = ? WHERE user_id = ? AND client_id = ? AND revoked_at IS NULL",
                 [.integer(at), .text(userID), .text(clientID)])
    }

    public func revokeFamilies(clientID: String, at: Int64) throws {
        try exec("UPDATE token_families SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL", [.integer(at), .text(clientID)])
    }

    public func isFamilyRevoked(id: String) throws -> Bool {
        try memoized(\.revokedFamilies, id) {
            guard let row = try rows("SELECT revoked_at FROM token_families WHERE id = ?", [.text(id)]).first else { return true }
            return row.optionalInt(0) != nil
        }
    }

    public func insertRefreshToken(_ t: RefreshTokenRecord) throws {
        try exec("""
            INSERT INTO refresh_tokens(token_hash, family_id, client_id, user_id, scope, auth_time, created_at, expires_at)
            VALUES(?, ?, ?, ?, ?, ?, ?, ?)
            """, [.text(t.tokenHash), .text(t.familyID), .text(t.clientID), .text(t.userID), .text(Scopes.join(t.scope)),
                  .integer(t.authTime), .integer(t.createdAt), .integer(t.expiresAt)])
    }

    public func refreshToken(hash: String) throws -> RefreshTokenRecord? {
        try rows("""
            SELECT token_hash, family_id, client_id, user_id, scope, auth_time, created_at, expires_at, rotated_at
            FROM refresh_tokens WHERE token_hash = ?
            """, [.text(hash)]).first.map {
            RefreshTokenRecord(tokenHash: $0.string(0), familyID: $0.string(1), clientID: $0.string(2), userID: $0.string(3),
                               scope: Scopes.parse($0.string(4)) ?? [], authTime: $0.int(5), createdAt: $0.int(6), expiresAt: $0.int(7),
                               rotatedAt: $0.optionalInt(8))
        }
    }

    public func rotateRefreshToken(hash: String, at: Int64) throws -> Bool {
        try exec("UPDATE refresh_tokens SET rotated_at = ? WHERE token_hash = ? AND rotated_at IS NULL", [.integer(at), .text(hash)]) == 1
    }
}

import Common
import Foundation
import OAuth
import SharedSQL
import SQLite
import Synchronization

/// Revocations, pending authorization requests, codes, token families and refresh tokens (GrantStorage).
extension SQLiteStore {
    // MARK: Revocation

    public func isAccessTokenRevoked(jti: String) throws -> Bool {
        try memoized(\.revokedTokens, jti) { !(try rows("SELECT 1 FROM revoked_tokens WHERE jti = ?", [.text(jti)]).isEmpty) }
    }

    // MARK: Authorization requests and codes

    public func code(hash: String) throws -> AuthorizationCodeRecord? {
        try rows("""
            SELECT code_hash, client_id, user_id, redirect_uri, redirect_uri_sent, scope, nonce, code_challenge, auth_time, created_at,
              expires_at, consumed_at, family_id, sid, claims, dpop_jkt, pushed FROM authorization_codes WHERE code_hash = ?
            """, [.text(hash)]).first.map {
            AuthorizationCodeRecord(codeHash: $0.string(0), clientID: $0.string(1), userID: $0.string(2), redirectURI: $0.string(3),
                                    redirectURISent: $0.bool(4), scope: Scopes.parse($0.string(5)) ?? [], nonce: $0.optionalString(6),
                                    codeChallenge: $0.optionalString(7), authTime: $0.int(8), createdAt: $0.int(9), expiresAt: $0.int(10),
                                    consumedAt: $0.optionalInt(11), familyID: $0.optionalString(12), sid: $0.optionalString(13),
                                    claims: SharedRows.claims($0.optionalString(14)), dpopJKT: $0.optionalString(15),
                                    pushed: $0.bool(16))
        }
    }

    /// The read, then the consumption (a SQLite write transaction has the database to itself).
    public func claimCode(hash: String, clientID: String, jkt: String?, at: Int64, familyID: String) throws -> Claimed<AuthorizationCodeRecord>? {
        guard let record = try code(hash: hash) else { return nil }
        let claimed = try record.consumedAt == nil && consumeCode(hash: hash, clientID: clientID, jkt: jkt, at: at, familyID: familyID)
        return Claimed(record: record, claimed: claimed)
    }

    // MARK: Token families and refresh tokens

    public func isFamilyRevoked(id: String) throws -> Bool {
        try memoized(\.revokedFamilies, id) {
            guard let row = try rows("SELECT revoked_at FROM token_families WHERE id = ?", [.text(id)]).first else { return true }
            return row.optionalInt(0) != nil
        }
    }

    public func refreshToken(hash: String) throws -> RefreshTokenRecord? {
        try rows("""
            SELECT token_hash, family_id, client_id, user_id, scope, auth_time, created_at, expires_at, rotated_at, dpop_jkt, parent_hash,
              withdrawn_at, session_ends_at
            FROM refresh_tokens WHERE token_hash = ?
            """, [.text(hash)]).first.map {
            RefreshTokenRecord(tokenHash: $0.string(0), familyID: $0.string(1), clientID: $0.string(2), userID: $0.string(3),
                               scope: Scopes.parse($0.string(4)) ?? [], authTime: $0.int(5), createdAt: $0.int(6), expiresAt: $0.int(7),
                               rotatedAt: $0.optionalInt(8), jkt: $0.optionalString(9), parentHash: $0.optionalString(10),
                               withdrawnAt: $0.optionalInt(11), sessionEndsAt: $0.optionalInt(12))
        }
    }

    /// The read, then the rotation (a SQLite write transaction has the database to itself).
    public func claimRefreshToken(hash: String, clientID: String, jkt: String?, at: Int64) throws -> Claimed<RefreshTokenRecord>? {
        guard let record = try refreshToken(hash: hash) else { return nil }
        let claimed = try record.rotatedAt == nil && rotateRefreshToken(hash: hash, clientID: clientID, jkt: jkt, at: at)
        return Claimed(record: record, claimed: claimed)
    }
}

import Common
import Foundation
import OAuth
import SharedSQL
import SQLite
import Synchronization

/// Users, their sessions and the apps they connected (UserStorage, ConnectionStorage).
extension SQLiteStore {
    // MARK: Users

    public func user(id: String) throws -> User? {
        try rows("SELECT id, username, email, name, password_hash, created_at FROM users WHERE id = ?", [.text(id)]).first.map(SharedRows.user)
    }

    /// SQLite's write lock holds every row.
    public func holdPasswordHash(userID: String) throws -> String? {
        try rows("SELECT password_hash FROM users WHERE id = ?", [.text(userID)]).first?.string(0)
    }

    // MARK: Sessions

    public func holdSession(idHash: String) throws -> Bool {
        try !rows("SELECT 1 FROM sessions WHERE id_hash = ?", [.text(idHash)]).isEmpty
    }

    public func session(idHash: String) throws -> SessionRecord? {
        try rows("SELECT id_hash, user_id, csrf, auth_time, created_at, expires_at, sid FROM sessions WHERE id_hash = ?", [.text(idHash)]).first.map {
            SessionRecord(idHash: $0.string(0), userID: $0.string(1), csrf: $0.string(2), authTime: $0.int(3), createdAt: $0.int(4), expiresAt: $0.int(5),
                          sid: $0.optionalString(6))
        }
    }

    // MARK: Connections

    public func connection(userID: String, clientID: String) throws -> UserConnection? {
        try rows("""
            SELECT user_id, client_id, remembered_scope, granted_scope, auth_time, access_time, created_at FROM connections
            WHERE user_id = ? AND client_id = ?
            """, [.text(userID), .text(clientID)]).first.map(SharedRows.connection)
    }
}

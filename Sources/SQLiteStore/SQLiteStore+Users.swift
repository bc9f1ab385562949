import Common
import Foundation
import OAuth
import SQLite
import Synchronization

/// Users, their sessions and the apps they connected (UserStorage, ConnectionStorage).
extension SQLiteStore {
    // MARK: Users

    public func insertUser(_ u: User) throws {
        try exec("INSERT INTO users(id, username, email, name, password_hash, created_at) VALUES(?, ?, ?, ?, ?, ?)",
                 [.text(u.id), .text(u.username), SQLValue(u.email), SQLValue(u.name), .text(u.passwordHash), .integer(u.createdAt)])
    }

    static func user(_ r: Row) -> User {
        User(id: r.string(0), username: r.string(1), email: r.optionalString(2), name: r.optionalString(3), passwordHash: r.string(4), createdAt: r.int(5))
    }

    public func user(username: String) throws -> User? {
        try rows("SELECT id, username, email, name, password_hash, created_at FROM users WHERE username = ?", [.text(username)]).first.map(SQLiteStore.user)
    }

    public func user(id: String) throws -> User? {
        try rows("SELECT id, username, email, name, password_hash, created_at FROM users WHERE id = ?", [.text(id)]).first.map(SQLiteStore.user)
    }

    // MARK: Sessions

    public func insertSession(_ s: SessionRecord) throws {
        try exec("INSERT INTO sessions(id_hash, user_id, csrf, auth_time, created_at, expires_at) VALUES(?, ?, ?, ?, ?, ?)",
                 [.text(s.idHash), .text(s.userID), .text(s.csrf), .integer(s.authTime), .integer(s.createdAt), .integer(s.expiresAt)])
        try exec("DELETE FROM sessions WHERE expires_at < ?", [.integer(s.createdAt)])
    }

    public func session(idHash: String) throws -> SessionRecord? {
        try rows("SELECT id_hash, user_id, csrf, auth_time, created_at, expires_at FROM sessions WHERE id_hash = ?", [.text(idHash)]).first.map {
            SessionRecord(idHash: $0.string(0), userID: $0.string(1), csrf: $0.string(2), authTime: $0.int(3), createdAt: $0.int(4), expiresAt: $0.int(5))
        }
    }

    public func deleteSession(idHash: String) throws { try exec("DELETE FROM sessions WHERE id_hash = ?", [.text(idHash)]) }

    // MARK: Connections

    static func connection(_ r: Row) -> UserConnection {
        UserConnection(userID: r.string(0), clientID: r.string(1), rememberedScope: Scopes.parse(r.string(2)) ?? [],
                   grantedScope: Scopes.parse(r.string(3)) ?? [], authTime: r.int(4), accessTime: r.int(5), createdAt: r.int(6))
    }

    public func connection(userID: String, clientID: String) throws -> UserConnection? {
        try rows("""
            SELECT user_id, client_id, remembered_scope, granted_scope, auth_time, access_time, created_at FROM connections
            WHERE user_id = ? AND client_id = ?
            """, [.text(userID), .text(clientID)]).first.map(SQLiteStore.connection)
    }

    public func upsertConnection(_ c: UserConnection) throws {
        try exec("""
            INSERT INTO connections(user_id, client_id, remembered_scope, granted_scope, auth_time, access_time, created_at)
            VALUES(?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(user_id, client_id) DO UPDATE SET remembered_scope = excluded.remembered_scope,
              granted_scope = excluded.granted_scope, auth_time = excluded.auth_time, access_time = excluded.access_time
            """, [.text(c.userID), .text(c.clientID), .text(Scopes.join(c.rememberedScope)), .text(Scopes.join(c.grantedScope)),
                  .integer(c.authTime), .integer(c.accessTime), .integer(c.createdAt)])
    }

    public func connections(userID: String, limit: Int, offset: Int) throws -> (connections: [UserConnection], total: Int) {
        let total = Int(try rows("SELECT count(*) FROM connections WHERE user_id = ?", [.text(userID)]).first?.int(0) ?? 0)
        let list = try rows("""
            SELECT user_id, client_id, remembered_scope, granted_scope, auth_time, access_time, created_at FROM connections
            WHERE user_id = ? ORDER BY created_at, client_id LIMIT ? OFFSET ?
            """, [.text(userID), SQLValue(limit), SQLValue(offset)]).map(SQLiteStore.connection)
        return (list, total)
    }

    public func deleteConnection(userID: String, clientID: String) throws {
        try exec("DELETE FROM connections WHERE user_id = ? AND client_id = ?", [.text(userID), .text(clientID)])
        try exec("DELETE FROM authorization_codes WHERE user_id = ? AND client_id = ? AND consumed_at IS NULL", [.text(userID), .text(clientID)])
    }

    /// Records use of a connection, to the minute: a refresh within a minute
    /// of the last recorded use writes nothing.
    public func touchConnection(userID: String, clientID: String, accessTime: Int64) throws {
        try exec("UPDATE connections SET access_time = ? WHERE user_id = ? AND client_id = ? AND access_time <= ?",
                 [.integer(accessTime), .text(userID), .text(clientID), .integer(accessTime - 60_000)])
    }
}

import Common
import Foundation
import OAuth
import Postgres

/// Users, their sessions and the apps they connected (UserStorage, ConnectionStorage).
extension PostgresStore {
    // MARK: Users

    public func insertUser(_ u: User) throws {
        try exec("INSERT INTO users(id, username, email, name, password_hash, created_at) VALUES(?, ?, ?, ?, ?, ?)",
                 [.text(u.id), .text(u.username), PGValue(u.email), PGValue(u.name), .text(u.passwordHash), .int(u.createdAt)])
    }

    static func user(_ r: PGRow) -> User {
        User(id: r.string(0), username: r.string(1), email: r.optionalString(2), name: r.optionalString(3), passwordHash: r.string(4), createdAt: r.int(5))
    }

    public func user(username: String) throws -> User? {
        try rows("SELECT id, username, email, name, password_hash, created_at FROM users WHERE username = ?", [.text(username)]).first.map(PostgresStore.user)
    }

    public func user(id: String) throws -> User? {
        if keepsAlong, let known = along.users[id] { return known }
        return try rows("SELECT id, username, email, name, password_hash, created_at FROM users WHERE id = ?", [.text(id)]).first.map(PostgresStore.user)
    }

    /// The user of an outer join's columns from `start` on (nil when it found none), kept along.
    func keepUser(_ r: PGRow, from start: Int, id: String) {
        guard keepsAlong else { return }
        along.users[id] = r.isNull(start) ? .some(nil) : PostgresStore.user(r.columns(from: start))
    }

    // MARK: Sessions

    public func insertSession(_ s: SessionRecord) throws {
        try blindWrite("INSERT INTO sessions(id_hash, user_id, csrf, auth_time, created_at, expires_at) VALUES(?, ?, ?, ?, ?, ?)",
                       [.text(s.idHash), .text(s.userID), .text(s.csrf), .int(s.authTime), .int(s.createdAt), .int(s.expiresAt)])
        try blindWrite("DELETE FROM sessions WHERE expires_at < ?", [.int(s.createdAt)])
    }

    public func session(idHash: String) throws -> SessionRecord? {
        // The user comes along: a session is read to learn who is signed in.
        guard let r = try rows("""
            SELECT s.id_hash, s.user_id, s.csrf, s.auth_time, s.created_at, s.expires_at,
              u.id, u.username, u.email, u.name, u.password_hash, u.created_at
            FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?
            """, [.text(idHash)]).first else { return nil }
        keepUser(r, from: 6, id: r.string(1))
        return SessionRecord(idHash: r.string(0), userID: r.string(1), csrf: r.string(2), authTime: r.int(3), createdAt: r.int(4), expiresAt: r.int(5))
    }

    public func deleteSession(idHash: String) throws { try exec("DELETE FROM sessions WHERE id_hash = ?", [.text(idHash)]) }

    // MARK: Connections

    static func connection(_ r: PGRow) -> UserConnection {
        UserConnection(userID: r.string(0), clientID: r.string(1), rememberedScope: Scopes.parse(r.string(2)) ?? [],
                   grantedScope: Scopes.parse(r.string(3)) ?? [], authTime: r.int(4), accessTime: r.int(5), createdAt: r.int(6))
    }

    public func connection(userID: String, clientID: String) throws -> UserConnection? {
        if keepsAlong, let known = along.connections[AlongRows.key(userID, clientID)] { return known }
        return try rows("""
            SELECT user_id, client_id, remembered_scope, granted_scope, auth_time, access_time, created_at FROM connections
            WHERE user_id = ? AND client_id = ?
            """, [.text(userID), .text(clientID)]).first.map(PostgresStore.connection)
    }

    public func upsertConnection(_ c: UserConnection) throws {
        try blindWrite("""
            INSERT INTO connections(user_id, client_id, remembered_scope, granted_scope, auth_time, access_time, created_at)
            VALUES(?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(user_id, client_id) DO UPDATE SET remembered_scope = excluded.remembered_scope,
              granted_scope = excluded.granted_scope, auth_time = excluded.auth_time, access_time = excluded.access_time
            """, [.text(c.userID), .text(c.clientID), .text(Scopes.join(c.rememberedScope)), .text(Scopes.join(c.grantedScope)),
                  .int(c.authTime), .int(c.accessTime), .int(c.createdAt)])
    }

    public func connections(userID: String, limit: Int, offset: Int) throws -> (connections: [UserConnection], total: Int) {
        let total = Int(try rows("SELECT count(*) FROM connections WHERE user_id = ?", [.text(userID)]).first?.int(0) ?? 0)
        let list = try rows("""
            SELECT user_id, client_id, remembered_scope, granted_scope, auth_time, access_time, created_at FROM connections
            WHERE user_id = ? ORDER BY created_at, client_id LIMIT ? OFFSET ?
            """, [.text(userID), PGValue(limit), PGValue(offset)]).map(PostgresStore.connection)
        return (list, total)
    }

    public func deleteConnection(userID: String, clientID: String) throws {
        try exec("DELETE FROM connections WHERE user_id = ? AND client_id = ?", [.text(userID), .text(clientID)])
        try exec("DELETE FROM authorization_codes WHERE user_id = ? AND client_id = ? AND consumed_at IS NULL", [.text(userID), .text(clientID)])
    }

    /// Records use of a connection, to the minute: a refresh within a minute
    /// of the last recorded use writes nothing.
    public func touchConnection(userID: String, clientID: String, accessTime: Int64) throws {
        try blindWrite("UPDATE connections SET access_time = ? WHERE user_id = ? AND client_id = ? AND access_time <= ?",
                 [.int(accessTime), .text(userID), .text(clientID), .int(accessTime - 60_000)])
    }
}

import Common
import Foundation
import OAuth
import SharedSQL
import Postgres

/// Users, their sessions and the apps they connected (UserStorage, ConnectionStorage).
extension PostgresStore {
    // MARK: Users

    public func user(id: String) throws -> User? {
        if keepsAlong, let known = along.users[id] { return known }
        return try rows("SELECT id, username, email, name, password_hash, created_at FROM users WHERE id = ?", [.text(id)]).first.map(SharedRows.user)
    }

    /// The user of an outer join's columns from `start` on (nil when it found none), kept along.
    func keepUser(_ r: PGRow, from start: Int, id: String) {
        guard keepsAlong else { return }
        along.users[id] = r.isNull(start) ? .some(nil) : SharedRows.user(r.columns(from: start))
    }

    /// `FOR NO KEY UPDATE`: a password change waits for it, as it must, and so does another sign-in of the user,
    /// which then counts this one's session (with `FOR SHARE`, sign-ins at once each counted the sessions without
    /// the others' and the user's session limit was passed). A session's foreign key (`KEY SHARE`) passes it.
    public func holdPasswordHash(userID: String) throws -> String? {
        precondition(writing, "holdPasswordHash outside a write")
        return try rows("SELECT password_hash FROM users WHERE id = ? FOR NO KEY UPDATE", [.text(userID)]).first?.string(0)
    }

    // MARK: Sessions

    public func holdSession(idHash: String) throws -> Bool {
        precondition(writing, "holdSession outside a write")
        try sendIfReadAhead(.session(idHash))
        if let held = along.sessions.removeValue(forKey: idHash) { return held }
        return try !rows(PostgresStore.holdSessionSQL, [.text(idHash)]).isEmpty
    }

    public func prefetchSessionHold(idHash: String) throws {
        guard writing, !committedEarly, !commitsWithNextStatement, along.sessions[idHash] == nil, !idHash.contains("\u{0}") else { return }
        readAhead(.session(idHash), PostgresStore.holdSessionSQL, [.text(idHash)])
    }

    /// `KEY SHARE`: a logout's delete of the row waits for the write holding it, and the other way round.
    static let holdSessionSQL = "SELECT 1 FROM sessions WHERE id_hash = ? FOR KEY SHARE"

    public func session(idHash: String) throws -> SessionRecord? {
        // The user comes along: a session is read to learn who is signed in.
        guard let r = try rows("""
            SELECT s.id_hash, s.user_id, s.csrf, s.auth_time, s.created_at, s.expires_at,
              u.id, u.username, u.email, u.name, u.password_hash, u.created_at, s.sid
            FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?
            """, [.text(idHash)]).first else { return nil }
        keepUser(r, from: 6, id: r.string(1))
        return SessionRecord(idHash: r.string(0), userID: r.string(1), csrf: r.string(2), authTime: r.int(3), createdAt: r.int(4), expiresAt: r.int(5),
                             sid: r.optionalString(12))
    }

    // MARK: Connections

    public func connection(userID: String, clientID: String) throws -> UserConnection? {
        let key = AlongRows.key(userID, clientID)
        try sendIfReadAhead(.connection(key))
        if keepsAlong, let known = along.connections[key] { return known }
        return try rows(PostgresStore.connectionSQL, [.text(userID), .text(clientID)]).first.map(SharedRows.connection)
    }

    /// Queued to travel with the write's next statement; its row is then kept as read along.
    public func prefetchConnection(userID: String, clientID: String) throws {
        precondition(writing && !committedEarly && !commitsWithNextStatement, "prefetchConnection outside a write")
        let key = AlongRows.key(userID, clientID)
        // A row read along without the lock (a code's redemption reads it) is read again, locked.
        guard !along.lockedConnections.contains(key), !userID.contains("\u{0}"), !clientID.contains("\u{0}") else { return }
        readAhead(.connection(key), PostgresStore.connectionSQL + " FOR NO KEY UPDATE", [.text(userID), .text(clientID)])
    }

    /// The connection's row merged with what a grant adds: the scopes
    /// granted are the row's as it is when the update runs and the grant's,
    /// in order, each once (two grants of a first connection at once both
    /// insert, and neither read the other's row; a row read for update
    /// (`prefetchConnection`) makes the other cases take turns).
    public func upsertConnection(_ c: UserConnection) throws {
        try blindWrite("""
            INSERT INTO connections(user_id, client_id, remembered_scope, granted_scope, auth_time, access_time, created_at)
            VALUES(?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(user_id, client_id) DO UPDATE SET remembered_scope = excluded.remembered_scope,
              granted_scope = (SELECT COALESCE(string_agg(s, ' ' ORDER BY first), '') FROM (
                SELECT s, min(n) AS first
                FROM unnest(string_to_array(connections.granted_scope || ' ' || excluded.granted_scope, ' ')) WITH ORDINALITY AS t(s, n)
                WHERE s <> '' GROUP BY s) AS granted),
              auth_time = excluded.auth_time, access_time = excluded.access_time
            """, [.text(c.userID), .text(c.clientID), .text(Scopes.join(c.rememberedScope)), .text(Scopes.join(c.grantedScope)),
                  .int(c.authTime), .int(c.accessTime), .int(c.createdAt)])
    }

    static let connectionSQL = """
        SELECT user_id, client_id, remembered_scope, granted_scope, auth_time, access_time, created_at FROM connections
        WHERE user_id = ? AND client_id = ?
        """
}

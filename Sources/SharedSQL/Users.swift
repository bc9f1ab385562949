import Common
import OAuth

extension SharedRows {
    public static func user(_ r: some SQLRowValues) -> User {
        User(id: r.string(0), username: r.string(1), email: r.optionalString(2), name: r.optionalString(3), passwordHash: r.string(4), createdAt: r.int(5))
    }

    /// A session's `sid` from a row of (id_hash, sid): a session from before `sid` was stored has the one derived from its hash.
    static func sessionSID(_ r: some SQLRowValues) -> String {
        r.optionalString(1) ?? BackchannelLogout.sid(sessionIDHash: r.string(0))
    }

    public static func connection(_ r: some SQLRowValues) -> UserConnection {
        UserConnection(userID: r.string(0), clientID: r.string(1), rememberedScope: Scopes.parse(r.string(2)) ?? [],
                   grantedScope: Scopes.parse(r.string(3)) ?? [], authTime: r.int(4), accessTime: r.int(5), createdAt: r.int(6))
    }
}

/// Users, their sessions and the apps they connected (UserStorage, ConnectionStorage), on both stores; the reads PostgreSQL
/// answers from rows read along stay in each store.
extension SQLStatementRunner {
    public func user(username: String) throws -> User? {
        try query("SELECT id, username, email, name, password_hash, created_at FROM users WHERE username = ?", [.text(username)]).first.map(SharedRows.user)
    }

    public func insertUser(_ u: User) throws {
        try update("INSERT INTO users(id, username, email, name, password_hash, created_at) VALUES(?, ?, ?, ?, ?, ?)",
                 [.text(u.id), .text(u.username), SQLArgument(u.email), SQLArgument(u.name), .text(u.passwordHash), .int(u.createdAt)])
    }

    public func userProfile(userID: String) throws -> UserProfile? {
        try query("SELECT profile FROM user_profiles WHERE user_id = ?", [.text(userID)]).first.flatMap { try? JSON.parse($0.string(0)) }
            .map(UserProfile.init(json:))
    }

    public func setUserProfile(userID: String, profile: UserProfile) throws {
        try update("""
            INSERT INTO user_profiles(user_id, profile) VALUES(?, ?) ON CONFLICT(user_id) DO UPDATE SET profile = excluded.profile
            """, [.text(userID), .text(profile.json.text)])
    }

    public func deleteSession(idHash: String) throws { try update("DELETE FROM sessions WHERE id_hash = ?", [.text(idHash)]) }

    public func setPasswordHash(userID: String, hash: String) throws {
        try update("UPDATE users SET password_hash = ? WHERE id = ?", [.text(hash), .text(userID)])
    }

    public func takeSessions(userID: String) throws -> [String] {
        // Read and deleted through `sessions_by_user` (a foreign key's index, as every one has: StoreTests).
        let sids = try query("SELECT id_hash, sid FROM sessions WHERE user_id = ? ORDER BY created_at", [.text(userID)]).map(SharedRows.sessionSID)
        if !sids.isEmpty { try update("DELETE FROM sessions WHERE user_id = ?", [.text(userID)]) }
        return sids
    }

    public func takeSessions(userID: String, beyondNewest keeping: Int, besides started: String) throws -> [String] {
        // Rarely more than one: a sign-in adds one session. Bounded all the same (the rest go at the next sign-in).
        let beyond = try query("""
            SELECT id_hash, sid FROM sessions WHERE user_id = ? AND id_hash <> ? ORDER BY created_at DESC, id_hash DESC LIMIT 100 OFFSET ?
            """, [.text(userID), .text(started), SQLArgument(max(keeping - 1, 0))])
        return try beyond.map {
            try update("DELETE FROM sessions WHERE id_hash = ?", [.text($0.string(0))])
            return SharedRows.sessionSID($0)
        }
    }

    public func insertSession(_ s: SessionRecord) throws {
        try blindUpdate("INSERT INTO sessions(id_hash, user_id, csrf, auth_time, created_at, expires_at, sid) VALUES(?, ?, ?, ?, ?, ?, ?)",
                 [.text(s.idHash), .text(s.userID), .text(s.csrf), .int(s.authTime), .int(s.createdAt), .int(s.expiresAt), .text(s.sid)])
        try blindUpdate(ExpiredRows.sessions, ExpiredRows.arguments(before: s.createdAt))
    }

    public func upsertConnection(_ c: UserConnection) throws {
        try blindUpdate("""
            INSERT INTO connections(user_id, client_id, remembered_scope, granted_scope, auth_time, access_time, created_at)
            VALUES(?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(user_id, client_id) DO UPDATE SET remembered_scope = excluded.remembered_scope,
              granted_scope = excluded.granted_scope, auth_time = excluded.auth_time, access_time = excluded.access_time
            """, [.text(c.userID), .text(c.clientID), .text(Scopes.join(c.rememberedScope)), .text(Scopes.join(c.grantedScope)),
                  .int(c.authTime), .int(c.accessTime), .int(c.createdAt)])
    }

    public func connections(userID: String, limit: Int, offset: Int) throws -> (connections: [UserConnection], total: Int) {
        let total = Int(try query("SELECT count(*) FROM connections WHERE user_id = ?", [.text(userID)]).first?.int(0) ?? 0)
        let list = try query("""
            SELECT user_id, client_id, remembered_scope, granted_scope, auth_time, access_time, created_at FROM connections
            WHERE user_id = ? ORDER BY created_at, client_id LIMIT ? OFFSET ?
            """, [.text(userID), SQLArgument(limit), SQLArgument(offset)]).map(SharedRows.connection)
        return (list, total)
    }

    /// False when there was no connection to delete (one deleted meanwhile by a request racing this one): then
    /// nothing else is touched.
    @discardableResult
    public func deleteConnection(userID: String, clientID: String) throws -> Bool {
        guard try update("DELETE FROM connections WHERE user_id = ? AND client_id = ?", [.text(userID), .text(clientID)]) == 1 else { return false }
        try update("DELETE FROM authorization_codes WHERE user_id = ? AND client_id = ? AND consumed_at IS NULL", [.text(userID), .text(clientID)])
        // A device code approved but not yet redeemed is a grant in waiting: the device's next poll is access_denied.
        try update("UPDATE device_codes SET status = 'denied' WHERE user_id = ? AND client_id = ? AND status = 'approved'", [.text(userID), .text(clientID)])
        return true
    }

    /// Records use of a connection, to the minute: a refresh within a minute
    /// of the last recorded use writes nothing.
    public func touchConnection(userID: String, clientID: String, accessTime: Int64) throws {
        try blindUpdate("UPDATE connections SET access_time = ? WHERE user_id = ? AND client_id = ? AND access_time <= ?",
                 [.int(accessTime), .text(userID), .text(clientID), .int(accessTime - 60_000)])
    }

    public func forgetRememberedConsent(clientID: String) throws {
        try blindUpdate("UPDATE connections SET remembered_scope = '' WHERE client_id = ? AND remembered_scope <> ''", [.text(clientID)])
    }
}

import Common
import Foundation
import OAuth
import SQLite
import Synchronization

/// Serialises writers inside one process: SQLite's busy handler sleeps and
/// backs off, which gives 100+ ms tails under write contention; a lock in
/// front of `BEGIN IMMEDIATE` keeps writers in line instead. Shared by all
/// connections to one database file.
public final class WriterLock: Sendable {
    let lock = NSLock()
    public init() {}
}

/// The SQLite implementation of `Store`: WAL, foreign keys, a busy timeout,
/// `BEGIN IMMEDIATE` for writes, prepared statements cached per connection.
/// One instance per thread.
///
/// The hottest reads (a client, its secrets, meta values, revocation
/// checks) are remembered between read transactions while the data they
/// come from is unchanged: `PRAGMA data_version` moves whenever another
/// connection commits, and `config_generation` (bumped by triggers on every
/// change to organizations, clients, secrets, logos, signing keys and
/// meta) tells whether such a commit touched the configuration. A
/// remembered answer is always the one the query would give.
public final class SQLiteStore: Store {
    let db: Connection
    let writerLock: WriterLock
    private var depth = 0
    private var writing = false
    private var memo = ReadMemo()
    /// Inside `read` with the memo valid and no `BEGIN` run yet.
    private var deferredBegin = false
    /// Statements this store has run (reads, writes, transaction control):
    /// lets tests see which requests the memo answers.
    public private(set) var statementsRun = 0
    /// `data_version` and `config_generation.n` in one statement (which, as
    /// the first of a transaction, also starts its snapshot).
    static let countersSQL = "SELECT (SELECT data_version FROM pragma_data_version()), n FROM config_generation WHERE id = 1"

    /// Opens (creating if needed) the database and applies pending migrations.
    /// `autoCheckpointPages`: SQLite's default (1000) checkpoints inside the
    /// committing request; `latchkey serve` raises it and checkpoints from a
    /// background thread instead (`Checkpointer`), keeping this only as a
    /// backstop should the background thread fall behind.
    public init(path: String, writerLock: WriterLock = WriterLock(), migrate: Bool = true, busyTimeoutMillis: Int32 = 5000,
                autoCheckpointPages: Int = 1000) throws {
        do {
            db = try Connection(path: path, busyTimeoutMillis: busyTimeoutMillis)
            self.writerLock = writerLock
            try db.execute("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY;")
            try db.execute("PRAGMA wal_autocheckpoint = \(max(0, autoCheckpointPages))")
            if migrate { try SQLiteStore.migrate(db) }
        } catch let error as SQLiteError {
            throw SQLiteStore.map(error)
        }
    }

    /// Applies the migrations after `user_version`, each in its own transaction.
    /// Returns how many were applied.
    @discardableResult
    static func migrate(_ db: Connection) throws -> Int {
        let mode = try db.query("PRAGMA journal_mode = WAL").first?.string(0) ?? ""
        _ = mode
        var applied = 0
        let current = try db.userVersion
        for (index, sql) in Schema.migrations.enumerated() where index + 1 > current {
            try db.execute("BEGIN IMMEDIATE")
            do {
                // Re-check inside the lock: another process may have migrated meanwhile.
                if try db.userVersion >= index + 1 { try db.execute("COMMIT"); continue }
                try db.execute(sql)
                try db.setUserVersion(index + 1)
                try db.execute("COMMIT")
                applied += 1
            } catch {
                try? db.execute("ROLLBACK")
                throw error
            }
        }
        return applied
    }

    public static var schemaVersion: Int { Schema.migrations.count }

    public func migrate() throws -> Int { try wrap { try SQLiteStore.migrate(db) } }

    public func schemaVersionApplied() throws -> Int { try wrap { try db.userVersion } }

    /// Copies what it can of the WAL into the database without waiting for
    /// readers or writers (`PRAGMA wal_checkpoint(PASSIVE)`); returns the
    /// WAL's frames and how many of them are now in the database.
    /// With `restart`, waits (busy timeout) for readers and writers and has
    /// the next writer start the WAL over (`RESTART`).
    @discardableResult
    public func checkpoint(restart: Bool = false) throws -> (walFrames: Int, checkpointed: Int, busy: Bool) {
        let row = try rows(restart ? "PRAGMA wal_checkpoint(RESTART)" : "PRAGMA wal_checkpoint(PASSIVE)").first
        return (Int(row?.int(1) ?? 0), Int(row?.int(2) ?? 0), row?.int(0) == 1)
    }

    /// A consistent online copy of the database (`VACUUM INTO`).
    public func backup(to path: String) throws {
        _ = try wrap { try db.run("VACUUM INTO ?", [.text(path)]) }
    }

    static func map(_ error: SQLiteError) -> Error {
        if error.isBusy { return StoreError.busy }
        if error.isConstraint { return StoreError.conflict(error.message) }
        return error
    }

    func wrap<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as SQLiteError {
            throw SQLiteStore.map(error)
        }
    }

    func rows(_ sql: String, _ values: [SQLValue] = []) throws -> [Row] {
        if deferredBegin { try beginRead() }
        statementsRun += 1
        return try wrap { try db.query(sql, values) }
    }

    /// A statement that may change data: the memo no longer holds.
    @discardableResult
    func exec(_ sql: String, _ values: [SQLValue] = []) throws -> Int {
        memo.invalidate()
        statementsRun += 1
        return try wrap { try db.run(sql, values) }
    }

    /// Transaction control, which changes no data (a cached prepared statement).
    func control(_ sql: String) throws {
        statementsRun += 1
        _ = try wrap { try db.run(sql) }
    }

    /// True inside a read transaction whose snapshot the memo belongs to.
    private var memoUsable: Bool { depth > 0 && !writing && memo.version >= 0 }

    /// The remembered answer for `key` in `table`, or `load()`'s, remembered.
    private func memoized<V>(_ table: WritableKeyPath<ReadMemo, [String: V]>, _ key: String, _ load: () throws -> V) throws -> V {
        guard memoUsable else { return try load() }
        if let hit = memo[keyPath: table][key] { return hit }
        let value = try load()
        if memo[keyPath: table].count >= ReadMemo.capacity { memo[keyPath: table].removeAll(keepingCapacity: true) }
        memo[keyPath: table][key] = value
        return value
    }

    // MARK: Transactions

    public func write<T>(_ body: () throws -> T) throws -> T {
        if depth > 0 {
            // A write inside a read transaction could not take the writer lock
            // and could fail on a stale snapshot: that is a bug in the caller.
            precondition(writing, "write transaction requested inside a read transaction")
            depth += 1
            defer { depth -= 1 }
            return try body()
        }
        writerLock.lock.lock()
        defer { writerLock.lock.unlock() }
        try control("BEGIN IMMEDIATE")
        depth = 1
        writing = true
        defer { depth = 0; writing = false }
        do {
            let result = try body()
            // The counters as they will stand after the commit: no other
            // connection can commit while this one holds the write lock, and
            // `data_version` does not move for a connection's own commits. The
            // memo then stays valid through a write that leaves the
            // configuration alone (a token, a code, a grant): the next read
            // is answered without a transaction, as after any other read.
            let after = try counters()
            try control("COMMIT")
            memo.revalidate(version: after.version, configGeneration: after.configGeneration)
            return result
        } catch {
            memo.invalidate()
            if db.isInTransaction { try? db.execute("ROLLBACK") }
            throw error
        }
    }

    /// A read transaction. When no other connection has committed since the
    /// memo was last validated (one `PRAGMA data_version`, in autocommit),
    /// the transaction itself is begun only if a query has to run: a request
    /// answered from the memo costs one statement, not three. Answers given
    /// before such a late `BEGIN` are those of the state at the start of the
    /// call; from the `BEGIN` on, everything comes from one snapshot.
    public func read<T>(_ body: () throws -> T) throws -> T {
        if depth > 0 { return try body() }
        statementsRun += 1
        let version = try wrap { try db.integer("PRAGMA data_version") } ?? -1
        depth = 1
        defer { depth = 0; deferredBegin = false }
        do {
            if version == memo.version && version >= 0 {
                deferredBegin = true
            } else {
                try beginRead()
            }
            let result = try body()
            if db.isInTransaction { try control("COMMIT") }
            return result
        } catch {
            if db.isInTransaction { try? db.execute("ROLLBACK") }
            throw error
        }
    }

    /// BEGIN, then revalidate the memo against the snapshot it starts.
    private func beginRead() throws {
        deferredBegin = false
        try control("BEGIN")
        // One statement starts the snapshot and reads both counters.
        let now = try counters()
        if now.version != memo.version { memo.revalidate(version: now.version, configGeneration: now.configGeneration) }
    }

    /// `data_version` and `config_generation.n` (-1 when unreadable: the memo is then unusable).
    private func counters() throws -> (version: Int64, configGeneration: Int64) {
        let row = try rows(SQLiteStore.countersSQL).first
        return (row?.int(0) ?? -1, row?.int(1) ?? -1)
    }

    // MARK: Meta

    public func deleteMeta(_ key: String) throws {
        try exec("DELETE FROM meta WHERE key = ?", [.text(key)])
    }

    public func meta(_ key: String) throws -> String? {
        try memoized(\.meta, key) { try rows("SELECT value FROM meta WHERE key = ?", [.text(key)]).first?.string(0) }
    }

    public func setMeta(_ key: String, _ value: String) throws {
        try exec("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [.text(key), .text(value)])
    }

    // MARK: Organizations

    public func insertOrganization(_ o: Organization) throws {
        try exec("INSERT INTO organizations(id, name, client_limit, primary_client_id, created_at) VALUES(?, ?, ?, ?, ?)",
                 [.text(o.id), .text(o.name), SQLValue(o.clientLimit), SQLValue(o.primaryClientID), .integer(o.createdAt)])
    }

    public func organization(_ id: String) throws -> Organization? {
        try rows("SELECT id, name, client_limit, primary_client_id, created_at FROM organizations WHERE id = ?", [.text(id)]).first.map {
            Organization(id: $0.string(0), name: $0.string(1), clientLimit: Int($0.int(2)), primaryClientID: $0.optionalString(3), createdAt: $0.int(4))
        }
    }

    public func setPrimaryClient(organizationID: String, clientID: String) throws {
        try exec("UPDATE organizations SET primary_client_id = ? WHERE id = ?", [.text(clientID), .text(organizationID)])
    }

    /// The organization's client count, kept by triggers (migration 6): no scan.
    public func clientCount(organizationID: String) throws -> Int {
        Int(try rows("SELECT client_count FROM organizations WHERE id = ?", [.text(organizationID)]).first?.int(0) ?? 0)
    }

    // MARK: Clients

    static let clientColumns = """
        c.client_id, c.organization_id, c.is_primary, c.client_name, c.description, c.client_uri, c.redirect_uris, c.grant_types,
        c.token_endpoint_auth_method, c.scope, c.access_token_ttl, c.refresh_token_ttl, c.enabled, c.extra_data, c.attributes,
        c.created_at, c.updated_at, c.version, c.last_used_at, EXISTS(SELECT 1 FROM client_logos l WHERE l.client_id = c.client_id),
        c.token_generation
        """

    static func client(_ r: Row) -> Client {
        func strings(_ i: Int) -> [String] { ((try? JSON.parse(r.string(i)))?.arrayValue ?? []).compactMap(\.stringValue) }
        return Client(clientID: r.string(0), organizationID: r.string(1), isPrimary: r.bool(2), name: r.string(3),
                      description: r.optionalString(4), clientURI: r.optionalString(5), redirectURIs: strings(6), grantTypes: strings(7),
                      authMethod: r.string(8), scope: Scopes.parse(r.string(9)) ?? [], accessTokenTTL: Int(r.int(10)),
                      refreshTokenTTL: Int(r.int(11)), enabled: r.bool(12), extraData: (try? JSON.parse(r.string(13))) ?? .object([]),
                      attributes: (try? JSON.parse(r.string(14))) ?? .object([]), createdAt: r.int(15), updatedAt: r.int(16),
                      version: Int(r.int(17)), lastUsedAt: r.optionalInt(18), hasLogo: r.bool(19), tokenGeneration: Int(r.int(20)))
    }

    static func values(_ c: Client) -> [SQLValue] {
        [.text(c.clientID), .text(c.organizationID), SQLValue(c.isPrimary), .text(c.name), SQLValue(c.description), SQLValue(c.clientURI),
         .text(JSON(c.redirectURIs).text), .text(JSON(c.grantTypes).text), .text(c.authMethod), .text(Scopes.join(c.scope)),
         SQLValue(c.accessTokenTTL), SQLValue(c.refreshTokenTTL), SQLValue(c.enabled), .text(c.extraData.text), .text(c.attributes.text),
         .integer(c.createdAt), .integer(c.updatedAt), SQLValue(c.version), SQLValue(c.lastUsedAt), SQLValue(c.tokenGeneration)]
    }

    public func insertClient(_ c: Client) throws {
        try exec("""
            INSERT INTO clients(client_id, organization_id, is_primary, client_name, description, client_uri, redirect_uris, grant_types,
              token_endpoint_auth_method, scope, access_token_ttl, refresh_token_ttl, enabled, extra_data, attributes, created_at,
              updated_at, version, last_used_at, token_generation) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, SQLiteStore.values(c))
    }

    public func client(_ id: String) throws -> Client? {
        try memoized(\.clients, id) {
            try rows("SELECT \(SQLiteStore.clientColumns) FROM clients c WHERE c.client_id = ?", [.text(id)]).first.map(SQLiteStore.client)
        }
    }

    public func updateClient(_ c: Client) throws {
        var values = Array(SQLiteStore.values(c).dropFirst(2))
        values.append(.text(c.clientID))
        try exec("""
            UPDATE clients SET is_primary = ?, client_name = ?, description = ?, client_uri = ?, redirect_uris = ?, grant_types = ?,
              token_endpoint_auth_method = ?, scope = ?, access_token_ttl = ?, refresh_token_ttl = ?, enabled = ?, extra_data = ?,
              attributes = ?, created_at = ?, updated_at = ?, version = ?, last_used_at = ?, token_generation = ? WHERE client_id = ?
            """, values)
    }

    public func deleteClient(_ id: String) throws {
        try exec("DELETE FROM clients WHERE client_id = ?", [.text(id)])
    }

    public func isClientIDRetired(_ id: String) throws -> Bool {
        try !rows("SELECT 1 FROM retired_client_ids WHERE client_id = ?", [.text(id)]).isEmpty
    }

    public func clients(organizationID: String, namePrefix: String?, limit: Int, offset: Int) throws -> (clients: [Client], total: Int) {
        var filter = "c.organization_id = ?"
        var values: [SQLValue] = [.text(organizationID)]
        if let namePrefix, !namePrefix.isEmpty {
            filter += " AND substr(c.client_name, 1, ?) = ?"
            values += [SQLValue(namePrefix.unicodeScalars.count), .text(namePrefix)]
        }
        let total = namePrefix?.isEmpty == false
            ? Int(try rows("SELECT count(*) FROM clients c WHERE \(filter)", values).first?.int(0) ?? 0)
            : try clientCount(organizationID: organizationID)
        let list = try rows("SELECT \(SQLiteStore.clientColumns) FROM clients c WHERE \(filter) ORDER BY c.created_at, c.client_id LIMIT ? OFFSET ?",
                            values + [SQLValue(limit), SQLValue(offset)]).map(SQLiteStore.client)
        return (list, total)
    }

    public func touchClient(_ id: String, lastUsedAt: Int64) throws {
        try exec("UPDATE clients SET last_used_at = ? WHERE client_id = ?", [.integer(lastUsedAt), .text(id)])
    }

    // MARK: Logos

    public func setLogo(clientID: String, contentType: String, image: [UInt8], preview: [UInt8], etag: String, at: Int64) throws {
        try exec("""
            INSERT INTO client_logos(client_id, content_type, image, preview, etag, updated_at) VALUES(?, ?, ?, ?, ?, ?)
            ON CONFLICT(client_id) DO UPDATE SET content_type = excluded.content_type, image = excluded.image,
              preview = excluded.preview, etag = excluded.etag, updated_at = excluded.updated_at
            """, [.text(clientID), .text(contentType), .blob(image), .blob(preview), .text(etag), .integer(at)])
    }

    public func logoPreview(clientID: String) throws -> [UInt8]? {
        try rows("SELECT preview FROM client_logos WHERE client_id = ? AND preview IS NOT NULL", [.text(clientID)]).first.map { $0.blob(0) }
    }

    public func logo(clientID: String) throws -> (contentType: String, image: [UInt8], etag: String)? {
        try rows("SELECT content_type, image, etag FROM client_logos WHERE client_id = ?", [.text(clientID)]).first.map {
            ($0.string(0), $0.blob(1), $0.string(2))
        }
    }

    public func deleteLogo(clientID: String) throws {
        try exec("DELETE FROM client_logos WHERE client_id = ?", [.text(clientID)])
    }

    // MARK: Secrets

    public func insertSecret(_ s: ClientSecret) throws {
        try exec("INSERT INTO client_secrets(client_id, kind, hash, created_at, expires_at) VALUES(?, ?, ?, ?, ?)",
                 [.text(s.clientID), .text(s.kind.rawValue), .text(s.hash), .integer(s.createdAt), SQLValue(s.expiresAt)])
    }

    public func secrets(clientID: String) throws -> [ClientSecret] {
        try memoized(\.secrets, clientID) { try loadSecrets(clientID: clientID) }
    }

    func loadSecrets(clientID: String) throws -> [ClientSecret] {
        try rows("SELECT id, client_id, kind, hash, created_at, expires_at FROM client_secrets WHERE client_id = ? ORDER BY id DESC", [.text(clientID)]).map {
            ClientSecret(id: $0.int(0), clientID: $0.string(1), kind: ClientSecret.Kind(rawValue: $0.string(2)) ?? .hmac, hash: $0.string(3),
                         createdAt: $0.int(4), expiresAt: $0.optionalInt(5))
        }
    }

    public func deleteSecret(id: Int64) throws { try exec("DELETE FROM client_secrets WHERE id = ?", [.integer(id)]) }

    public func setSecretExpiry(id: Int64, expiresAt: Int64?) throws {
        try exec("UPDATE client_secrets SET expires_at = ? WHERE id = ?", [SQLValue(expiresAt), .integer(id)])
    }

    // MARK: Signing keys

    public func insertSigningKey(_ k: SigningKeyRecord) throws {
        try exec("INSERT INTO signing_keys(kid, algorithm, private_key, encrypted, public_key, created_at, retired_at) VALUES(?, ?, ?, ?, ?, ?, ?)",
                 [.text(k.kid), .text(k.algorithm), .blob(k.privateKey), SQLValue(k.encrypted), .blob(k.publicKey), .integer(k.createdAt), SQLValue(k.retiredAt)])
    }

    public func signingKeys() throws -> [SigningKeyRecord] {
        try rows("SELECT kid, algorithm, private_key, encrypted, public_key, created_at, retired_at FROM signing_keys ORDER BY created_at DESC").map {
            SigningKeyRecord(kid: $0.string(0), algorithm: $0.string(1), privateKey: $0.blob(2), encrypted: $0.bool(3), publicKey: $0.blob(4),
                             createdAt: $0.int(5), retiredAt: $0.optionalInt(6))
        }
    }

    public func retireSigningKeys(at: Int64) throws {
        try exec("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL", [.integer(at)])
    }

    public func sealSigningKey(kid: String, privateKey: [UInt8]) throws {
        try exec("UPDATE signing_keys SET private_key = ?, encrypted = 1 WHERE kid = ?", [.blob(privateKey), .text(kid)])
    }

    public func deleteSigningKeys(retiredBefore: Int64) throws {
        try exec("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?", [.integer(retiredBefore)])
    }

    // MARK: Revocation

    public func revokeAccessToken(jti: String, expiresAt: Int64) throws {
        try exec("INSERT OR IGNORE INTO revoked_tokens(jti, expires_at) VALUES(?, ?)", [.text(jti), .integer(expiresAt)])
        try exec("DELETE FROM revoked_tokens WHERE expires_at < ?", [.integer(expiresAt - 2 * 86_400_000)])
    }

    public func isAccessTokenRevoked(jti: String) throws -> Bool {
        try memoized(\.revokedTokens, jti) { !(try rows("SELECT 1 FROM revoked_tokens WHERE jti = ?", [.text(jti)]).isEmpty) }
    }

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

    // MARK: Upstream clients

    static let upstreamColumns = """
        sys_id, organization_id, name, provider, tenant_id, client_id, secret, secret_encrypted, description, cluster_redirect_urls,
        opswise_groups, scopes, version, created_at, updated_at
        """

    static func upstream(_ r: Row) -> UpstreamClient {
        func strings(_ i: Int) -> [String] { ((try? JSON.parse(r.string(i)))?.arrayValue ?? []).compactMap(\.stringValue) }
        let urls = ((try? JSON.parse(r.string(9)))?.arrayValue ?? []).map { (node: $0["clusterNode"]?.stringValue ?? "", url: $0["redirectUrl"]?.stringValue ?? "") }
        return UpstreamClient(sysID: r.string(0), organizationID: r.string(1), name: r.string(2), provider: r.string(3), tenantID: r.optionalString(4),
                              clientID: r.string(5), secret: r.blob(6), secretEncrypted: r.bool(7), description: r.optionalString(8),
                              clusterRedirectURLs: urls, opswiseGroups: strings(10), scopes: strings(11), version: Int(r.int(12)),
                              createdAt: r.int(13), updatedAt: r.int(14))
    }

    static func upstreamValues(_ u: UpstreamClient) -> [SQLValue] {
        let urls = JSON.array(u.clusterRedirectURLs.map { ["clusterNode": .string($0.node), "redirectUrl": .string($0.url)] })
        return [.text(u.sysID), .text(u.organizationID), .text(u.name), .text(u.provider), SQLValue(u.tenantID), .text(u.clientID), .blob(u.secret),
                SQLValue(u.secretEncrypted), SQLValue(u.description), .text(urls.text), .text(JSON(u.opswiseGroups).text), .text(JSON(u.scopes).text),
                SQLValue(u.version), .integer(u.createdAt), .integer(u.updatedAt)]
    }

    public func insertUpstream(_ u: UpstreamClient) throws {
        try exec("INSERT INTO upstream_clients(\(SQLiteStore.upstreamColumns)) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", SQLiteStore.upstreamValues(u))
    }

    public func updateUpstream(_ u: UpstreamClient) throws {
        var values = Array(SQLiteStore.upstreamValues(u).dropFirst(2))
        values.append(.text(u.sysID))
        try exec("""
            UPDATE upstream_clients SET name = ?, provider = ?, tenant_id = ?, client_id = ?, secret = ?, secret_encrypted = ?, description = ?,
              cluster_redirect_urls = ?, opswise_groups = ?, scopes = ?, version = ?, created_at = ?, updated_at = ? WHERE sys_id = ?
            """, values)
    }

    public func upstream(sysID: String) throws -> UpstreamClient? {
        try rows("SELECT \(SQLiteStore.upstreamColumns) FROM upstream_clients WHERE sys_id = ?", [.text(sysID)]).first.map(SQLiteStore.upstream)
    }

    public func upstream(organizationID: String, name: String) throws -> UpstreamClient? {
        try rows("SELECT \(SQLiteStore.upstreamColumns) FROM upstream_clients WHERE organization_id = ? AND name = ?",
                 [.text(organizationID), .text(name)]).first.map(SQLiteStore.upstream)
    }

    public func upstreams(organizationID: String) throws -> [UpstreamClient] {
        try rows("SELECT \(SQLiteStore.upstreamColumns) FROM upstream_clients WHERE organization_id = ? ORDER BY name",
                 [.text(organizationID)]).map(SQLiteStore.upstream)
    }

    public func upstreamsStoredInClear() throws -> [UpstreamClient] {
        try rows("SELECT \(SQLiteStore.upstreamColumns) FROM upstream_clients WHERE secret_encrypted = 0").map(SQLiteStore.upstream)
    }

    public func deleteUpstream(sysID: String) throws { try exec("DELETE FROM upstream_clients WHERE sys_id = ?", [.text(sysID)]) }

    // MARK: Audit

    public func appendAudit(_ e: AuditEvent) throws {
        try exec("INSERT INTO audit_events(organization_id, actor, action, target, surface, request_id, details, created_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                 [SQLValue(e.organizationID), .text(e.actor), .text(e.action), SQLValue(e.target), .text(e.surface), SQLValue(e.requestID),
                  .text(e.details.text), .integer(e.createdAt)])
    }

    public func auditEvents(organizationID: String, limit: Int, offset: Int) throws -> (events: [AuditEvent], total: Int) {
        let total = Int(try rows("SELECT count(*) FROM audit_events WHERE organization_id = ?", [.text(organizationID)]).first?.int(0) ?? 0)
        let events = try rows("""
            SELECT id, organization_id, actor, action, target, surface, request_id, details, created_at FROM audit_events
            WHERE organization_id = ? ORDER BY id DESC LIMIT ? OFFSET ?
            """, [.text(organizationID), SQLValue(limit), SQLValue(offset)]).map {
            AuditEvent(id: $0.int(0), organizationID: $0.optionalString(1), actor: $0.string(2), action: $0.string(3), target: $0.optionalString(4),
                       surface: $0.string(5), requestID: $0.optionalString(6), details: (try? JSON.parse($0.string(7))) ?? .object([]), createdAt: $0.int(8))
        }
        return (events, total)
    }
}


/// Checkpoints the WAL from its own thread and connection every
/// `intervalMillis`, so the copy into the database file and its fsync
/// (`synchronous=NORMAL` syncs at checkpoints) stay off the request path,
/// where they would hold the writer lock.
///
/// A PASSIVE checkpoint never waits, but under a steady stream of writes it
/// never finishes either, and the WAL only starts over after one that did.
/// So when the WAL has grown past `restartFrames`, the round takes the
/// in-process writer lock (writers wait, readers do not) and runs a RESTART
/// checkpoint, which has little left to copy after the PASSIVE one.
public final class Checkpointer: Sendable {
    private let path: String
    private let intervalMillis: Int
    private let writerLock: WriterLock?
    private let restartFrames: Int
    private let state = Mutex<(started: Bool, stop: Bool, done: Bool)>((false, false, false))

    public init(path: String, intervalMillis: Int = 200, writerLock: WriterLock? = nil, restartFrames: Int = 4096) {
        self.path = path
        self.intervalMillis = intervalMillis
        self.writerLock = writerLock
        self.restartFrames = restartFrames
    }

    /// Starts the thread; it runs until `stop()`.
    public func start() {
        state.withLock { $0.started = true }
        let thread = Thread { [self] in self.loop() }
        thread.name = "latchkey-checkpoint"
        thread.start()
    }

    private func loop() {
        defer { state.withLock { $0.done = true } }
        // RESTART waits for readers through the busy handler while writers
        // wait on the lock: 10 ms at most, and after a reader outlasts it
        // (a backup, a long list) no RESTART for the next 25 rounds.
        guard let store = try? SQLiteStore(path: path, migrate: false, busyTimeoutMillis: 10) else { return }
        var pause = 0
        while !state.withLock({ $0.stop }) {
            Thread.sleep(forTimeInterval: Double(intervalMillis) / 1000)
            // Busy or failed: the next round tries again; the backstop is SQLite's own.
            guard let passive = try? store.checkpoint(), passive.walFrames > restartFrames, let writerLock else { continue }
            if pause > 0 { pause -= 1; continue }
            writerLock.lock.lock()
            let restarted = try? store.checkpoint(restart: true)
            writerLock.lock.unlock()
            if restarted?.busy != false { pause = 25 }
        }
        _ = try? store.checkpoint()
    }

    /// Stops the thread after its current round and waits for it (one interval at most).
    public func stop() {
        let started = state.withLock { $0.stop = true; return $0.started }
        guard started else { return }
        while !state.withLock({ $0.done }) { Thread.sleep(forTimeInterval: 0.01) }
    }
}

/// Answers of hot reads. The configuration answers (clients, secrets,
/// meta) hold while `config_generation` is unchanged; the revocation
/// answers only while `data_version` is. `version` -1: unusable until the
/// next read transaction revalidates.
struct ReadMemo {
    static let capacity = 4096
    var version: Int64 = -1
    var configGeneration: Int64 = -1
    var clients: [String: Client?] = [:]
    var secrets: [String: [ClientSecret]] = [:]
    var meta: [String: String?] = [:]
    var revokedTokens: [String: Bool] = [:]
    var revokedFamilies: [String: Bool] = [:]

    /// After a write: nothing is usable until revalidated (the configuration
    /// answers may survive it, if the generation says so).
    mutating func invalidate() {
        version = -1
        if !revokedTokens.isEmpty { revokedTokens = [:] }
        if !revokedFamilies.isEmpty { revokedFamilies = [:] }
    }

    mutating func revalidate(version: Int64, configGeneration: Int64) {
        invalidate()
        if configGeneration != self.configGeneration || configGeneration < 0 {
            clients = [:]
            secrets = [:]
            meta = [:]
            self.configGeneration = configGeneration
        }
        self.version = version
    }
}

extension SQLiteStore: TransferableStore {
    public func dumpAll() throws -> [TableDump] {
        // One read transaction: its first query starts the snapshot every table is read from.
        try read {
            try StateTables.all.map { table in
                let columns = try rows("SELECT name FROM pragma_table_info(?)", [.text(table)]).map { $0.string(0) }
                let list = columns.map { "\"\($0)\"" }.joined(separator: ", ")
                let data = try rows("SELECT \(list) FROM \(table)").map { row in
                    row.values.map { value -> StoredValue in
                        switch value {
                        case .null: return .null
                        case let .integer(v): return .int(v)
                        case let .real(v): return .int(Int64(v))
                        case let .text(t): return .text(t)
                        case let .blob(b): return .bytes(b)
                        }
                    }
                }
                return TableDump(table: table, columns: columns, rows: data)
            }
        }
    }

    public func loadAll(_ dumps: [TableDump]) throws {
        try write {
            for dump in dumps where !dump.rows.isEmpty {
                let sql = "INSERT INTO \(dump.table)(\(dump.columns.map { "\"\($0)\"" }.joined(separator: ", "))) VALUES("
                    + Array(repeating: "?", count: dump.columns.count).joined(separator: ", ") + ")"
                for row in dump.rows {
                    try exec(sql, row.map { value -> SQLValue in
                        switch value {
                        case .null: return .null
                        case let .int(v): return .integer(v)
                        case let .text(t): return .text(t)
                        case let .bytes(b): return .blob(b)
                        }
                    })
                }
            }
            // The insert trigger counted the clients on top of the counts loaded with their organizations.
            try exec("UPDATE organizations SET client_count = (SELECT count(*) FROM clients WHERE clients.organization_id = organizations.id)")
        }
    }

    public func isEmpty() throws -> Bool {
        try read { try rows("SELECT (SELECT count(*) FROM organizations) + (SELECT count(*) FROM signing_keys)").first?.int(0) == 0 }
    }
}

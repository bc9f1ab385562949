import Common
import Foundation
import OAuth
import Postgres

/// The PostgreSQL implementation of `Store` (SPEC 9): one connection per
/// worker thread, every statement prepared, the same SQL shapes as the
/// SQLite store. Writes run in READ COMMITTED transactions retried whole on
/// a serialization failure or deadlock (40001, 40P01), so the same code
/// holds on engines that only offer SERIALIZABLE; exactly-once rules rest
/// on conditional updates (`... WHERE consumed_at IS NULL`) and their row
/// counts, and the client limit on a lock of the organization's row. Reads
/// begin with one round trip that reads the generation row; while it is
/// unchanged, the clients, secrets, meta values and revocation answers this
/// connection has read are answered from memory, so what any node commits
/// is what every node answers from its next request on, at the cost of
/// that one indexed row (PLATFORM-POSTGRES 6).
///
/// A lost, unanswering or refusing server is `StoreError.unavailable`
/// with libpq's reason (503 with `Retry-After`); the next call reconnects.
public final class PostgresStore: Store {
    let db: PGConnection
    private var depth = 0
    private var writing = false
    private var memo = PostgresMemo()
    /// Inside a read whose generation matched the memo's.
    private var memoUsable = false
    /// Between `beginRequest` and `endRequest`, and whether this request's
    /// generation read happened (the memo is valid for the rest of it).
    private var inRequest = false
    private var validated = false
    /// What the current write touched: bumps the generation at its commit.
    private var touchedConfig = false
    private var touchedRevocation = false
    /// Rows read along with others in one round trip (a session's user, a
    /// code's user and connection, a refresh token's family), answered from
    /// here for the rest of the request (or, outside a request, of the
    /// write): the request is ordered at its first read, so a row read a
    /// statement earlier is as good. Forgotten when the request or write
    /// ends, and a table's part by any write to that table.
    private var along = AlongRows()
    /// Statements waiting to travel with the next one (a write's BEGIN and its blind writes).
    private var pending: [(sql: String, params: [PGValue])] = []
    /// Attempts of a write transaction that keeps meeting serialization failures.
    static let maxAttempts = 5

    /// Connects and, with `migrate`, applies pending migrations.
    public init(url: String, migrate: Bool = true, timeoutMillis: Int = 3_000) throws {
        do {
            db = try PGConnection(url, timeoutMillis: timeoutMillis)
            if migrate { try PostgresStore.migrate(db) }
        } catch let error as PGError {
            throw PostgresStore.map(error)
        }
    }

    public static var schemaVersion: Int { PostgresSchema.migrations.count }

    /// Applies pending migrations, each in a transaction holding the lock
    /// row, so that several nodes may run `latchkey migrate` at once.
    @discardableResult
    static func migrate(_ db: PGConnection) throws -> Int {
        // The lock table itself: two nodes creating it at once may collide (23505/42P07): retry.
        for attempt in 0..<5 {
            do {
                try db.run("CREATE TABLE IF NOT EXISTS schema_version (id BIGINT PRIMARY KEY, version BIGINT NOT NULL)")
                try db.run("INSERT INTO schema_version(id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
                break
            } catch let e as PGError where e.sqlstate == "23505" || e.sqlstate == "42P07" {
                if attempt == 4 { throw e }
            }
        }
        var applied = 0
        for (index, sql) in PostgresSchema.migrations.enumerated() {
            try db.run("BEGIN")
            do {
                let current = try db.execute("SELECT version FROM schema_version WHERE id = 1 FOR UPDATE").rows.first?.int(0) ?? 0
                if current >= Int64(index + 1) { try db.run("COMMIT"); continue }
                try db.script(sql)
                try db.execute("UPDATE schema_version SET version = $1 WHERE id = 1", [.int(Int64(index + 1))])
                try db.run("COMMIT")
                applied += 1
            } catch {
                if db.isConnected { _ = try? db.run("ROLLBACK") }
                throw error
            }
        }
        return applied
    }

    public func migrate() throws -> Int { try wrap { try PostgresStore.migrate(db) } }

    public func schemaVersionApplied() throws -> Int {
        try wrap { Int(try db.execute("SELECT version FROM schema_version WHERE id = 1").rows.first?.int(0) ?? 0) }
    }

    /// Statements sent on this connection (round trips), for tests.
    public var roundTrips: Int { db.roundTrips }

    static func map(_ error: PGError) -> Error {
        if error.isConnectionFailure || error.sqlstate == "57P01" || error.sqlstate?.hasPrefix("08") == true {
            return StoreError.unavailable(error.message)
        }
        if error.isRetryable { return StoreError.busy }
        if error.isConstraint { return StoreError.conflict(error.sqlstate ?? "") }
        return error
    }

    func wrap<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as PGError {
            throw PostgresStore.map(error)
        }
    }

    /// SQLite's `?` placeholders as PostgreSQL's `$1`, `$2`, ...: both stores
    /// keep one spelling of each statement.
    static func numbered(_ sql: String) -> String {
        var out = ""
        var n = 0
        var quoted = false
        for ch in sql {
            if ch == "'" { quoted.toggle() }
            if ch == "?" && !quoted {
                n += 1
                out += "$\(n)"
            } else {
                out.append(ch)
            }
        }
        return out
    }
    private var numberedCache: [String: String] = [:]

    func rows(_ sql: String, _ values: [PGValue] = []) throws -> [PGRow] {
        try statement(sql, values).rows
    }

    @discardableResult
    func exec(_ sql: String, _ values: [PGValue] = []) throws -> Int {
        note(sql)
        return try statement(sql, values).affected
    }

    static let configTables: Set<String> = ["meta", "organizations", "clients", "client_secrets", "client_logos", "signing_keys",
                                            "retired_client_ids", "upstream_clients"]

    /// Which generation a changing statement invalidates, by the table it
    /// writes: a configuration table, or a revocation (a revoked token, a
    /// family's revocation). Found from the statement itself, so no write
    /// path can forget it.
    private func note(_ sql: String) {
        let words = sql.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "(" }).prefix(4).map(String.init)
        let table: String?
        switch words.first?.uppercased() {
        case "INSERT", "DELETE": table = words.count > 2 ? words[2] : nil
        case "UPDATE": table = words.count > 1 ? words[1] : nil
        default: table = nil
        }
        guard let table else { return }
        // A delete may cascade to rows read along (a client's connections, a user's sessions): forget them all.
        if words.first?.uppercased() == "DELETE" { along = AlongRows() } else { along.forget(table: table) }
        if PostgresStore.configTables.contains(table) { touchedConfig = true }
        if table == "revoked_tokens" || (table == "token_families" && sql.contains("revoked_at =")) { touchedRevocation = true }
    }

    private func statement(_ sql: String, _ values: [PGValue]) throws -> PGResult {
        let text = numberedText(sql)
        do {
            // Inside a write, what waits to be sent (the BEGIN, blind writes) goes in the same round trip.
            if !pending.isEmpty {
                let batch = pending + [(text, values)]
                pending = []
                return try db.pipeline(batch).last!
            }
            return try db.execute(text, values)
        } catch let error as PGError where depth == 0 {
            throw PostgresStore.map(error)
        }
    }

    private func numberedText(_ sql: String) -> String {
        if let known = numberedCache[sql] { return known }
        let text = PostgresStore.numbered(sql)
        numberedCache[sql] = text
        return text
    }

    /// A write whose outcome the caller does not read (an insert of a new
    /// row, a use noted): inside a write transaction it waits and travels
    /// with the next statement or the COMMIT, in one round trip (libpq's
    /// pipeline mode); statements still run in the order they were made, and
    /// a failure fails the whole transaction, only later. PLATFORM-POSTGRES
    /// 3: a round trip saved per statement.
    func blindWrite(_ sql: String, _ values: [PGValue]) throws {
        guard writing else { try exec(sql, values); return }
        note(sql)
        pending.append((numberedText(sql), values))
    }

    /// A remembered answer while the generation holds, or `load()`'s, remembered.
    private func memoized<V>(_ table: WritableKeyPath<PostgresMemo, [String: V]>, _ key: String, _ load: () throws -> V) throws -> V {
        guard memoUsable else { return try load() }
        if let hit = memo[keyPath: table][key] { return hit }
        let value = try load()
        if memo[keyPath: table].count >= PostgresMemo.capacity { memo[keyPath: table].removeAll(keepingCapacity: true) }
        memo[keyPath: table][key] = value
        return value
    }

    func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    // MARK: Transactions

    public func write<T>(_ body: () throws -> T) throws -> T {
        if depth > 0 {
            precondition(writing, "write transaction requested inside a read transaction")
            depth += 1
            defer { depth -= 1 }
            return try body()
        }
        var attempt = 0
        while true {
            attempt += 1
            touchedConfig = false
            touchedRevocation = false
            // BEGIN travels with the transaction's first statement.
            pending = [("BEGIN", [])]
            do {
                depth = 1
                writing = true
                defer { depth = 0; writing = false; pending = []; if !inRequest { along = AlongRows() } }
                let result = try body()
                // Nothing was written or read: the BEGIN was never sent, no transaction to end.
                if pending.count == 1 && pending[0].sql == "BEGIN" { return result }
                if touchedConfig || touchedRevocation {
                    pending.append(("UPDATE generation SET config = config + $1, revocation = revocation + $2 WHERE id = 1",
                                    [.int(touchedConfig ? 1 : 0), .int(touchedRevocation ? 1 : 0)]))
                }
                // The blind writes, the generation bump and the COMMIT: one round trip.
                let batch = pending + [("COMMIT", [])]
                pending = []
                let commit = try db.pipeline(batch).last!
                // A COMMIT of a failed transaction answers ROLLBACK, not an error.
                guard commit.command == "COMMIT" else { throw PGError(sqlstate: "40001", message: "commit rolled back", isConnectionFailure: false) }
                // What this write changed is read afresh; token-only writes keep the memo.
                if touchedConfig { memo.forgetConfiguration() }
                if touchedRevocation { memo.forgetRevocations() }
                return result
            } catch let error as PGError {
                if db.isConnected { _ = try? db.run("ROLLBACK") }
                if error.isRetryable && attempt < PostgresStore.maxAttempts {
                    PGCounters.countRetry()
                    usleep(useconds_t(1_000 * (1 << attempt)))
                    continue
                }
                throw PostgresStore.map(error)
            } catch {
                if db.isConnected { _ = try? db.run("ROLLBACK") }
                throw error
            }
        }
    }

    /// A read: one round trip for the generation row, then memo answers or,
    /// for what the memo lacks, single statements (each sees every commit
    /// made before it).
    public func read<T>(_ body: () throws -> T) throws -> T {
        if depth > 0 { return try body() }
        do {
            // Within one request the generation read at its first read holds
            // for the rest of it (the request is ordered at that moment; what
            // it writes itself, the memo forgets at the commit).
            if !(inRequest && validated) {
                let row = try statement("SELECT config, revocation FROM generation WHERE id = 1", []).rows.first
                memo.revalidate(config: row?.int(0) ?? -1, revocation: row?.int(1) ?? -1)
                validated = row != nil
            }
            depth = 1
            memoUsable = validated
            defer { depth = 0; memoUsable = false }
            return try body()
        } catch let error as PGError {
            throw PostgresStore.map(error)
        }
    }

    public func beginRequest() {
        inRequest = true
        validated = false
        along = AlongRows()
    }

    public func endRequest() {
        inRequest = false
        validated = false
        along = AlongRows()
    }

    /// Whether rows read along may be kept: within a request or a write.
    private var keepsAlong: Bool { inRequest || writing }

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
                 [.text(o.id), .text(o.name), PGValue(o.clientLimit), PGValue(o.primaryClientID), .int(o.createdAt)])
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
        // Inside a write the organization's row is locked: concurrent creates
        // on every node queue here, so the client limit holds under races.
        let lock = writing ? " FOR UPDATE" : ""
        return Int(try rows("SELECT client_count FROM organizations WHERE id = ?\(lock)", [.text(organizationID)]).first?.int(0) ?? 0)
    }

    // MARK: Clients

    static let clientColumns = """
        c.client_id, c.organization_id, c.is_primary, c.client_name, c.description, c.client_uri, c.redirect_uris, c.grant_types,
        c.token_endpoint_auth_method, c.scope, c.access_token_ttl, c.refresh_token_ttl, c.enabled, c.extra_data, c.attributes,
        c.created_at, c.updated_at, c.version, c.last_used_at, EXISTS(SELECT 1 FROM client_logos l WHERE l.client_id = c.client_id),
        c.token_generation
        """

    static func client(_ r: PGRow) -> Client {
        func strings(_ i: Int) -> [String] { ((try? JSON.parse(r.string(i)))?.arrayValue ?? []).compactMap(\.stringValue) }
        return Client(clientID: r.string(0), organizationID: r.string(1), isPrimary: r.bool(2), name: r.string(3),
                      description: r.optionalString(4), clientURI: r.optionalString(5), redirectURIs: strings(6), grantTypes: strings(7),
                      authMethod: r.string(8), scope: Scopes.parse(r.string(9)) ?? [], accessTokenTTL: Int(r.int(10)),
                      refreshTokenTTL: Int(r.int(11)), enabled: r.bool(12), extraData: (try? JSON.parse(r.string(13))) ?? .object([]),
                      attributes: (try? JSON.parse(r.string(14))) ?? .object([]), createdAt: r.int(15), updatedAt: r.int(16),
                      version: Int(r.int(17)), lastUsedAt: r.optionalInt(18), hasLogo: r.bool(19), tokenGeneration: Int(r.int(20)))
    }

    static func values(_ c: Client) -> [PGValue] {
        [.text(c.clientID), .text(c.organizationID), PGValue(flag: c.isPrimary), .text(c.name), PGValue(c.description), PGValue(c.clientURI),
         .text(JSON(c.redirectURIs).text), .text(JSON(c.grantTypes).text), .text(c.authMethod), .text(Scopes.join(c.scope)),
         PGValue(c.accessTokenTTL), PGValue(c.refreshTokenTTL), PGValue(flag: c.enabled), .text(c.extraData.text), .text(c.attributes.text),
         .int(c.createdAt), .int(c.updatedAt), PGValue(c.version), PGValue(c.lastUsedAt), PGValue(c.tokenGeneration)]
    }

    public func insertClient(_ c: Client) throws {
        // The id is claimed for good first: a concurrent create of the same id, or one racing its deletion, conflicts (23505).
        try exec("INSERT INTO client_ids(client_id) VALUES(?)", [.text(c.clientID)])
        try exec("UPDATE organizations SET client_count = client_count + 1 WHERE id = ?", [.text(c.organizationID)])
        try exec("""
            INSERT INTO clients(client_id, organization_id, is_primary, client_name, description, client_uri, redirect_uris, grant_types,
              token_endpoint_auth_method, scope, access_token_ttl, refresh_token_ttl, enabled, extra_data, attributes, created_at,
              updated_at, version, last_used_at, token_generation) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, PostgresStore.values(c))
    }

    public func client(_ id: String) throws -> Client? {
        try memoized(\.clients, id) {
            try rows("SELECT \(PostgresStore.clientColumns) FROM clients c WHERE c.client_id = ?", [.text(id)]).first.map(PostgresStore.client)
        }
    }

    public func updateClient(_ c: Client) throws {
        var values = Array(PostgresStore.values(c).dropFirst(2))
        values.append(.text(c.clientID))
        try exec("""
            UPDATE clients SET is_primary = ?, client_name = ?, description = ?, client_uri = ?, redirect_uris = ?, grant_types = ?,
              token_endpoint_auth_method = ?, scope = ?, access_token_ttl = ?, refresh_token_ttl = ?, enabled = ?, extra_data = ?,
              attributes = ?, created_at = ?, updated_at = ?, version = ?, last_used_at = ?, token_generation = ? WHERE client_id = ?
            """, values)
    }

    public func deleteClient(_ id: String) throws {
        guard let org = try rows("SELECT organization_id FROM clients WHERE client_id = ?", [.text(id)]).first?.string(0) else { return }
        try exec("DELETE FROM clients WHERE client_id = ?", [.text(id)])
        try exec("UPDATE organizations SET client_count = client_count - 1 WHERE id = ?", [.text(org)])
        try exec("INSERT INTO retired_client_ids(client_id, organization_id, retired_at) VALUES(?, ?, ?) ON CONFLICT (client_id) DO NOTHING",
                 [.text(id), .text(org), .int(now())])
    }

    public func isClientIDRetired(_ id: String) throws -> Bool {
        try !rows("SELECT 1 FROM retired_client_ids WHERE client_id = ?", [.text(id)]).isEmpty
    }

    public func clients(organizationID: String, namePrefix: String?, limit: Int, offset: Int) throws -> (clients: [Client], total: Int) {
        var filter = "c.organization_id = ?"
        var values: [PGValue] = [.text(organizationID)]
        if let namePrefix, !namePrefix.isEmpty {
            filter += " AND substr(c.client_name, 1, CAST(? AS INTEGER)) = ?"
            values += [PGValue(namePrefix.unicodeScalars.count), .text(namePrefix)]
        }
        let total = namePrefix?.isEmpty == false
            ? Int(try rows("SELECT count(*) FROM clients c WHERE \(filter)", values).first?.int(0) ?? 0)
            : try clientCount(organizationID: organizationID)
        let list = try rows("SELECT \(PostgresStore.clientColumns) FROM clients c WHERE \(filter) ORDER BY c.created_at, c.client_id LIMIT ? OFFSET ?",
                            values + [PGValue(limit), PGValue(offset)]).map(PostgresStore.client)
        return (list, total)
    }

    public func touchClient(_ id: String, lastUsedAt: Int64) throws {
        try exec("UPDATE clients SET last_used_at = ? WHERE client_id = ?", [.int(lastUsedAt), .text(id)])
    }

    // MARK: Logos

    public func setLogo(clientID: String, contentType: String, image: [UInt8], preview: [UInt8], etag: String, at: Int64) throws {
        try exec("""
            INSERT INTO client_logos(client_id, content_type, image, preview, etag, updated_at) VALUES(?, ?, ?, ?, ?, ?)
            ON CONFLICT(client_id) DO UPDATE SET content_type = excluded.content_type, image = excluded.image,
              preview = excluded.preview, etag = excluded.etag, updated_at = excluded.updated_at
            """, [.text(clientID), .text(contentType), .bytes(image), .bytes(preview), .text(etag), .int(at)])
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
                 [.text(s.clientID), .text(s.kind.rawValue), .text(s.hash), .int(s.createdAt), PGValue(s.expiresAt)])
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

    public func deleteSecret(id: Int64) throws { try exec("DELETE FROM client_secrets WHERE id = ?", [.int(id)]) }

    public func setSecretExpiry(id: Int64, expiresAt: Int64?) throws {
        try exec("UPDATE client_secrets SET expires_at = ? WHERE id = ?", [PGValue(expiresAt), .int(id)])
    }

    // MARK: Signing keys

    public func insertSigningKey(_ k: SigningKeyRecord) throws {
        try exec("INSERT INTO signing_keys(kid, algorithm, private_key, encrypted, public_key, created_at, retired_at) VALUES(?, ?, ?, ?, ?, ?, ?)",
                 [.text(k.kid), .text(k.algorithm), .bytes(k.privateKey), PGValue(flag: k.encrypted), .bytes(k.publicKey), .int(k.createdAt), PGValue(k.retiredAt)])
    }

    public func signingKeys() throws -> [SigningKeyRecord] {
        try rows("SELECT kid, algorithm, private_key, encrypted, public_key, created_at, retired_at FROM signing_keys ORDER BY created_at DESC").map {
            SigningKeyRecord(kid: $0.string(0), algorithm: $0.string(1), privateKey: $0.blob(2), encrypted: $0.bool(3), publicKey: $0.blob(4),
                             createdAt: $0.int(5), retiredAt: $0.optionalInt(6))
        }
    }

    public func retireSigningKeys(at: Int64) throws {
        try exec("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL", [.int(at)])
    }

    public func sealSigningKey(kid: String, privateKey: [UInt8]) throws {
        try exec("UPDATE signing_keys SET private_key = ?, encrypted = 1 WHERE kid = ?", [.bytes(privateKey), .text(kid)])
    }

    public func deleteSigningKeys(retiredBefore: Int64) throws {
        try exec("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?", [.int(retiredBefore)])
    }

    // MARK: Revocation

    public func revokeAccessToken(jti: String, expiresAt: Int64) throws {
        try exec("INSERT INTO revoked_tokens(jti, expires_at) VALUES(?, ?) ON CONFLICT (jti) DO NOTHING", [.text(jti), .int(expiresAt)])
        try exec("DELETE FROM revoked_tokens WHERE expires_at < ?", [.int(expiresAt - 2 * 86_400_000)])
    }

    public func isAccessTokenRevoked(jti: String) throws -> Bool {
        try memoized(\.revokedTokens, jti) { !(try rows("SELECT 1 FROM revoked_tokens WHERE jti = ?", [.text(jti)]).isEmpty) }
    }

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
    private func keepUser(_ r: PGRow, from start: Int, id: String) {
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

    // MARK: Upstream clients

    static let upstreamColumns = """
        sys_id, organization_id, name, provider, tenant_id, client_id, secret, secret_encrypted, description, cluster_redirect_urls,
        opswise_groups, scopes, version, created_at, updated_at
        """

    static func upstream(_ r: PGRow) -> UpstreamClient {
        func strings(_ i: Int) -> [String] { ((try? JSON.parse(r.string(i)))?.arrayValue ?? []).compactMap(\.stringValue) }
        let urls = ((try? JSON.parse(r.string(9)))?.arrayValue ?? []).map { (node: $0["clusterNode"]?.stringValue ?? "", url: $0["redirectUrl"]?.stringValue ?? "") }
        return UpstreamClient(sysID: r.string(0), organizationID: r.string(1), name: r.string(2), provider: r.string(3), tenantID: r.optionalString(4),
                              clientID: r.string(5), secret: r.blob(6), secretEncrypted: r.bool(7), description: r.optionalString(8),
                              clusterRedirectURLs: urls, opswiseGroups: strings(10), scopes: strings(11), version: Int(r.int(12)),
                              createdAt: r.int(13), updatedAt: r.int(14))
    }

    static func upstreamValues(_ u: UpstreamClient) -> [PGValue] {
        let urls = JSON.array(u.clusterRedirectURLs.map { ["clusterNode": .string($0.node), "redirectUrl": .string($0.url)] })
        return [.text(u.sysID), .text(u.organizationID), .text(u.name), .text(u.provider), PGValue(u.tenantID), .text(u.clientID), .bytes(u.secret),
                PGValue(flag: u.secretEncrypted), PGValue(u.description), .text(urls.text), .text(JSON(u.opswiseGroups).text), .text(JSON(u.scopes).text),
                PGValue(u.version), .int(u.createdAt), .int(u.updatedAt)]
    }

    public func insertUpstream(_ u: UpstreamClient) throws {
        try exec("INSERT INTO upstream_clients(\(PostgresStore.upstreamColumns)) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", PostgresStore.upstreamValues(u))
    }

    public func updateUpstream(_ u: UpstreamClient) throws {
        var values = Array(PostgresStore.upstreamValues(u).dropFirst(2))
        values.append(.text(u.sysID))
        try exec("""
            UPDATE upstream_clients SET name = ?, provider = ?, tenant_id = ?, client_id = ?, secret = ?, secret_encrypted = ?, description = ?,
              cluster_redirect_urls = ?, opswise_groups = ?, scopes = ?, version = ?, created_at = ?, updated_at = ? WHERE sys_id = ?
            """, values)
    }

    public func upstream(sysID: String) throws -> UpstreamClient? {
        try rows("SELECT \(PostgresStore.upstreamColumns) FROM upstream_clients WHERE sys_id = ?", [.text(sysID)]).first.map(PostgresStore.upstream)
    }

    public func upstream(organizationID: String, name: String) throws -> UpstreamClient? {
        try rows("SELECT \(PostgresStore.upstreamColumns) FROM upstream_clients WHERE organization_id = ? AND name = ?",
                 [.text(organizationID), .text(name)]).first.map(PostgresStore.upstream)
    }

    public func upstreams(organizationID: String) throws -> [UpstreamClient] {
        try rows("SELECT \(PostgresStore.upstreamColumns) FROM upstream_clients WHERE organization_id = ? ORDER BY name",
                 [.text(organizationID)]).map(PostgresStore.upstream)
    }

    public func upstreamsStoredInClear() throws -> [UpstreamClient] {
        try rows("SELECT \(PostgresStore.upstreamColumns) FROM upstream_clients WHERE secret_encrypted = 0").map(PostgresStore.upstream)
    }

    public func deleteUpstream(sysID: String) throws { try exec("DELETE FROM upstream_clients WHERE sys_id = ?", [.text(sysID)]) }

    // MARK: Audit

    public func appendAudit(_ e: AuditEvent) throws {
        try blindWrite("INSERT INTO audit_events(organization_id, actor, action, target, surface, request_id, details, created_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                 [PGValue(e.organizationID), .text(e.actor), .text(e.action), PGValue(e.target), .text(e.surface), PGValue(e.requestID),
                  .text(e.details.text), .int(e.createdAt)])
    }

    public func auditEvents(organizationID: String, limit: Int, offset: Int) throws -> (events: [AuditEvent], total: Int) {
        let total = Int(try rows("SELECT count(*) FROM audit_events WHERE organization_id = ?", [.text(organizationID)]).first?.int(0) ?? 0)
        let events = try rows("""
            SELECT id, organization_id, actor, action, target, surface, request_id, details, created_at FROM audit_events
            WHERE organization_id = ? ORDER BY id DESC LIMIT ? OFFSET ?
            """, [.text(organizationID), PGValue(limit), PGValue(offset)]).map {
            AuditEvent(id: $0.int(0), organizationID: $0.optionalString(1), actor: $0.string(2), action: $0.string(3), target: $0.optionalString(4),
                       surface: $0.string(5), requestID: $0.optionalString(6), details: (try? JSON.parse($0.string(7))) ?? .object([]), createdAt: $0.int(8))
        }
        return (events, total)
    }
}

extension PGValue {
    /// The stores keep booleans as 0/1 integers (one SQL shape on both).
    init(flag: Bool) { self = .int(flag ? 1 : 0) }
}

/// What one connection remembers between requests (SPEC 9: exact across
/// nodes): configuration answers while the configuration generation holds,
/// revocation answers while the revocation generation holds.
struct PostgresMemo {
    static let capacity = 4096
    var config: Int64 = -1
    var revocation: Int64 = -1
    var clients: [String: Client?] = [:]
    var secrets: [String: [ClientSecret]] = [:]
    var meta: [String: String?] = [:]
    var revokedTokens: [String: Bool] = [:]
    var revokedFamilies: [String: Bool] = [:]

    mutating func revalidate(config: Int64, revocation: Int64) {
        if config != self.config || config < 0 { forgetConfiguration(); self.config = config }
        if revocation != self.revocation || revocation < 0 { forgetRevocations(); self.revocation = revocation }
    }

    mutating func forgetConfiguration() {
        config = -1
        if !clients.isEmpty { clients = [:] }
        if !secrets.isEmpty { secrets = [:] }
        if !meta.isEmpty { meta = [:] }
    }

    mutating func forgetRevocations() {
        revocation = -1
        if !revokedTokens.isEmpty { revokedTokens = [:] }
        if !revokedFamilies.isEmpty { revokedFamilies = [:] }
    }
}

extension PostgresStore: TransferableStore {
    /// Every table from one REPEATABLE READ snapshot (SPEC 9: a consistent backup while nodes run).
    public func dumpAll() throws -> [TableDump] {
        try wrap {
            try db.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            defer { _ = try? db.run("COMMIT") }
            return try StateTables.all.map { table in
                let columns = try db.execute("SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                                             [.text(table)]).rows.map { $0.string(0) }
                let list = columns.map { "\"\($0)\"" }.joined(separator: ", ")
                let data = try db.execute("SELECT \(list) FROM \(table)").rows.map { row in
                    row.values.map { value -> StoredValue in
                        switch value {
                        case .null: return .null
                        case let .int(v): return .int(v)
                        case let .bool(b): return .int(b ? 1 : 0)
                        case let .text(t): return .text(t)
                        case let .bytes(b): return .bytes(b)
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
                    try exec(sql, row.map { value -> PGValue in
                        switch value {
                        case .null: return .null
                        case let .int(v): return .int(v)
                        case let .text(t): return .text(t)
                        case let .bytes(b): return .bytes(b)
                        }
                    })
                }
            }
            // Every id the loaded state ever gave is claimed.
            try exec("INSERT INTO client_ids(client_id) SELECT client_id FROM clients UNION SELECT client_id FROM retired_client_ids ON CONFLICT DO NOTHING")
            // Identity columns continue after the loaded ids.
            for table in ["client_secrets", "audit_events"] {
                try rows("SELECT setval(pg_get_serial_sequence('\(table)', 'id'), GREATEST((SELECT max(id) FROM \(table)), 1))")
            }
        }
    }

    public func isEmpty() throws -> Bool {
        try wrap { try db.execute("SELECT (SELECT count(*) FROM organizations) + (SELECT count(*) FROM signing_keys)").rows.first?.int(0) == 0 }
    }
}

/// Rows a statement brought along with the one it was asked for (see
/// `PostgresStore.along`); `.some(nil)`: known not to exist.
struct AlongRows {
    var users: [String: User?] = [:]
    var connections: [String: UserConnection?] = [:]
    var families: [String: Bool] = [:]

    static func key(_ userID: String, _ clientID: String) -> String { userID + "\u{0}" + clientID }

    /// A write to `table` in this request: what was read of it is read again.
    mutating func forget(table: String) {
        switch table {
        case "users": users = [:]
        case "connections": connections = [:]
        case "token_families": families = [:]
        default: break
        }
    }
}

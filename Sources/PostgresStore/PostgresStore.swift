import Common
import Foundation
import OAuth
import SharedSQL
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
    var depth = 0
    var writing = false
    var memo = PostgresMemo()
    /// Inside a read whose generation matched the memo's.
    var memoUsable = false
    /// Inside a read whose generation read waits in `pending` (first there)
    /// to travel with the read's first statement.
    var generationPending = false
    /// Between `beginRequest` and `endRequest`, and whether this request's
    /// generation read happened (the memo is valid for the rest of it).
    var inRequest = false
    var validated = false
    /// Between `beginBatch` and `endBatch`: a validation outlives its request.
    var inBatch = false
    /// The node's generation reads, shared by its threads, and this
    /// thread's place in them: the mark taken when its request (or batch,
    /// or a read outside any request) began, and its semaphore for waiting.
    let generationReads: GenerationReads
    var arrival: UInt64 = 0
    let wake = DispatchSemaphore(value: 0)
    /// What the current write touched: bumps the generation at its commit.
    var touchedConfig = false
    var touchedRevocation = false
    /// Rows read along with others in one round trip (a session's user, a
    /// code's user and connection, a refresh token's family), answered from
    /// here for the rest of the request (or, outside a request, of the
    /// write): the request is ordered at its first read, so a row read a
    /// statement earlier is as good. Forgotten when the request or write
    /// ends, and a table's part by any write to that table.
    var along = AlongRows()
    /// Statements waiting to travel with the next one (a write's BEGIN, its
    /// blind writes, reads asked for ahead: `prefetchConnection`).
    var pending: [(sql: String, params: [PGValue])] = []
    /// The reads ahead among `pending`: each one's position there and the row it reads.
    var readsAhead: [(index: Int, row: ReadAhead)] = []
    /// Inside `writeOne`: the next statement travels with the COMMIT (armed
    /// again for each attempt), and afterwards the transaction is over.
    var oneStatement = false
    var commitsWithNextStatement = false
    var committedEarly = false
    /// Inside `writeDeferringFlush`, until the body calls `requireFlush`:
    /// the COMMIT goes with `SET LOCAL synchronous_commit = off`.
    var defersFlush = false
    /// Commits sent without waiting for their flush (tests pin which writes do).
    public internal(set) var flushesDeferred = 0
    /// Attempts of a write transaction that keeps meeting serialization failures.
    static let maxAttempts = 5

    /// Connects and, with `migrate`, applies pending migrations. The worker
    /// threads of one node pass the same `generationReads`; without it, the
    /// store's reads are its own.
    public init(url: String, migrate: Bool = true, timeoutMillis: Int = 3_000, generationReads: GenerationReads? = nil) throws {
        self.generationReads = generationReads ?? GenerationReads()
        do {
            db = try PGConnection(url, timeoutMillis: timeoutMillis)
            if migrate { try PostgresStore.migrate(db) }
        } catch let error as PGError {
            throw PostgresStore.map(error)
        }
    }

    public static var schemaVersion: Int { PostgresSchema.migrations.count }
    /// The migrations' text, in order (tests pin the shipped ones: a migration, once shipped, never changes).
    public static var migrations: [String] { PostgresSchema.migrations }

    /// Applies pending migrations, each in a transaction holding the lock
    /// row, so that several nodes may run `latchkey migrate` at once. A
    /// schema newer than these migrations is refused (`StoreError.schemaNewer`).
    /// A migration that rewrites rows (or any) changes the generation row
    /// too: every node's memo reads afresh, as after any write of its own.
    @discardableResult
    static func migrate(_ db: PGConnection, migrations: [String] = PostgresSchema.migrations) throws -> Int {
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
        let found = Int(try db.execute("SELECT version FROM schema_version WHERE id = 1").rows.first?.int(0) ?? 0)
        guard found <= migrations.count else { throw StoreError.schemaNewer(applied: found, known: migrations.count) }
        var applied = 0
        for (index, sql) in migrations.enumerated() {
            try db.run("BEGIN")
            do {
                let current = try db.execute("SELECT version FROM schema_version WHERE id = 1 FOR UPDATE").rows.first?.int(0) ?? 0
                if current >= Int64(index + 1) { try db.run("COMMIT"); continue }
                try db.script(sql)
                if try db.execute("SELECT to_regclass('generation') IS NOT NULL").rows.first?.bool(0) == true {
                    try db.execute("UPDATE generation SET config = $1, revocation = $2 WHERE id = 1", [.int(newGeneration()), .int(newGeneration())])
                }
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

    /// How far the database server's clock is ahead of `now` (negative:
    /// behind), in milliseconds, taken at the middle of one round trip. Every
    /// node judges times by its own clock (docs/scaling.md), so `serve`
    /// compares each node's with the one clock they share (`ClockWatch`).
    public func clockOffsetMillis(now: () -> Int64) throws -> Int64 {
        try wrap {
            let sent = now()
            let database = try db.execute("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT").rows.first?.int(0) ?? 0
            let received = now()
            return database - (sent + (received - sent) / 2)
        }
    }

    /// Statements sent on this connection (round trips), for tests.
    public var roundTrips: Int { db.roundTrips }

    static func map(_ error: PGError) -> Error {
        if error.isConnectionFailure || error.sqlstate == "57P01" || error.sqlstate?.hasPrefix("08") == true {
            return StoreError.unavailable(error.message)
        }
        // A serialization failure past its retries, or the server's own limits
        // (lock_timeout 55P03, statement_timeout 57014): retry shortly.
        if error.isRetryable || error.sqlstate == "55P03" || error.sqlstate == "57014" { return StoreError.busy }
        if error.isConstraint { return StoreError.conflict(error.sqlstate ?? "") }
        // The server cannot do the work now: read-only (25006: default_transaction_read_only, a standby), short of
        // resources (class 53: disk full, memory, connections), a system or I/O error (class 58). (A server shutting
        // down or starting, 57P0x, ends the connection: `unavailable` above.)
        if let state = error.sqlstate, state == "25006" || state.hasPrefix("53") || state.hasPrefix("58") {
            return StoreError.fault(error.message)
        }
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

    /// A statement given text with a NUL (which PostgreSQL's text cannot hold,
    /// and SQLite's could): a read matches no row, as it does on SQLite where
    /// nothing holding one is ever written; a write is refused, as on SQLite
    /// (`StoreError.invalidText`, a 400). Nothing is sent.
    func withoutNUL(_ sql: String) throws -> PGResult {
        guard sql.drop(while: { $0 == " " || $0 == "\n" }).prefix(6).uppercased() == "SELECT" else { throw StoreError.invalidText }
        return PGResult(rows: [], affected: 0, command: "SELECT")
    }

    func rows(_ sql: String, _ values: [PGValue] = []) throws -> [PGRow] {
        try statement(sql, values).rows
    }

    @discardableResult
    func exec(_ sql: String, _ values: [PGValue] = []) throws -> Int {
        note(sql)
        return try statement(sql, values).affected
    }

    /// The tables whose rows others reference with ON DELETE CASCADE (PostgresSchema; a test holds this list to it).
    static let cascadingTables: Set<String> = ["organizations", "clients", "users", "token_families"]

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
        // A delete from a table others reference may cascade to rows read along (a client's connections, a
        // user's families): forget them all. Deletes elsewhere (the purges of expired codes and requests) cascade nowhere.
        if words.first?.uppercased() == "DELETE" && PostgresStore.cascadingTables.contains(table) { along = AlongRows() } else { along.forget(table: table) }
        if PostgresStore.configTables.contains(table) { touchedConfig = true }
        if table == "revoked_tokens" || (table == "token_families" && sql.contains("revoked_at =")) { touchedRevocation = true }
        // Only what a deferred flush was made for keeps it; any other write makes the transaction durable.
        if defersFlush && !PostgresStore.defersFlush(verb: words[0].uppercased(), table: table, sql: sql) { defersFlush = false }
    }

    /// The writes `writeDeferringFlush` may leave to the WAL writer: they
    /// store what a flow started (a request, a code, the pair a
    /// back-channel logout needs, a connection's scopes: INSERT, or an
    /// upsert) or mark a request answered, the failed credential checks
    /// counted for all nodes (a count lost in a crash of the database is
    /// one more try), and the purges of expired rows. Nothing that spends,
    /// deletes or revokes.
    static func defersFlush(verb: String, table: String, sql: String) -> Bool {
        switch (verb, table) {
        case ("INSERT", "authorization_requests"), ("INSERT", "authorization_codes"), ("INSERT", "session_clients"), ("INSERT", "connections"),
             ("INSERT", "failure_counts"):
            true
        case ("UPDATE", "authorization_requests"):
            sql.hasPrefix("UPDATE authorization_requests SET answered_at = ?")
        case ("DELETE", _):
            ExpiredRows.all.contains(sql)
        default:
            false
        }
    }

    func statement(_ sql: String, _ values: [PGValue]) throws -> PGResult {
        if values.contains(where: \.holdsNUL) { return try withoutNUL(sql) }
        let text = numberedText(sql)
        precondition(!committedEarly, "writeOne: a statement after the one that committed")
        do {
            // writeOne: the BEGIN, blind writes, this statement and the COMMIT in one round trip.
            if commitsWithNextStatement && !pending.isEmpty {
                commitsWithNextStatement = false
                let results = try sendPending(with: [(text, values), ("COMMIT", [])])
                // A COMMIT of a failed transaction answers ROLLBACK, not an error.
                guard results.last!.command == "COMMIT" else { throw PGError(sqlstate: "40001", message: "commit rolled back", isConnectionFailure: false) }
                committedEarly = true
                return results[0]
            }
            // Inside a write, what waits to be sent (the BEGIN, blind writes) goes in the same round trip.
            if !pending.isEmpty { return try sendPending(with: [(text, values)])[0] }
            return try db.execute(text, values)
        } catch let error as PGError where depth == 0 {
            throw PostgresStore.map(error)
        }
    }

    /// A read and the write that claims what it read, in one round trip
    /// (with what waits: the BEGIN, blind writes), inside a write
    /// transaction: the read sees the row as it was before the write; the
    /// write, run after it, reports whether it took the row (a concurrent
    /// claim holds the row until it ends, and then this one takes nothing).
    func readThenClaim(_ read: String, _ readValues: [PGValue], _ claim: String, _ claimValues: [PGValue]) throws -> (rows: [PGRow], claimed: Bool) {
        precondition(writing && !committedEarly && !commitsWithNextStatement, "a claim belongs in a write transaction")
        if (readValues + claimValues).contains(where: \.holdsNUL) { throw StoreError.invalidText }
        note(claim)
        let results = try sendPending(with: [(numberedText(read), readValues), (numberedText(claim), claimValues)])
        return (results[0].rows, results[1].affected == 1)
    }

    /// What waits (`pending`) and `statements` in one round trip; the
    /// results of `statements`. The connections read ahead are kept as rows
    /// read along.
    func sendPending(with statements: [(sql: String, params: [PGValue])]) throws -> [PGResult] {
        let batch = pending + statements
        let reads = readsAhead
        let generation = generationPending
        pending = []
        readsAhead = []
        // Sent (or lost with a failed pipeline, after which the memo stays unusable for the read): no longer waiting.
        generationPending = false
        // A generation read travelling with statements is numbered before it goes, so other threads may take its answer.
        let number = generation ? generationReads.begin() : 0
        let results: [PGResult]
        do {
            results = try db.pipeline(batch)
        } catch {
            if generation { generationReads.end(number, nil) }
            throw error
        }
        if generation {
            let values = PostgresStore.generation(in: results[0])
            generationReads.end(number, values)
            validate(values)
        }
        for read in reads {
            let row = results[read.index].rows.first
            switch read.row {
            case let .connection(key):
                along.connections[key] = .some(row.map(SharedRows.connection))
                along.lockedConnections.insert(key)
            case let .request(idHash): along.requests[idHash] = .some(row.flatMap(SharedRows.authorizationRequest))
            case let .session(idHash): along.sessions[idHash] = row != nil
            }
        }
        return Array(results.suffix(statements.count))
    }

    /// A row a later statement of this read or write will ask for, and where `sendPending` keeps it.
    enum ReadAhead: Equatable {
        case connection(String)
        case request(String)
        /// A session held for the write (`holdSession`).
        case session(String)
    }

    /// Queues the read of `row` to travel with the next statement; its answer is then kept as read along.
    func readAhead(_ row: ReadAhead, _ sql: String, _ values: [PGValue]) {
        guard !readsAhead.contains(where: { $0.row == row }) else { return }
        readsAhead.append((pending.count, row))
        pending.append((numberedText(sql), values))
    }

    /// Before answering `row` from the rows read along: read ahead and not yet sent, it is sent now, with what else waits.
    func sendIfReadAhead(_ row: ReadAhead) throws {
        if readsAhead.contains(where: { $0.row == row }) { _ = try sendPending(with: []) }
    }

    func numberedText(_ sql: String) -> String {
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
        precondition(!committedEarly, "writeOne: a statement after the one that committed")
        if values.contains(where: \.holdsNUL) { throw StoreError.invalidText }
        note(sql)
        pending.append((numberedText(sql), values))
    }

    /// How many client answers the memo holds (tests: what a caller's made-up ids leave behind).
    package var rememberedClients: Int { memo.clients.count }

    /// A remembered answer while the generation holds, or `load()`'s, remembered.
    func memoized<V>(_ table: WritableKeyPath<PostgresMemo, [String: V]>, _ key: String, _ load: () throws -> V) throws -> V {
        // A key too long to remember is never looked up either (as on SQLite): it is loaded, with the generation read.
        let remembers = MemoBounds.remembers(key)
        // Nothing remembered for the key: the load takes the generation read along (one round trip for both).
        if !generationPending || (remembers && memo[keyPath: table][key] != nil) { try validateIfPending() }
        if remembers, memoUsable, let hit = memo[keyPath: table][key] { return hit }
        let value = try load()
        guard remembers, memoUsable else { return value }
        if memo[keyPath: table].count >= MemoBounds.capacity { memo[keyPath: table].removeAll(keepingCapacity: true) }
        memo[keyPath: table][key] = value
        return value
    }

    func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}

extension PGValue {
    /// The stores keep booleans as 0/1 integers (one SQL shape on both).
    init(flag: Bool) { self = .int(flag ? 1 : 0) }
}

extension PGRow: SQLRowValues {}

/// The shared statements (SharedSQL) on PostgreSQL.
extension PostgresStore: SQLStatementRunner {
    static func value(_ a: SQLArgument) -> PGValue {
        switch a {
        case .null: return .null
        case let .int(v): return .int(v)
        case let .text(s): return .text(s)
        case let .bytes(b): return .bytes(b)
        }
    }

    public func query(_ sql: String, _ arguments: [SQLArgument]) throws -> [PGRow] { try rows(sql, arguments.map(PostgresStore.value)) }
    public func update(_ sql: String, _ arguments: [SQLArgument]) throws -> Int { try exec(sql, arguments.map(PostgresStore.value)) }
    public func blindUpdate(_ sql: String, _ arguments: [SQLArgument]) throws { try blindWrite(sql, arguments.map(PostgresStore.value)) }
}

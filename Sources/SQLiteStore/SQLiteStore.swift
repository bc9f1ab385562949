import Common
import Foundation
import OAuth
import SharedSQL
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
    /// How long a write may wait for the write lock, this process's writers and other processes' alike (`write`).
    let busyTimeoutMillis: Int32
    /// The current request's: whether nobody awaits its answer any more (`write`).
    private var abandoned: @Sendable () -> Bool = { false }
    /// A write that waited this long or more asks `abandoned` before it commits.
    let askAbandonedAfterMillis: Int64
    private var depth = 0
    private var writing = false
    private var memo = ReadMemo()
    /// Inside `read` with the memo valid and no `BEGIN` run yet.
    private var deferredBegin = false
    /// Statements this store has run (reads, writes, transaction control):
    /// lets tests see which requests the memo answers.
    public private(set) var statementsRun = 0
    /// Write transactions begun (each takes the writer lock): lets tests see
    /// which requests write.
    public private(set) var writesBegun = 0
    /// The memo's second counter (`counters()` reads each with a cached
    /// statement). One statement reading `pragma_data_version()` beside the
    /// table did both, but SQLite's pragma table functions prepare their
    /// `PRAGMA` anew each time they are read: the parser ran on every write
    /// and every read that began a snapshot.
    static let configGenerationSQL = "SELECT n FROM config_generation WHERE id = 1"

    /// Opens (creating if needed) the database and applies pending migrations.
    /// `autoCheckpointPages`: SQLite's default (1000) checkpoints inside the
    /// committing request; `latchkey serve` raises it and checkpoints from a
    /// background thread instead (`Checkpointer`), keeping this only as a
    /// backstop should the background thread fall behind.
    public init(path: String, writerLock: WriterLock = WriterLock(), migrate: Bool = true, busyTimeoutMillis: Int32 = 5000,
                autoCheckpointPages: Int = 1000, askAbandonedAfterMillis: Int64 = 1000) throws {
        do {
            db = try Connection(path: path, busyTimeoutMillis: busyTimeoutMillis)
            self.writerLock = writerLock
            self.busyTimeoutMillis = busyTimeoutMillis
            self.askAbandonedAfterMillis = askAbandonedAfterMillis
            try db.execute("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY;")
            try db.execute("PRAGMA wal_autocheckpoint = \(max(0, autoCheckpointPages))")
            if migrate { try SQLiteStore.migrate(db) }
        } catch let error as SQLiteError {
            throw SQLiteStore.map(error)
        }
    }

    /// Applies the migrations after `user_version`, each in its own transaction.
    /// Returns how many were applied. A schema newer than this binary's
    /// migrations is refused (`StoreError.schemaNewer`), untouched.
    @discardableResult
    static func migrate(_ db: Connection) throws -> Int {
        let mode = try db.query("PRAGMA journal_mode = WAL").first?.string(0) ?? ""
        _ = mode
        var applied = 0
        let current = try db.userVersion
        guard current <= Schema.migrations.count else { throw StoreError.schemaNewer(applied: current, known: Schema.migrations.count) }
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
    /// The migrations' text, in order (tests pin the shipped ones: a migration, once shipped, never changes).
    public static var migrations: [String] { Schema.migrations }

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
        if error.isStorageFault { return StoreError.fault(error.description) }
        return error
    }

    /// `BEGIN IMMEDIATE`, waiting for another process's lock at most what is left of the write's wait.
    private func beginImmediate(waitingAtMost leftMillis: Int32) throws {
        guard leftMillis < busyTimeoutMillis else { return try control("BEGIN IMMEDIATE") }
        db.setBusyTimeout(millis: leftMillis)
        defer { db.setBusyTimeout(millis: busyTimeoutMillis) }
        try control("BEGIN IMMEDIATE")
    }

    static func millis(since start: ContinuousClock.Instant) -> Int64 {
        let elapsed = ContinuousClock.now - start
        return elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
    }

    public func beginRequest(abandoned: @escaping @Sendable () -> Bool) { self.abandoned = abandoned }
    public func endRequest() { abandoned = { false } }

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
        // Text with a NUL is never written, as PostgreSQL's text cannot hold one (StoreError.invalidText).
        if values.contains(where: \.holdsNUL) { throw StoreError.invalidText }
        memo.invalidate()
        statementsRun += 1
        return try wrap { try db.run(sql, values) }
    }

    /// Transaction control, which changes no data (a cached prepared statement).
    func control(_ sql: String) throws {
        statementsRun += 1
        _ = try wrap { try db.run(sql) }
    }

    /// How many client answers the memo holds (tests: what a caller's made-up ids leave behind).
    package var rememberedClients: Int { memo.clients.count }

    /// True inside a read transaction whose snapshot the memo belongs to.
    private var memoUsable: Bool { depth > 0 && !writing && memo.version >= 0 }

    /// The remembered answer for `key` in `table`, or `load()`'s, remembered.
    func memoized<V>(_ table: WritableKeyPath<ReadMemo, [String: V]>, _ key: String, _ load: () throws -> V) throws -> V {
        guard memoUsable, MemoBounds.remembers(key) else { return try load() }
        if let hit = memo[keyPath: table][key] { return hit }
        let value = try load()
        if memo[keyPath: table].count >= MemoBounds.capacity { memo[keyPath: table].removeAll(keepingCapacity: true) }
        memo[keyPath: table][key] = value
        return value
    }

    // MARK: Transactions

    public func write<T>(_ body: () throws -> T) throws -> T {
        if depth > 0 {
            // A write inside a read transaction could not take the writer lock
            // and could fail on a stale snapshot: that is a bug in the caller,
            // a 500 for its request, not the end of the process.
            guard writing else { throw StoreError.writeInsideRead }
            depth += 1
            defer { depth -= 1 }
            return try body()
        }
        // One wait for the whole write: the writer lock this process's other threads may hold, then SQLite's lock
        // another process may hold, busyTimeoutMillis in all. Each waiting its own full timeout at each, the k-th writer
        // queued behind a lock held from outside waited k times it, past nginx's read timeout (storage-fault review).
        let started = ContinuousClock.now
        if !writerLock.lock.try() {
            guard writerLock.lock.lock(before: Date(timeIntervalSinceNow: Double(busyTimeoutMillis) / 1000)) else { throw StoreError.busy }
        }
        defer { writerLock.lock.unlock() }
        writesBegun += 1
        try beginImmediate(waitingAtMost: busyTimeoutMillis - Int32(clamping: Self.millis(since: started)))
        depth = 1
        writing = true
        defer { depth = 0; writing = false }
        do {
            let result = try body()
            // A write that waited may find its request given up (nginx answered 504 and closed): what it would commit,
            // nobody would hear of (a rotated refresh token, whose client retries with the old one).
            if Self.millis(since: started) >= askAbandonedAfterMillis, abandoned() { throw StoreError.abandoned }
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
        let now = try counters()
        if now.version != memo.version { memo.revalidate(version: now.version, configGeneration: now.configGeneration) }
    }

    /// `data_version` and `config_generation.n` (-1 when unreadable: the memo
    /// is then unusable). Inside the transaction, so both are the snapshot's:
    /// the first statement begins it, and `data_version` does not move within it.
    private func counters() throws -> (version: Int64, configGeneration: Int64) {
        statementsRun += 2
        return try wrap {
            let generation = try db.integer(SQLiteStore.configGenerationSQL) ?? -1
            return (try db.integer("PRAGMA data_version") ?? -1, generation)
        }
    }
}

extension Row: SQLRowValues {}

/// The shared statements (SharedSQL) on SQLite.
extension SQLiteStore: SQLStatementRunner {
    static func value(_ a: SQLArgument) -> SQLValue {
        switch a {
        case .null: return .null
        case let .int(v): return .integer(v)
        case let .text(s): return .text(s)
        case let .bytes(b): return .blob(b)
        }
    }

    public func query(_ sql: String, _ arguments: [SQLArgument]) throws -> [Row] { try rows(sql, arguments.map(SQLiteStore.value)) }
    public func update(_ sql: String, _ arguments: [SQLArgument]) throws -> Int { try exec(sql, arguments.map(SQLiteStore.value)) }
    public func blindUpdate(_ sql: String, _ arguments: [SQLArgument]) throws { try exec(sql, arguments.map(SQLiteStore.value)) }
}

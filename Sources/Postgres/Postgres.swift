internal import CLibPQ
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One connection, owned by one worker thread (libpq connections are not
/// shared; `OpaquePointer` is deliberately not Sendable). Statements are
/// prepared once per connection and sent with a deadline: a server that
/// stops answering costs at most `timeoutMillis`, then the connection is
/// dropped and the next call reconnects.
public final class PGConnection {
    let conninfo: String
    let timeoutMillis: Int32
    private var conn: OpaquePointer?
    private var prepared: [String: String] = [:]
    /// Statements sent on this connection (for tests that count round trips).
    public private(set) var roundTrips = 0
    /// How many times the connection was (re)established.
    public private(set) var connects = 0
    /// When the server last gave no answer within the deadline (a hung
    /// server or network), or a reconnect failed. Until `mayReconnect()`, or
    /// one more deadline has passed, `connect()` fails at once: a caller
    /// making several statements waits one deadline in all, not one more for
    /// each reconnect (a connect to a hung server waits out its own timeout).
    var noAnswerAt: Int64?

    /// Lets the next statement reconnect at once after a deadline passed
    /// (the store calls it as each request begins).
    public func mayReconnect() { noAnswerAt = nil }

    /// Drops the connection if the server closed it while it sat idle (a
    /// backend terminated, a restart: the server says so, then closes), so
    /// that the next statement connects again instead of failing on the dead
    /// one: every worker thread's first request after a restart was a 503
    /// (storage-fault review, session 33). A poll that does not wait (a
    /// system call, against the round trips a request makes anyway).
    public func dropIfClosedByServer() {
        guard let c = conn else { return }
        // Nothing to read: open and quiet. Something: the server spoke unasked, which an idle session without LISTEN
        // hears only as its farewell (FATAL 57P01, a crash of another backend), the end of the stream following it, or
        // not yet (the test's first run met the farewell before the end). Taken as the end either way: at worst one
        // connect more.
        if lk_pq_wait_readable(c, 0) == 1 { drop() }
    }

    /// `conninfo`: a `postgresql://` URI or `key=value` pairs (libpq's forms).
    public init(_ conninfo: String, timeoutMillis: Int = 3_000) throws {
        self.conninfo = conninfo
        self.timeoutMillis = Int32(timeoutMillis)
        try connect()
    }

    deinit { if let conn { PQfinish(conn) } }

    public var isConnected: Bool { conn.map { PQstatus($0) == CONNECTION_OK } ?? false }

    func connect() throws {
        if let at = noAnswerAt, PGConnection.nowMillis() - at < Int64(timeoutMillis) {
            throw PGError(sqlstate: nil, message: "the database failed a moment ago; not reconnecting yet", isConnectionFailure: true)
        }
        noAnswerAt = nil
        if let conn { PQfinish(conn) }
        conn = nil
        prepared = [:]
        // connect_timeout bounds a connect to a server that does not answer (libpq's floor is 2 s).
        let keys = ["dbname", "connect_timeout", "application_name"]
        let values = [conninfo, String(max(2, (Int(timeoutMillis) + 999) / 1000)), "latchkey"]
        let c: OpaquePointer? = withCStrings(keys) { k in withCStrings(values) { v in PQconnectdbParams(k, v, 1) } }
        guard let c, PQstatus(c) == CONNECTION_OK else {
            let message = c.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            if let c { PQfinish(c) }
            noAnswerAt = PGConnection.nowMillis()
            PGCounters.refused.add(1, ordering: .relaxed)
            throw PGError(sqlstate: nil, message: PGConnection.firstLine(message), isConnectionFailure: true)
        }
        lk_pq_silence_notices(c)
        // The server gives up before this client does: a statement waiting on
        // a lock, or running long, fails with an error while the client is
        // still reading, so the pipeline's COMMIT is skipped. (Each statement
        // of a pipeline has a limit of its own: several together can outlast
        // the deadline, and then the client cancels them, `awaitResult`.)
        let limits = "SET statement_timeout = \(max(100, Int(timeoutMillis) - 500)); SET lock_timeout = \(max(50, Int(timeoutMillis) - 1000))"
        let sent = limits.withCString { PQsendQuery(c, $0) }
        conn = c
        do {
            _ = try collectResults(sent, c)
        } catch {
            conn = nil
            PGCounters.refused.add(1, ordering: .relaxed)
            throw error
        }
        connects += 1
        PGCounters.connects.add(1, ordering: .relaxed)
    }

    /// Drops the connection (after a failure); the next statement reconnects.
    public func drop() {
        if conn != nil { PGCounters.failures.add(1, ordering: .relaxed) }
        if let conn { PQfinish(conn) }
        conn = nil
        prepared = [:]
    }

    /// Runs `sql` (placeholders `$1`, `$2`, ...) as a prepared statement.
    @discardableResult
    public func execute(_ sql: String, _ params: [PGValue] = []) throws -> PGResult {
        if conn == nil { try connect() }
        guard let c = conn else { throw PGError(sqlstate: nil, message: "not connected", isConnectionFailure: true) }
        let name = try preparedName(sql, params, c)
        let sent = withParams(params) { values, lengths, formats in
            PQsendQueryPrepared(c, name, Int32(params.count), values, lengths, formats, 1)
        }
        roundTrips += 1
        PGCounters.roundTrips.add(1, ordering: .relaxed)
        let result = try collectResults(sent, c)
        guard result.status == PGRES_COMMAND_OK || result.status == PGRES_TUPLES_OK else { throw failure(result, c) }
        return result.value
    }

    /// The name of `sql` prepared on this connection, preparing it first
    /// (one round trip, once per connection). Binary parameters need their
    /// types declared: a statement is prepared once per SQL text and
    /// parameter types (a NULL leaves its type to the server).
    private func preparedName(_ sql: String, _ params: [PGValue], _ c: OpaquePointer) throws -> String {
        let types = params.map(\.typeOID)
        let key = types.isEmpty ? sql : sql + "\u{0}" + types.map(String.init).joined(separator: ",")
        if let known = prepared[key] { return known }
        let name = "s\(prepared.count)"
        let sent = sql.withCString { text in types.withUnsafeBufferPointer { PQsendPrepare(c, name, text, Int32(params.count), $0.baseAddress) } }
        let result = try collectResults(sent, c)
        guard result.status == PGRES_COMMAND_OK else { throw failure(result, c) }
        prepared[key] = name
        return name
    }

    /// Sends `statements` in one round trip (libpq's pipeline mode) and
    /// returns their results in order. Statements without parameters
    /// (`BEGIN`, `COMMIT`) go unprepared; the others prepared, as `execute`
    /// sends them. When one fails the server skips the rest up to the
    /// pipeline's end, and that first failure is thrown once every result is
    /// read (an explicit transaction is then left failed: roll it back).
    public func pipeline(_ statements: [(sql: String, params: [PGValue])]) throws -> [PGResult] {
        if statements.count == 1 { return [try execute(statements[0].sql, statements[0].params)] }
        if conn == nil { try connect() }
        guard let c = conn else { throw PGError(sqlstate: nil, message: "not connected", isConnectionFailure: true) }
        // Prepared first, outside the pipeline (once per connection).
        let names = try statements.map { $0.params.isEmpty ? nil : try preparedName($0.sql, $0.params, c) }
        guard PQenterPipelineMode(c) == 1 else { throw connectionFailure(c) }
        var sentAll = true
        for (statement, name) in zip(statements, names) where sentAll {
            if let name {
                sentAll = withParams(statement.params) { values, lengths, formats in
                    PQsendQueryPrepared(c, name, Int32(statement.params.count), values, lengths, formats, 1)
                } == 1
            } else {
                sentAll = statement.sql.withCString { PQsendQueryParams(c, $0, 0, nil, nil, nil, nil, 1) } == 1
            }
        }
        guard sentAll, PQpipelineSync(c) == 1 else { throw connectionFailure(c) }
        roundTrips += 1
        PGCounters.roundTrips.add(1, ordering: .relaxed)
        var wait = Wait(deadline: PGConnection.nowMillis() + Int64(timeoutMillis))
        defer { if wait.cancelled { drop() } }
        var results: [Collected] = []
        // Per statement: its result, then a NULL; at the end one PGRES_PIPELINE_SYNC.
        while results.count < statements.count {
            var collected: Collected?
            while let r = try nextResult(c, &wait) {
                defer { PQclear(r) }
                if collected == nil { collected = PGConnection.collect(r) }
            }
            guard let collected else { throw connectionFailure(c) }
            results.append(collected)
        }
        guard let sync = try nextResult(c, &wait) else { throw connectionFailure(c) }
        let synced = PQresultStatus(sync) == PGRES_PIPELINE_SYNC
        PQclear(sync)
        guard synced, PQexitPipelineMode(c) == 1 else { throw connectionFailure(c) }
        if let failed = results.first(where: { $0.status != PGRES_COMMAND_OK && $0.status != PGRES_TUPLES_OK }) {
            throw failure(failed, c)
        }
        return results.map(\.value)
    }

    /// The next result of the connection within the deadline (nil: the
    /// current statement's results are done).
    private func nextResult(_ c: OpaquePointer, _ wait: inout Wait) throws -> OpaquePointer? {
        try awaitResult(c, &wait)
        return PQgetResult(c)
    }

    /// Runs a statement without parameters and without preparing it
    /// (transaction control, DDL).
    @discardableResult
    public func run(_ sql: String) throws -> PGResult {
        if conn == nil { try connect() }
        guard let c = conn else { throw PGError(sqlstate: nil, message: "not connected", isConnectionFailure: true) }
        let sent = sql.withCString { PQsendQueryParams(c, $0, 0, nil, nil, nil, nil, 1) }
        roundTrips += 1
        PGCounters.roundTrips.add(1, ordering: .relaxed)
        let result = try collectResults(sent, c)
        guard result.status == PGRES_COMMAND_OK || result.status == PGRES_TUPLES_OK else { throw failure(result, c) }
        return result.value
    }

    /// Runs several statements at once (a migration's DDL) in the simple
    /// query protocol; their results are not read.
    public func script(_ sql: String) throws {
        if conn == nil { try connect() }
        guard let c = conn else { throw PGError(sqlstate: nil, message: "not connected", isConnectionFailure: true) }
        let sent = sql.withCString { PQsendQuery(c, $0) }
        roundTrips += 1
        PGCounters.roundTrips.add(1, ordering: .relaxed)
        let result = try collectResults(sent, c)
        guard result.status == PGRES_COMMAND_OK || result.status == PGRES_TUPLES_OK else { throw failure(result, c) }
    }

    /// The transaction state libpq reports: idle, in a transaction, or in a failed one.
    public var inFailedTransaction: Bool { conn.map { PQtransactionStatus($0) == PQTRANS_INERROR } ?? false }
}

/// An array of C strings for libpq's keyword/value arrays, NULL-terminated.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } } + [nil]
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

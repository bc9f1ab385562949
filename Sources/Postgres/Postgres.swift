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

    /// `conninfo`: a `postgresql://` URI or `key=value` pairs (libpq's forms).
    public init(_ conninfo: String, timeoutMillis: Int = 3_000) throws {
        self.conninfo = conninfo
        self.timeoutMillis = Int32(timeoutMillis)
        try connect()
    }

    deinit { if let conn { PQfinish(conn) } }

    public var isConnected: Bool { conn.map { PQstatus($0) == CONNECTION_OK } ?? false }

    func connect() throws {
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
            PGCounters.refused.add(1, ordering: .relaxed)
            throw PGError(sqlstate: nil, message: PGConnection.firstLine(message), isConnectionFailure: true)
        }
        lk_pq_silence_notices(c)
        // The server gives up before this client does: a statement waiting on
        // a lock, or running long, fails with an error while the client is
        // still reading, so a pipeline's COMMIT is never run after the client
        // stopped waiting for it (and answered 503).
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
        let deadline = PGConnection.nowMillis() + Int64(timeoutMillis)
        var results: [Collected] = []
        // Per statement: its result, then a NULL; at the end one PGRES_PIPELINE_SYNC.
        while results.count < statements.count {
            var collected: Collected?
            while let r = try nextResult(c, deadline) {
                defer { PQclear(r) }
                if collected == nil { collected = PGConnection.collect(r) }
            }
            guard let collected else { throw connectionFailure(c) }
            results.append(collected)
        }
        guard let sync = try nextResult(c, deadline) else { throw connectionFailure(c) }
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
    private func nextResult(_ c: OpaquePointer, _ deadline: Int64) throws -> OpaquePointer? {
        while PQisBusy(c) == 1 {
            let left = deadline - PGConnection.nowMillis()
            guard left > 0, lk_pq_wait_readable(c, Int32(left)) == 1, PQconsumeInput(c) == 1 else {
                let timedOut = left <= 0
                drop()
                throw PGError(sqlstate: nil, message: timedOut ? "no answer within \(timeoutMillis) ms" : "connection lost", isConnectionFailure: true)
            }
        }
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

    // MARK: Internals

    struct Collected {
        var status: ExecStatusType
        var value: PGResult
        var sqlstate: String?
        var message: String
    }

    /// Reads every result of the statement just sent, within the deadline.
    private func collectResults(_ sent: Int32, _ c: OpaquePointer) throws -> Collected {
        guard sent == 1 else { throw connectionFailure(c) }
        var collected: Collected?
        let deadline = PGConnection.nowMillis() + Int64(timeoutMillis)
        while true {
            while PQisBusy(c) == 1 {
                let left = deadline - PGConnection.nowMillis()
                guard left > 0, lk_pq_wait_readable(c, Int32(left)) == 1, PQconsumeInput(c) == 1 else {
                    let timedOut = left <= 0
                    drop()
                    throw PGError(sqlstate: nil, message: timedOut ? "no answer within \(timeoutMillis) ms" : "connection lost",
                                  isConnectionFailure: true)
                }
            }
            guard let r = PQgetResult(c) else { break }
            defer { PQclear(r) }
            let status = PQresultStatus(r)
            let failed = status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK
            if collected == nil || (failed && collected.map { $0.status == PGRES_COMMAND_OK || $0.status == PGRES_TUPLES_OK } == true) {
                collected = PGConnection.collect(r)
            }
        }
        guard let collected else { throw connectionFailure(c) }
        return collected
    }

    private func failure(_ r: Collected, _ c: OpaquePointer) -> PGError {
        // No SQLSTATE on a failed result means the connection broke under it;
        // class 08 (connection exception) and 57P0x (the server shutting down
        // or restarting) end the session as well.
        let ended = r.sqlstate.map { $0.hasPrefix("08") || $0.hasPrefix("57P0") } ?? true
        if ended || PQstatus(c) != CONNECTION_OK {
            drop()
            return PGError(sqlstate: nil, message: PGConnection.firstLine(r.message), isConnectionFailure: true)
        }
        return PGError(sqlstate: r.sqlstate, message: PGConnection.firstLine(r.message), isConnectionFailure: false)
    }

    private func connectionFailure(_ c: OpaquePointer) -> PGError {
        let message = String(cString: PQerrorMessage(c))
        drop()
        return PGError(sqlstate: nil, message: PGConnection.firstLine(message), isConnectionFailure: true)
    }

    static func collect(_ r: OpaquePointer) -> Collected {
        let status = PQresultStatus(r)
        let sqlstate = PQresultErrorField(r, LK_PG_DIAG_SQLSTATE).map { String(cString: $0) }
        let message = String(cString: PQresultErrorMessage(r))
        var rows: [PGRow] = []
        if status == PGRES_TUPLES_OK {
            let n = PQntuples(r), fields = PQnfields(r)
            rows.reserveCapacity(Int(n))
            for row in 0..<n {
                var values: [PGValue] = []
                values.reserveCapacity(Int(fields))
                for f in 0..<fields { values.append(value(r, row, f)) }
                rows.append(PGRow(values: values))
            }
        }
        let affected = Int(String(cString: PQcmdTuples(r))) ?? 0
        let command = String(cString: PQcmdStatus(r))
        return Collected(status: status, value: PGResult(rows: rows, affected: affected, command: command), sqlstate: sqlstate, message: message)
    }

    /// One field in the binary format, by its type's OID.
    static func value(_ r: OpaquePointer, _ row: Int32, _ f: Int32) -> PGValue {
        if PQgetisnull(r, row, f) == 1 { return .null }
        let length = Int(PQgetlength(r, row, f))
        guard let raw = PQgetvalue(r, row, f) else { return .null }
        let bytes = UnsafeRawBufferPointer(start: raw, count: length)
        switch PQftype(r, f) {
        case 20, 23, 21:  // int8, int4, int2
            var v: Int64 = 0
            for b in bytes { v = v << 8 | Int64(b) }
            // Sign-extend the narrower integers.
            let bits = 64 - length * 8
            return .int(bits > 0 ? (v << Int64(bits)) >> Int64(bits) : v)
        case 16:  // bool
            return .bool(length == 1 && bytes[0] != 0)
        case 17:  // bytea
            return .bytes(Array(bytes))
        default:  // text, varchar, and anything else: UTF-8
            return .text(String(decoding: bytes, as: UTF8.self))
        }
    }

    static func firstLine(_ message: String) -> String {
        String(message.split(separator: "\n", omittingEmptySubsequences: true).first ?? "")
    }

    static func nowMillis() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// Encodes parameters in the binary format and calls `body` with libpq's
    /// three parallel arrays; every pointer lives only inside this call.
    private func withParams<R>(_ params: [PGValue], _ body: (UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> R) -> R {
        var encoded: [[UInt8]?] = []
        encoded.reserveCapacity(params.count)
        for p in params {
            switch p {
            case .null: encoded.append(nil)
            case let .int(v): encoded.append(withUnsafeBytes(of: v.bigEndian) { Array($0) })
            case let .text(s): encoded.append(Array(s.utf8))
            case let .bytes(b): encoded.append(b)
            case let .bool(b): encoded.append([b ? 1 : 0])
            }
        }
        let lengths = encoded.map { Int32($0?.count ?? 0) }
        let formats = [Int32](repeating: 1, count: params.count)
        // One buffer holds every value, so each pointer stays valid for the call.
        let total = encoded.reduce(0) { $0 + ($1?.count ?? 0) }
        let storage = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(total, 1))
        defer { storage.deallocate() }
        var pointers: [UnsafePointer<CChar>?] = []
        var offset = 0
        for value in encoded {
            guard let value else { pointers.append(nil); continue }
            for (i, b) in value.enumerated() { storage[offset + i] = b }
            pointers.append(UnsafeRawPointer(storage.baseAddress! + offset).assumingMemoryBound(to: CChar.self))
            offset += value.count
        }
        return pointers.withUnsafeBufferPointer { p in
            lengths.withUnsafeBufferPointer { l in formats.withUnsafeBufferPointer { f in body(p.baseAddress, l.baseAddress, f.baseAddress) } }
        }
    }
}

/// An array of C strings for libpq's keyword/value arrays, NULL-terminated.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } } + [nil]
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

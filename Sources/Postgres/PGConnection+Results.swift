internal import CLibPQ
#if canImport(Glibc)
import Glibc
#endif

/// Reading what libpq returns, within the deadline: results collected and
/// mapped to `PGResult` values, errors to `PGError` with their SQLSTATE,
/// parameters passed in the binary format.
extension PGConnection {
    struct Collected {
        var status: ExecStatusType
        var value: PGResult
        var sqlstate: String?
        var message: String
    }

    /// How long a call waits for the server's answer.
    struct Wait {
        var deadline: Int64
        /// Whether the server was asked to cancel (then the connection is dropped once the answer is read: a
        /// cancel that arrived late would end the connection's next statement).
        var cancelled = false
    }

    /// Waits until a result can be read without blocking. Past the deadline
    /// the server is asked, once, to cancel what it runs, and given one more
    /// `timeoutMillis` to say how it ended: PostgreSQL restarts
    /// `statement_timeout` at each statement of a pipeline, so one of several
    /// statements, each within its own limit, can outlast the client's
    /// deadline, and its COMMIT would then run after the client gave up and
    /// answered 503; the client's retry found the code or refresh token spent
    /// and revoked the grant (review, session 28). Cancelled, the running
    /// statement fails and the COMMIT is skipped (a true failure); a COMMIT
    /// already under way is not cancelled and its result arrives. Only a
    /// server that answers neither (hung, or a network gone), or a lost
    /// connection, leaves the outcome unknown: the connection is dropped.
    func awaitResult(_ c: OpaquePointer, _ wait: inout Wait) throws {
        while PQisBusy(c) == 1 {
            let left = wait.deadline - PGConnection.nowMillis()
            if left > 0, lk_pq_wait_readable(c, Int32(left)) == 1 {
                guard PQconsumeInput(c) == 1 else { break }
                continue
            }
            // The wait may have ended at the deadline itself (poll's own timeout): that is no answer too.
            guard PGConnection.nowMillis() >= wait.deadline else { break }
            if !wait.cancelled, lk_pq_cancel_detached(c) == 0 {
                wait.cancelled = true
                wait.deadline = PGConnection.nowMillis() + Int64(timeoutMillis)
                PGCounters.cancels.add(1, ordering: .relaxed)
                continue
            }
            noAnswerAt = PGConnection.nowMillis()
            drop()
            throw PGError(sqlstate: nil, message: "no answer within \(timeoutMillis) ms", isConnectionFailure: true)
        }
        guard PQisBusy(c) == 0 else {
            drop()
            throw PGError(sqlstate: nil, message: "connection lost", isConnectionFailure: true)
        }
    }

    /// Reads every result of the statement just sent, within the deadline.
    func collectResults(_ sent: Int32, _ c: OpaquePointer) throws -> Collected {
        guard sent == 1 else { throw connectionFailure(c) }
        var collected: Collected?
        var wait = Wait(deadline: PGConnection.nowMillis() + Int64(timeoutMillis))
        defer { if wait.cancelled { drop() } }
        while true {
            try awaitResult(c, &wait)
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

    func failure(_ r: Collected, _ c: OpaquePointer) -> PGError {
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

    func connectionFailure(_ c: OpaquePointer) -> PGError {
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
    func withParams<R>(_ params: [PGValue], _ body: (UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> R) -> R {
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

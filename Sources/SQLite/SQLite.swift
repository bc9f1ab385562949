internal import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// A value bound to or read from a statement.
public enum SQLValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

extension SQLValue {
    /// Text with a NUL character (which a store never writes: PostgreSQL's text cannot hold one).
    public var holdsNUL: Bool {
        guard case let .text(s) = self else { return false }
        // memchr over a native string's bytes; a byte loop for a bridged one.
        return s.utf8.withContiguousStorageIfAvailable { bytes in bytes.baseAddress.map { memchr($0, 0, bytes.count) != nil } ?? false }
            ?? s.utf8.contains(0)
    }
}

extension SQLValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .text(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(_ v: String?) { self = v.map { .text($0) } ?? .null }
    public init(_ v: Int64?) { self = v.map { .integer($0) } ?? .null }
    public init(_ v: Int) { self = .integer(Int64(v)) }
    public init(_ v: Bool) { self = .integer(v ? 1 : 0) }
    public init(_ v: [UInt8]?) { self = v.map { .blob($0) } ?? .null }
}

/// An SQLite error: result code, message and the SQL text, never bound values.
public struct SQLiteError: Error, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public let sql: String

    public var description: String { "SQLite error \(code): \(message)" + (sql.isEmpty ? "" : " [\(sql.prefix(120))]") }
    /// The database stayed locked past the busy timeout.
    public var isBusy: Bool { code & 0xFF == SQLITE_BUSY || code & 0xFF == SQLITE_LOCKED }
    public var isConstraint: Bool { code & 0xFF == SQLITE_CONSTRAINT }
    /// The file or the machine failed the work, not the statement: disk full,
    /// an I/O error, a read-only file, a file that cannot be opened, memory
    /// exhausted, the WAL's locking protocol. A corrupt file is not one of
    /// them (retrying does not cure it).
    public var isStorageFault: Bool {
        [SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_NOMEM, SQLITE_PROTOCOL].contains(code & 0xFF)
    }
}

/// One row of a result, addressed by column index.
public struct Row: Sendable {
    public let values: [SQLValue]

    public subscript(_ i: Int) -> SQLValue { values[i] }
    public func int(_ i: Int) -> Int64 { if case let .integer(v) = values[i] { return v } else { return 0 } }
    public func optionalInt(_ i: Int) -> Int64? { if case let .integer(v) = values[i] { return v } else { return nil } }
    public func string(_ i: Int) -> String {
        switch values[i] {
        case let .text(s): return s
        case let .blob(b): return String(decoding: b, as: UTF8.self)
        default: return ""
        }
    }
    public func optionalString(_ i: Int) -> String? { if case .null = values[i] { return nil } else { return string(i) } }
    public func blob(_ i: Int) -> [UInt8] {
        switch values[i] {
        case let .blob(b): return b
        case let .text(s): return Array(s.utf8)
        default: return []
        }
    }
    public func optionalBlob(_ i: Int) -> [UInt8]? { if case .null = values[i] { return nil } else { return blob(i) } }
    public func bool(_ i: Int) -> Bool { int(i) != 0 }
}

/// A prepared statement, owned by its connection's cache.
final class Statement {
    let handle: OpaquePointer
    let sql: String

    init(handle: OpaquePointer, sql: String) {
        self.handle = handle
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }
}

/// One SQLite connection. Not Sendable: each worker thread opens its own
/// (`SQLITE_OPEN_NOMUTEX`), as SQLite's threading mode requires.
public final class Connection {
    let db: OpaquePointer
    private var cache: [String: Statement] = [:]
    public let path: String

    public init(path: String, busyTimeoutMillis: Int32 = 5000) throws {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let handle { sqlite3_close_v2(handle) }
            throw SQLiteError(code: rc, message: message, sql: "")
        }
        db = handle
        self.path = path
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, busyTimeoutMillis)
    }

    /// How long a statement waits for a lock another connection holds before it fails busy (0: not at all).
    public func setBusyTimeout(millis: Int32) {
        sqlite3_busy_timeout(db, max(0, millis))
    }

    deinit {
        cache.removeAll()
        sqlite3_close_v2(db)
    }

    func error(_ rc: Int32, _ sql: String) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(db)), sql: sql)
    }

    /// Runs one or more statements without bindings (schema, pragmas).
    public func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? "error"
            sqlite3_free(message)
            throw SQLiteError(code: rc, message: text, sql: sql)
        }
    }

    private func prepared(_ sql: String) throws -> Statement {
        if let cached = cache[sql] { return cached }
        var handle: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &handle, nil)
        guard rc == SQLITE_OK, let handle else { throw error(rc, sql) }
        let statement = Statement(handle: handle, sql: sql)
        cache[sql] = statement
        return statement
    }

    private func bind(_ statement: Statement, _ values: [SQLValue]) throws {
        let h = statement.handle
        for (i, value) in values.enumerated() {
            let index = Int32(i + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(h, index)
            case let .integer(v): rc = sqlite3_bind_int64(h, index, v)
            case let .real(v): rc = sqlite3_bind_double(h, index, v)
            case let .text(s) where s.isEmpty: rc = sqlite3_bind_text(h, index, s, 0, lk_sqlite_transient())
            case let .text(s):
                // Its bytes and their count: a C string would end at a NUL, and "a\0b" would be bound (and compared) as "a".
                var text = s
                rc = text.withUTF8 { utf8 in
                    utf8.withMemoryRebound(to: CChar.self) { sqlite3_bind_text(h, index, $0.baseAddress, Int32($0.count), lk_sqlite_transient()) }
                }
            case let .blob(b):
                rc = b.withUnsafeBytes { sqlite3_bind_blob(h, index, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(b.count), lk_sqlite_transient()) }
            }
            guard rc == SQLITE_OK else { throw error(rc, statement.sql) }
        }
    }

    /// Runs a query and returns every row.
    public func query(_ sql: String, _ values: [SQLValue] = []) throws -> [Row] {
        let statement = try prepared(sql)
        let h = statement.handle
        defer {
            sqlite3_reset(h)
            sqlite3_clear_bindings(h)
        }
        try bind(statement, values)
        var rows: [Row] = []
        let columns = sqlite3_column_count(h)
        while true {
            let rc = sqlite3_step(h)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error(rc, sql) }
            var row: [SQLValue] = []
            row.reserveCapacity(Int(columns))
            for c in 0..<columns {
                switch sqlite3_column_type(h, c) {
                case SQLITE_INTEGER: row.append(.integer(sqlite3_column_int64(h, c)))
                case SQLITE_FLOAT: row.append(.real(sqlite3_column_double(h, c)))
                case SQLITE_TEXT:
                    let n = Int(sqlite3_column_bytes(h, c))
                    if let p = sqlite3_column_text(h, c) {
                        row.append(.text(String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)))
                    } else {
                        row.append(.text(""))
                    }
                case SQLITE_BLOB:
                    let n = Int(sqlite3_column_bytes(h, c))
                    if let p = sqlite3_column_blob(h, c), n > 0 {
                        row.append(.blob(Array(UnsafeRawBufferPointer(start: p, count: n))))
                    } else {
                        row.append(.blob([]))
                    }
                default: row.append(.null)
                }
            }
            rows.append(Row(values: row))
        }
        return rows
    }

    /// The first column of the first row as an integer, nil without a row;
    /// builds no row values (for `PRAGMA data_version` on every request).
    public func integer(_ sql: String) throws -> Int64? {
        let statement = try prepared(sql)
        let h = statement.handle
        defer { sqlite3_reset(h) }
        let rc = sqlite3_step(h)
        if rc == SQLITE_DONE { return nil }
        guard rc == SQLITE_ROW else { throw error(rc, sql) }
        return sqlite3_column_int64(h, 0)
    }

    /// Runs a statement and returns the number of rows it changed.
    @discardableResult
    public func run(_ sql: String, _ values: [SQLValue] = []) throws -> Int {
        _ = try query(sql, values)
        return Int(sqlite3_changes(db))
    }

    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(db) }

    public var userVersion: Int {
        get throws { Int(try query("PRAGMA user_version").first?.int(0) ?? 0) }
    }

    public func setUserVersion(_ v: Int) throws { try execute("PRAGMA user_version = \(v)") }

    public var isInTransaction: Bool { sqlite3_get_autocommit(db) == 0 }
}

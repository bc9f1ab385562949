#if canImport(Glibc)
import Glibc
#endif

/// A value bound to, or read from, a PostgreSQL statement. Parameters and
/// results travel in the binary format: integers as 8 bytes in network
/// order, text as its UTF-8 bytes, bytea as is.
public enum PGValue: Sendable, Equatable {
    case null
    case int(Int64)
    case text(String)
    case bytes([UInt8])
    case bool(Bool)

    public init(_ v: String?) { self = v.map { .text($0) } ?? .null }
    public init(_ v: Int64?) { self = v.map { .int($0) } ?? .null }
    public init(_ v: Int) { self = .int(Int64(v)) }
    public init(_ v: Bool) { self = .bool(v) }

    /// Text with a NUL character, which PostgreSQL's text type cannot hold.
    public var holdsNUL: Bool {
        guard case let .text(s) = self else { return false }
        // memchr over a native string's bytes; a byte loop for a bridged one.
        return s.utf8.withContiguousStorageIfAvailable { bytes in bytes.baseAddress.map { memchr($0, 0, bytes.count) != nil } ?? false }
            ?? s.utf8.contains(0)
    }

    /// The PostgreSQL type a parameter is sent as (0: the server decides).
    var typeOID: UInt32 {
        switch self {
        case .null: return 0
        case .int: return 20    // int8
        case .text: return 25   // text
        case .bytes: return 17  // bytea
        case .bool: return 16   // bool
        }
    }
}

/// Why a statement failed. A connection failure (no SQLSTATE, a NULL
/// result, a broken or timed-out connection) means the connection was
/// dropped: the caller answers 503 (or retries an idempotent read); the next
/// call reconnects. Errors carry the SQLSTATE and the server's message, never
/// a bound value.
public struct PGError: Error, CustomStringConvertible, Sendable {
    public let sqlstate: String?
    public let message: String
    public let isConnectionFailure: Bool

    public init(sqlstate: String?, message: String, isConnectionFailure: Bool) {
        self.sqlstate = sqlstate
        self.message = message
        self.isConnectionFailure = isConnectionFailure
    }

    /// 40001 (serialization failure) or 40P01 (deadlock): retry the whole transaction.
    public var isRetryable: Bool { sqlstate == "40001" || sqlstate == "40P01" }
    /// 23xxx: a constraint refused the write.
    public var isConstraint: Bool { sqlstate?.hasPrefix("23") == true }
    public var description: String { "postgres \(sqlstate ?? "connection") \(message)" }
}

/// One row of a result: typed accessors by column index.
public struct PGRow: Sendable {
    public let values: [PGValue]

    public func string(_ i: Int) -> String { if case let .text(s) = values[i] { return s } else { return "" } }
    public func optionalString(_ i: Int) -> String? { if case let .text(s) = values[i] { return s } else { return nil } }
    public func int(_ i: Int) -> Int64 { optionalInt(i) ?? 0 }
    public func optionalInt(_ i: Int) -> Int64? {
        switch values[i] {
        case let .int(v): return v
        case let .bool(b): return b ? 1 : 0
        default: return nil
        }
    }
    public func bool(_ i: Int) -> Bool { if case let .bool(b) = values[i] { return b } else { return int(i) != 0 } }
    public func blob(_ i: Int) -> [UInt8] { if case let .bytes(b) = values[i] { return b } else { return [] } }
    /// The columns from `start` on, as a row of their own (the joined table's part of a row).
    public func columns(from start: Int) -> PGRow { PGRow(values: Array(values[start...])) }
    /// Whether column `i` is NULL (an outer join that found nothing).
    public func isNull(_ i: Int) -> Bool { values[i] == .null }
}

/// The outcome of one statement: its rows and how many rows it changed.
public struct PGResult: Sendable {
    public let rows: [PGRow]
    public let affected: Int
    /// The command tag (`COMMIT`, or `ROLLBACK` when a COMMIT failed).
    public let command: String

    public init(rows: [PGRow], affected: Int, command: String) {
        (self.rows, self.affected, self.command) = (rows, affected, command)
    }
}

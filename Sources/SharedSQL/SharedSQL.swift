import Common
import OAuth

/// The SQL both stores run alike (SPEC 9: one behaviour on every store).
/// Statements use `?` placeholders (the PostgreSQL store numbers them);
/// booleans are 0/1 integers and lists JSON text, on both engines. What
/// differs between the engines (the read memos, PostgreSQL's locks, rows
/// read along, SQLite's triggers) stays in each store; what is the same is
/// written once, here, as protocol extensions that satisfy the storage roles.

/// What a store's per-connection read memo may hold (both stores alike).
public enum MemoBounds {
    /// Entries per table; a full table starts over.
    public static let capacity = 4096
    /// Longer keys are looked up but never remembered: every key is an id
    /// (at most 50 bytes, a jti or a hash 43), and a caller's made-up id of
    /// kilobytes (an anonymous app read) otherwise stayed, 4,096 of them a
    /// worker (review, session 20: 100 MB).
    public static let maxKeyBytes = 64

    public static func remembers(_ key: String) -> Bool { key.utf8.count <= maxKeyBytes }
}

/// A value bound to a shared statement: the same neutral values a backup
/// carries (`StoredValue`), so restoring binds them as they are.
public typealias SQLArgument = StoredValue

extension StoredValue {
    public init(_ v: String?) { self = v.map { .text($0) } ?? .null }
    public init(_ v: Int64?) { self = v.map { .int($0) } ?? .null }
    public init(_ v: Int) { self = .int(Int64(v)) }
    public init(flag: Bool) { self = .int(flag ? 1 : 0) }
}

/// What the shared mappings read of a row, by column index.
public protocol SQLRowValues {
    func string(_ i: Int) -> String
    func optionalString(_ i: Int) -> String?
    func int(_ i: Int) -> Int64
    func optionalInt(_ i: Int) -> Int64?
    func bool(_ i: Int) -> Bool
    func blob(_ i: Int) -> [UInt8]
}

/// What a store offers the shared statements.
public protocol SQLStatementRunner: AnyObject {
    associatedtype Row: SQLRowValues
    func query(_ sql: String, _ arguments: [SQLArgument]) throws -> [Row]
    /// A write; the number of rows it changed.
    @discardableResult
    func update(_ sql: String, _ arguments: [SQLArgument]) throws -> Int
    /// A write whose outcome nobody reads: PostgreSQL sends it with the
    /// transaction's next statement or its COMMIT; SQLite runs it at once.
    func blindUpdate(_ sql: String, _ arguments: [SQLArgument]) throws
}

extension SQLStatementRunner {
    func query(_ sql: String) throws -> [Row] { try query(sql, []) }
}

extension SQLRowValues {
    /// A JSON array of strings stored as text (scopes, URIs, groups).
    func strings(_ i: Int) -> [String] { ((try? JSON.parse(string(i)))?.arrayValue ?? []).compactMap(\.stringValue) }
}

extension SQLStatementRunner {
    /// Inserts a backup's rows of one table as they are (`latchkey restore`), inside the caller's transaction.
    public func insertRows(of dump: TableDump) throws {
        guard !dump.rows.isEmpty else { return }
        let sql = "INSERT INTO \(dump.table)(\(dump.columns.map { "\"\($0)\"" }.joined(separator: ", "))) VALUES("
            + Array(repeating: "?", count: dump.columns.count).joined(separator: ", ") + ")"
        for row in dump.rows { try update(sql, row) }
    }
}

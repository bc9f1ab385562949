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

/// The purges of expired rows, each run at an insert into its table (what
/// an anonymous caller stored is gone once it expires: SPEC 7.1). Each
/// names both ends of the range, the lower one the smallest integer: with
/// `expires_at < $1` alone PostgreSQL took a third of the rows to match (it
/// knows no values before autovacuum first analyzes a table), planned a
/// sequential scan while the table was new and kept that plan for the
/// prepared statement, so each insert read the whole table and code flows
/// fell from 800/s to 200/s in the first 30 seconds of a database. A range
/// with both ends it takes to be narrow, and the expiry index serves it
/// whatever it knows of the table (`PostgresPurgePlanTests`).
///
/// A purge takes about `batch` rows at most, the oldest first: rows that
/// pile up while nothing is inserted (a burst, then a pause longer than
/// they live) go a batch at each insert after it, not all in the request
/// that comes first, holding the writer meanwhile (1.5 million expired DPoP
/// proofs took one DELETE 12 s on SQLite). The bound is the expiry of the
/// `batch`-th oldest expired row, so the DELETE stays the range scan of the
/// expiry index that it was; rows of that same expiry go too. Expiries are
/// the server's milliseconds, and the single-use records' (whose client
/// picks the second: a proof's `iat`, an assertion's `exp`) carry the
/// server's millisecond as well, so a client that pins one second spreads
/// its records over a thousand expiries, not one (review, session 31: a
/// pinned `iat` put every proof of two minutes in one purge). Each
/// insert adds one row and may take away `batch` (the single-use tables',
/// purged at one insert in sixteen, `batch` / 16): a backlog shrinks while
/// traffic lasts.
public enum ExpiredRows {
    public static let batch = 512

    /// How long past its expiry a single-use record is left for a purge: its
    /// expiry is by the clock of the node that accepted it, and a purge on a
    /// node whose clock runs ahead took records that a node whose clock lags
    /// still accepted the proof or assertion of (review, session 32: two
    /// nodes 200 s apart took one DPoP proof twice). Taking a record over
    /// (`expires_at < now`) is judged by the node that would accept it, so that
    /// stays exact; purges now hold while the nodes' clocks differ by less than
    /// this and the proof's window (60 s) together: three minutes, three times
    /// what access tokens already allow (a node more than 60 s ahead issues
    /// tokens the others refuse), for records kept twice as long.
    public static let singleUseMarginMillis: Int64 = 2 * 60_000

    /// How long past its token's expiry a revocation is kept: while a node whose clock lags by less than this
    /// still takes the token, it finds the revocation. Ten minutes (review of the change, session 34): the rows
    /// are small, and a lagging node must never take a revoked token again.
    public static let revocationMarginMillis: Int64 = 10 * 60_000

    static func purge(_ table: String) -> String {
        """
        DELETE FROM \(table) WHERE expires_at < ? AND expires_at >= ? AND expires_at <= COALESCE((SELECT expires_at FROM \(table) \
        WHERE expires_at < ? AND expires_at >= ? ORDER BY expires_at LIMIT 1 OFFSET \(batch - 1)), ?)
        """
    }

    /// The arguments of every purge: rows that expired before `before`.
    static func arguments(before: Int64) -> [SQLArgument] { [.int(before), .int(Int64.min), .int(before), .int(Int64.min), .int(before)] }

    static let revokedTokens = purge("revoked_tokens")
    static let authorizationRequests = purge("authorization_requests")
    static let pushedRequests = purge("pushed_requests")
    static let authorizationCodes = purge("authorization_codes")
    static let deviceCodes = purge("device_codes")
    static let sessionClients = purge("session_clients")
    static let sessions = purge("sessions")
    static let clientAssertions = purge("client_assertions")
    static let dpopProofs = purge("dpop_proofs")
    static let refreshTokens = purge("refresh_tokens")
    static let tokenFamilies = purge("token_families")
    static let failureCounts = purge("failure_counts")

    /// Every purge (tests read their plans).
    public static var all: [String] {
        [revokedTokens, authorizationRequests, pushedRequests, authorizationCodes, deviceCodes, sessionClients, sessions, clientAssertions,
         dpopProofs, refreshTokens, tokenFamilies, failureCounts]
    }
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

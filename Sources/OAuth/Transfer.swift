/// Moving the whole state between stores (SPEC 9: `latchkey backup` writes
/// a SQLite file whichever store is in use; `latchkey restore` loads one
/// into an empty PostgreSQL). Each store dumps and loads its tables row by
/// row in these neutral values; the columns are named, so the two schemas
/// need only agree on names.
public enum StoredValue: Sendable, Equatable {
    case null
    case int(Int64)
    case text(String)
    case bytes([UInt8])
}

/// One table's rows, columns named.
public struct TableDump: Sendable, Equatable {
    public var table: String
    public var columns: [String]
    public var rows: [[StoredValue]]

    public init(table: String, columns: [String], rows: [[StoredValue]]) {
        self.table = table
        self.columns = columns
        self.rows = rows
    }
}

/// A store whose whole state can be read in one snapshot and loaded into
/// an empty one.
public protocol TransferableStore: AnyObject {
    /// Every table of `StateTables.all`, from one consistent snapshot.
    func dumpAll() throws -> [TableDump]
    /// Loads dumps into this (empty) store in one transaction, then puts
    /// what the store keeps for itself (counters, sequences) in order.
    func loadAll(_ dumps: [TableDump]) throws
    /// Whether the store holds no state yet (no organization, no key).
    func isEmpty() throws -> Bool
}

/// The tables that make up Latchkey's state, parents before children.
public enum StateTables {
    public static let all = [
        "meta", "organizations", "clients", "registration_tokens", "retired_client_ids", "client_secrets", "client_logos", "signing_keys", "revoked_tokens",
        "users", "user_profiles", "audit_events", "sessions", "authorization_requests", "token_families", "authorization_codes", "refresh_tokens",
        "connections", "upstream_clients", "session_clients", "logout_deliveries", "client_assertions", "pushed_requests", "dpop_proofs",
        "device_codes", "anonymous_registrations",
    ]
}

/// Copies everything from one store into another, empty, one.
public enum StateTransfer {
    public static func copy(from source: any TransferableStore, to destination: any TransferableStore) throws -> [String: Int] {
        guard try destination.isEmpty() else { throw ProvisioningError.invalid("the destination already holds state: restore needs an empty database") }
        let dumps = try source.dumpAll()
        try destination.loadAll(dumps)
        return Dictionary(uniqueKeysWithValues: dumps.map { ($0.table, $0.rows.count) })
    }
}

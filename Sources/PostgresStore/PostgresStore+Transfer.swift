import Common
import Foundation
import OAuth
import SharedSQL
import Postgres

extension PostgresStore: TransferableStore {
    /// Every table from one REPEATABLE READ snapshot (SPEC 9: a consistent backup while nodes run).
    public func dumpAll() throws -> [TableDump] {
        try wrap {
            try db.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            defer { _ = try? db.run("COMMIT") }
            return try StateTables.all.map { table in
                let columns = try db.execute("SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                                             [.text(table)]).rows.map { $0.string(0) }
                let list = columns.map { "\"\($0)\"" }.joined(separator: ", ")
                let data = try db.execute("SELECT \(list) FROM \(table)").rows.map { row in
                    row.values.map { value -> StoredValue in
                        switch value {
                        case .null: return .null
                        case let .int(v): return .int(v)
                        case let .bool(b): return .int(b ? 1 : 0)
                        case let .text(t): return .text(t)
                        case let .bytes(b): return .bytes(b)
                        }
                    }
                }
                return TableDump(table: table, columns: columns, rows: data)
            }
        }
    }

    public func loadAll(_ dumps: [TableDump]) throws {
        try write {
            for dump in dumps { try insertRows(of: dump) }
            // Every id the loaded state ever gave is claimed.
            try exec("INSERT INTO client_ids(client_id) SELECT client_id FROM clients UNION SELECT client_id FROM retired_client_ids ON CONFLICT DO NOTHING")
            // The insert trigger counted the events on top of the counts loaded with their organizations (and a backup from
            // before the count has none): counted from the events loaded.
            try exec("UPDATE organizations SET audit_count = (SELECT count(*) FROM audit_events WHERE audit_events.organization_id = organizations.id)")
            // Identity columns continue after the loaded ids.
            for table in ["client_secrets", "audit_events"] {
                try rows("SELECT setval(pg_get_serial_sequence('\(table)', 'id'), GREATEST((SELECT max(id) FROM \(table)), 1))")
            }
        }
    }

    public func isEmpty() throws -> Bool {
        try wrap { try db.execute("SELECT (SELECT count(*) FROM organizations) + (SELECT count(*) FROM signing_keys)").rows.first?.int(0) == 0 }
    }
}

import Common
import Foundation
import OAuth
import SharedSQL
import SQLite
import Synchronization

extension SQLiteStore: TransferableStore {
    public func dumpAll() throws -> [TableDump] {
        // One read transaction: its first query starts the snapshot every table is read from.
        try read {
            try StateTables.all.map { table in
                let columns = try rows("SELECT name FROM pragma_table_info(?)", [.text(table)]).map { $0.string(0) }
                let list = columns.map { "\"\($0)\"" }.joined(separator: ", ")
                let data = try rows("SELECT \(list) FROM \(table)").map { row in
                    row.values.map { value -> StoredValue in
                        switch value {
                        case .null: return .null
                        case let .integer(v): return .int(v)
                        case let .real(v): return .int(Int64(v))
                        case let .text(t): return .text(t)
                        case let .blob(b): return .bytes(b)
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
            // The insert trigger counted the clients on top of the counts loaded with their organizations.
            try exec("UPDATE organizations SET client_count = (SELECT count(*) FROM clients WHERE clients.organization_id = organizations.id)")
            // The insert trigger counted the events on top of the counts loaded with their organizations (and a backup from
            // before the count has none): counted from the events loaded.
            try exec("UPDATE organizations SET audit_count = (SELECT count(*) FROM audit_events WHERE audit_events.organization_id = organizations.id)")
        }
    }

    public func isEmpty() throws -> Bool {
        try read { try rows("SELECT (SELECT count(*) FROM organizations) + (SELECT count(*) FROM signing_keys)").first?.int(0) == 0 }
    }
}

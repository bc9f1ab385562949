import ArgumentParser
import Common
import Cryptography
import FastCGI
import Foundation
import HTTPCore
import Imaging
import OAuth
import Postgres
import PostgresStore
import SQLiteStore
import Server

/// SPEC 9: loads a SQLite file (a backup, or a SQLite deployment's database)
/// into an empty PostgreSQL database, so a deployment can move between stores.
struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Load a SQLite file (from latchkey backup) into an empty PostgreSQL database.")
    @OptionGroup var common: Common
    @Argument var path: String

    func run() throws {
        guard let url = common.databaseURL else { throw ValidationError("restore loads into PostgreSQL: pass --database URL or set LATCHKEY_DATABASE_URL") }
        guard FileManager.default.fileExists(atPath: path) else { throw CLIError("\(path) does not exist") }
        // The file is brought to the current schema on a copy: the backup itself is left as it was.
        let copy = NSTemporaryDirectory() + "latchkey-restore-" + UUID().uuidString + ".db"
        try FileManager.default.copyItem(atPath: path, toPath: copy)
        defer { try? FileManager.default.removeItem(atPath: copy) }
        let source = try SQLiteStore(path: copy)
        let counts = try StateTransfer.copy(from: source, to: try PostgresStore(url: url, timeoutMillis: 600_000))
        printJSON(["restored": .string(path), "rows": .object(counts.sorted { $0.key < $1.key }.map { ($0.key, JSON($0.value)) })])
    }
}

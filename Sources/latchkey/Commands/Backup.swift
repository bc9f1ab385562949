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

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a consistent online copy of the state as a SQLite file, from either store (SQLite: VACUUM INTO; PostgreSQL: one REPEATABLE READ snapshot).")
    @OptionGroup var common: Common
    @Argument var path: String

    func run() throws {
        guard !FileManager.default.fileExists(atPath: path) else { throw CLIError("\(path) already exists") }
        if let url = common.databaseURL {
            // A whole table per statement: minutes, not the serving deadline of 3 s.
            let source = try PostgresStore(url: url, migrate: false, timeoutMillis: 600_000)
            // The copy is made table by table in this binary's schema: a newer one would lose what this binary does
            // not know, silently; an older one lacks columns it reads. Checked before the file is made.
            let applied = try source.schemaVersionApplied()
            if applied > PostgresStore.schemaVersion { throw StoreError.schemaNewer(applied: applied, known: PostgresStore.schemaVersion) }
            guard applied == PostgresStore.schemaVersion else {
                throw CLIError("the database's schema is version \(applied), older than this latchkey's \(PostgresStore.schemaVersion): "
                               + "back it up with the latchkey that serves it, or run `latchkey migrate` first")
            }
            let counts = try StateTransfer.copy(from: source, to: try SQLiteStore(path: path))
            printJSON(["backup": .string(path), "rows": .object(counts.sorted { $0.key < $1.key }.map { ($0.key, JSON($0.value)) })])
        } else {
            // VACUUM INTO copies the file as it is, whatever its schema: a backup never migrates (one taken before an
            // upgrade is of the schema before it; restore brings its copy up to date).
            let store = try common.openStore(migrate: false)
            try store.backup(to: path)
            printJSON(["backup": .string(path)])
        }
    }
}

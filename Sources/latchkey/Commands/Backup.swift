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
            let counts = try StateTransfer.copy(from: source, to: try SQLiteStore(path: path))
            printJSON(["backup": .string(path), "rows": .object(counts.sorted { $0.key < $1.key }.map { ($0.key, JSON($0.value)) })])
        } else {
            let store = try common.openStore()
            try store.backup(to: path)
            printJSON(["backup": .string(path)])
        }
    }
}

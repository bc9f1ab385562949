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

struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending schema migrations (idempotent).")
    @OptionGroup var common: Common

    func run() throws {
        if let url = common.databaseURL {
            // Several nodes may run this at once: migrations apply under a lock row.
            let store = try PostgresStore(url: url, migrate: false, timeoutMillis: 600_000)
            _ = try store.migrate()
            printJSON(["schema_version": JSON(try store.schemaVersionApplied())])
        } else {
            let store = try common.openStore(creating: true)
            printJSON(["schema_version": JSON(try store.schemaVersionApplied())])
        }
    }
}

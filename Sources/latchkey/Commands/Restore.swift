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
        // The file is brought to the current schema on a copy: the backup itself is left as it was. The copy lives
        // in a directory of its own (0700): FileManager gives it the backup's mode whatever the umask, and SQLite
        // its journals the same, so a backup readable by others made a working copy readable by them too.
        let directory = NSTemporaryDirectory() + "latchkey-restore-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let copy = directory + "/backup.db"
        try FileManager.default.copyItem(atPath: path, toPath: copy)
        let source = try SQLiteStore(path: copy)
        let counts = try StateTransfer.copy(from: source, to: try PostgresStore(url: url, timeoutMillis: 600_000))
        printJSON(["restored": .string(path), "rows": .object(counts.sorted { $0.key < $1.key }.map { ($0.key, JSON($0.value)) })])
    }
}

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

/// Options every subcommand shares. Each flag has an environment twin.
struct Common: ParsableArguments {
    @Option(name: .long, help: "SQLite database path (env LATCHKEY_DB; default $LATCHKEY_STATE_DIR/latchkey.db).")
    var db: String?

    @Option(name: .long, help: "PostgreSQL instead of SQLite: a postgresql:// URL or libpq key=value string (env LATCHKEY_DATABASE_URL).")
    var database: String?

    @Option(name: .customLong("kek-file"), help: "Key-encryption key file for private keys at rest (env LATCHKEY_KEK_FILE).")
    var kekFile: String?

    var env: [String: String] { ProcessInfo.processInfo.environment }

    func databasePath() throws -> String {
        if let db, !db.isEmpty { return db }
        if let v = env["LATCHKEY_DB"], !v.isEmpty { return v }
        if let dir = env["LATCHKEY_STATE_DIR"], !dir.isEmpty { return dir + "/latchkey.db" }
        throw ValidationError("no database: pass --db PATH or set LATCHKEY_DB")
    }

    /// The KEK: SHA-256 of the file's bytes (at least 32 bytes of key material).
    /// Also found as systemd credential `kek` (LoadCredential=kek:...).
    func kek() throws -> [UInt8]? {
        var path = kekFile ?? env["LATCHKEY_KEK_FILE"]
        if path == nil, let dir = env["CREDENTIALS_DIRECTORY"], FileManager.default.fileExists(atPath: dir + "/kek") { path = dir + "/kek" }
        guard let path, !path.isEmpty else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read key-encryption key file \(path)") }
        guard data.count >= 32 else { throw CLIError("key-encryption key file must hold at least 32 bytes") }
        return Digest.sha256(Array(data))
    }

    /// The PostgreSQL URL when one is configured (SPEC 9); SQLite otherwise.
    var databaseURL: String? {
        if let database, !database.isEmpty { return database }
        if let v = env["LATCHKEY_DATABASE_URL"], !v.isEmpty { return v }
        return nil
    }

    /// The configured store: PostgreSQL when a URL is given, else SQLite.
    /// Only `creating` (init, migrate) makes a SQLite file that is not
    /// there: any other command on a missing one says so and leaves none.
    /// The store, migrated unless told not to. On PostgreSQL the store keeps
    /// the serving deadline (a database that does not answer fails the
    /// command in seconds), and the migration runs on a connection of its own
    /// that may wait two minutes: for another node's migration (the lock
    /// row), or a long one of its own (a node starting, a CLI command run
    /// meanwhile; independent review, session 20).
    func openAnyStore(migrate: Bool = true, creating: Bool = false) throws -> any Store {
        if let url = databaseURL {
            let store = try PostgresStore(url: url, migrate: false)
            if migrate { _ = try PostgresStore(url: url, migrate: false, timeoutMillis: 120_000).migrate() }
            return store
        }
        return try openStore(creating: creating)
    }

    func openStore(creating: Bool = false, migrate: Bool = true) throws -> SQLiteStore {
        let path = try databasePath()
        guard creating || FileManager.default.fileExists(atPath: path) else {
            throw CLIError("no database at \(path): \(ProvisioningError.notInitialized.description)")
        }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty && !FileManager.default.fileExists(atPath: dir) {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        return try SQLiteStore(path: path, migrate: migrate)
    }

    func environment(issuer: String) throws -> OAuth.Environment {
        OAuth.Environment(issuer: issuer, now: { Int64(Date().timeIntervalSince1970 * 1000) }, kek: try kek())
    }
}

/// Issuer identifiers (RFC 8414 §2): https, or http on a loopback host for
/// local runs; no query or fragment; no trailing slash.
func validatedIssuer(_ raw: String) throws -> String {
    var issuer = raw
    while issuer.hasSuffix("/") { issuer.removeLast() }
    guard let url = URL(string: issuer), let scheme = url.scheme, let host = url.host, !host.isEmpty,
          url.query == nil, url.fragment == nil, !issuer.contains("#"), !issuer.contains("?") else {
        throw ValidationError("issuer must be an absolute URL without query or fragment")
    }
    let loopback = host == "localhost" || host == "127.0.0.1" || host == "::1" || host == "[::1]"
    guard scheme == "https" || (scheme == "http" && loopback) else {
        throw ValidationError("issuer must use https (http only on localhost / 127.0.0.1)")
    }
    return issuer
}

func printJSON(_ value: JSON) { print(value.text) }

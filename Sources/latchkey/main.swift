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

/// Errors the CLI prints to stderr with exit code 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

struct Latchkey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latchkey",
        abstract: "Latchkey: an OAuth 2.0 / OpenID Connect authorization server with an OAuth client registry.",
        subcommands: [Init.self, Migrate.self, Org.self, UserCommand.self, Keys.self, Backup.self, Restore.self, Serve.self, ReencodeImage.self])
}

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
    func openAnyStore(migrate: Bool = true) throws -> any Store {
        if let url = databaseURL { return try PostgresStore(url: url, migrate: migrate) }
        return try openStore()
    }

    func openStore() throws -> SQLiteStore {
        let path = try databasePath()
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty && !FileManager.default.fileExists(atPath: dir) {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        return try SQLiteStore(path: path)
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

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create the schema, the first signing key, an organization and its primary client.")
    @OptionGroup var common: Common
    @Option(help: "Issuer URL (env LATCHKEY_ISSUER).") var issuer: String?
    @Option(help: "Name of the first organization.") var org: String = "Default"
    @Option(name: .customLong("client-limit"), help: "Maximum clients of the organization.") var clientLimit: Int = Provisioning.defaultClientLimit
    @Option(help: "Signing algorithm of the first key: ES256, RS256 or EdDSA.") var alg: String = "ES256"

    func run() throws {
        guard let raw = issuer ?? common.env["LATCHKEY_ISSUER"] else { throw ValidationError("--issuer (or LATCHKEY_ISSUER) is required") }
        let issuer = try validatedIssuer(raw)
        guard let algorithm = SignatureAlgorithm(rawValue: alg) else { throw ValidationError("--alg must be ES256, RS256 or EdDSA") }
        let store = try common.openAnyStore()
        let result = try Provisioning(env: try common.environment(issuer: issuer), store: store)
            .initialize(issuer: issuer, organizationName: org, clientLimit: clientLimit, algorithm: algorithm)
        printJSON(result.json)
    }
}

struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending schema migrations (idempotent).")
    @OptionGroup var common: Common

    func run() throws {
        if let url = common.databaseURL {
            // Several nodes may run this at once: migrations apply under a lock row.
            let store = try PostgresStore(url: url)
            printJSON(["schema_version": JSON(try store.schemaVersionApplied())])
        } else {
            let store = try common.openStore()
            printJSON(["schema_version": JSON(try store.schemaVersionApplied())])
        }
    }
}

struct Org: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage organizations.", subcommands: [Create.self, ResetPrimary.self])

    /// SPEC 6.0: the operator's way back in when an organization's primary
    /// client lost its secret (or, on an old version, its grant or scopes).
    struct ResetPrimary: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset-primary",
            abstract: "Give the organization's primary client back its grant and scopes and a new secret (printed once).")
        @OptionGroup var common: Common
        @Argument(help: "Organization id (org-...).") var organizationID: String

        func run() throws {
            let store = try common.openAnyStore()
            guard let issuer = try store.meta("issuer") else { throw CLIError(ProvisioningError.notInitialized.description) }
            let result = try Provisioning(env: try common.environment(issuer: issuer), store: store).resetPrimary(organizationID: organizationID)
            printJSON(result.json)
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an organization with its own primary client.")
        @OptionGroup var common: Common
        @Argument(help: "Organization name.") var name: String
        @Option(name: .customLong("client-limit")) var clientLimit: Int = Provisioning.defaultClientLimit

        func run() throws {
            let store = try common.openAnyStore()
            guard let issuer = try store.meta("issuer") else { throw CLIError(ProvisioningError.notInitialized.description) }
            let result = try Provisioning(env: try common.environment(issuer: issuer), store: store).createOrganization(name: name, clientLimit: clientLimit)
            printJSON(result.json)
        }
    }
}

struct UserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "user", abstract: "Manage local users.", subcommands: [Add.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a local user; the password is read from standard input.")
        @OptionGroup var common: Common
        @Argument var username: String
        @Option var email: String?
        @Option var name: String?
        @Flag(name: .customLong("password-stdin"), help: "Read the password from standard input (required).") var passwordStdin = false

        func run() throws {
            guard passwordStdin else { throw ValidationError("--password-stdin is required (passwords are never taken as arguments)") }
            var password = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            if password.hasSuffix("\n") { password.removeLast() }
            if password.hasSuffix("\r") { password.removeLast() }
            let store = try common.openAnyStore()
            let issuer = try store.meta("issuer") ?? "http://localhost"
            let id = try Provisioning(env: try common.environment(issuer: issuer), store: store)
                .addUser(username: username, email: email, name: name, password: password)
            printJSON(["user_id": .string(id)])
        }
    }
}

struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Signing keys.", subcommands: [List.self, Rotate.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List signing keys.")
        @OptionGroup var common: Common

        func run() throws {
            let store = try common.openAnyStore()
            let keys = try store.signingKeys().map { k -> JSON in
                [
                    "kid": .string(k.kid), "alg": .string(k.algorithm), "status": k.retiredAt == nil ? "active" : "retired",
                    "encrypted": .bool(k.encrypted), "created_at": .string(Timestamp.rfc3339(millis: k.createdAt)),
                    "retired_at": k.retiredAt.map { .string(Timestamp.rfc3339(millis: $0)) } ?? .null,
                ]
            }
            printJSON(["keys": .array(keys)])
        }
    }

    struct Rotate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a new signing key; older keys stay published until their tokens expire.")
        @OptionGroup var common: Common
        @Option var alg: String = "ES256"

        func run() throws {
            guard let algorithm = SignatureAlgorithm(rawValue: alg) else { throw ValidationError("--alg must be ES256, RS256 or EdDSA") }
            let store = try common.openAnyStore()
            guard let issuer = try store.meta("issuer") else { throw CLIError(ProvisioningError.notInitialized.description) }
            let env = try common.environment(issuer: issuer)
            let kid = try KeyManagement.rotate(store: store, env: env, algorithm: algorithm)
            try store.write {
                try store.appendAudit(AuditEvent(organizationID: nil, actor: "cli", action: "keys.rotated", target: kid, surface: "cli",
                                                 requestID: nil, details: ["alg": .string(algorithm.rawValue)], createdAt: env.now()))
            }
            printJSON(["kid": .string(kid), "alg": .string(algorithm.rawValue)])
        }
    }
}

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a consistent online copy of the state as a SQLite file, from either store (SQLite: VACUUM INTO; PostgreSQL: one REPEATABLE READ snapshot).")
    @OptionGroup var common: Common
    @Argument var path: String

    func run() throws {
        guard !FileManager.default.fileExists(atPath: path) else { throw CLIError("\(path) already exists") }
        if let url = common.databaseURL {
            let source = try PostgresStore(url: url, migrate: false)
            let counts = try StateTransfer.copy(from: source, to: try SQLiteStore(path: path))
            printJSON(["backup": .string(path), "rows": .object(counts.sorted { $0.key < $1.key }.map { ($0.key, JSON($0.value)) })])
        } else {
            let store = try common.openStore()
            try store.backup(to: path)
            printJSON(["backup": .string(path)])
        }
    }
}

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
        let counts = try StateTransfer.copy(from: source, to: try PostgresStore(url: url))
        printJSON(["restored": .string(path), "rows": .object(counts.sorted { $0.key < $1.key }.map { ($0.key, JSON($0.value)) })])
    }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the FastCGI worker pool.")
    @OptionGroup var common: Common
    @Option(help: "unix:PATH, HOST:PORT or systemd (env LATCHKEY_LISTEN).") var listen: String?
    @Option(help: "Worker threads (default one per core and one more, at least 3; env LATCHKEY_WORKERS).") var workers: Int?
    @Option(help: "Issuer URL (env LATCHKEY_ISSUER; default: the one given to init).") var issuer: String?
    @Flag(name: .customLong("accept-any-secret-method"), help: "Accept client_secret_basic and client_secret_post from every confidential client (env LATCHKEY_ACCEPT_ANY_SECRET_METHOD=1).")
    var acceptAny = false
    @Option(name: .customLong("log-level"), help: "debug (every request), info (default: 4xx and 5xx requests, start and stop), warn, error or off (env LATCHKEY_LOG_LEVEL).")
    var logLevel: String?
    @Flag(name: .customLong("quiet"), help: "Log errors only (--log-level error).") var quiet = false

    func run() throws {
        try ServeCommand.run(self)
    }
}

/// Kept out of `@main`'s isolation: the handler factory runs on worker threads.
enum ServeCommand {
    /// This process's PostgreSQL connections, for `/metrics`.
    @Sendable static func postgresCounters() -> StoreCounters {
        StoreCounters(roundTrips: PGCounters.roundTripsTotal, connects: PGCounters.connectsTotal,
                      connectionsLost: PGCounters.connectionFailuresTotal, connectFailures: PGCounters.connectFailuresTotal,
                      retries: PGCounters.retriesTotal)
    }

    static func run(_ options: Serve) throws {
        let env = options.common.env
        guard let address = ListenAddress(options.listen ?? env["LATCHKEY_LISTEN"] ?? "unix:/run/latchkey/latchkey.sock") else {
            throw ValidationError("--listen must be unix:PATH, HOST:PORT or systemd")
        }
        let workers = options.workers ?? Int(env["LATCHKEY_WORKERS"] ?? "") ?? max(3, ProcessInfo.processInfo.activeProcessorCount + 1)
        guard (1...256).contains(workers) else { throw ValidationError("--workers must be 1..256") }
        // PostgreSQL when a URL is configured (SPEC 9: any number of nodes share it), else SQLite.
        let databaseURL = options.common.databaseURL
        let path = databaseURL == nil ? try options.common.databasePath() : ""
        let store = try options.common.openAnyStore()
        guard let stored = try store.meta("issuer") else { throw CLIError(ProvisioningError.notInitialized.description) }
        let issuer = try validatedIssuer(options.issuer ?? env["LATCHKEY_ISSUER"] ?? stored)
        var environment = try options.common.environment(issuer: issuer)
        environment.acceptAnySecretMethod = options.acceptAny || env["LATCHKEY_ACCEPT_ANY_SECRET_METHOD"] == "1"
        // Fail now, not on the first request, when the signing key cannot be loaded.
        _ = try KeyRing(store: store, env: environment).signingKey()
        let levelName = options.logLevel ?? (options.quiet ? "error" : env["LATCHKEY_LOG_LEVEL"] ?? "info")
        guard let level = Logger.Level(name: levelName) else {
            throw ValidationError("--log-level must be one of " + Logger.Level.allCases.map(\.name).joined(separator: ", "))
        }
        ProcessMemory.returnLargeAllocationsAtOnce()
        // Whatever was stored in clear before a KEK was configured is sealed now.
        let sealed = try Provisioning.sealAtRest(store: store, env: environment)
        let app = Application(env: environment, logger: Logger(level: level), images: ReencodeImage.childProcess(),
                              metrics: Metrics(workers: workers, store: databaseURL == nil ? nil : postgresCounters))
        let writerLock = WriterLock()
        // Requests checkpoint only past 16,000 WAL pages (a backstop); the checkpointer does it every 200 ms
        // and starts the WAL over once it passes 4,096 pages.
        let server = FastCGIServer(address: address, workers: workers, maxBodyBytes: 3 * 1024 * 1024) { _ in
            // Each worker thread its own connection.
            let store: any Store = if let databaseURL {
                try PostgresStore(url: databaseURL, migrate: false)
            } else {
                try SQLiteStore(path: path, writerLock: writerLock, migrate: false, autoCheckpointPages: 16_000)
            }
            return WorkerHandler(worker: try Worker(app: app, store: store))
        }
        let checkpointer = databaseURL == nil ? Checkpointer(path: path, writerLock: writerLock) : nil
        defer { checkpointer?.stop() }
        let signal = try server.run {
            // Started here, after the pool has blocked TERM/INT/HUP, so the thread inherits the mask.
            checkpointer?.start()
            app.logger.info("latchkey serving", [("listen", .string(address.description)), ("workers", JSON(workers)), ("issuer", .string(issuer)),
                                                 ("sealed_at_start", JSON(sealed))])
        }
        app.logger.info("latchkey stopped", [("signal", JSON(Int(signal)))])
    }
}

final class WorkerHandler: FastCGIHandler {
    let worker: Worker

    init(worker: Worker) { self.worker = worker }

    func handle(_ request: FastCGIRequest) -> [UInt8] {
        let req = CGI.request(params: request.params, body: request.body) { Hex.encode(SecureRandom.bytes(16)) }
        return CGI.bytes(worker.handle(req))
    }
}

/// Exit codes: 0 success, 1 failure, 2 usage error.
func runCLI() -> Int32 {
    do {
        var command = try Latchkey.parseAsRoot()
        try command.run()
        return 0
    } catch let error as CLIError {
        FileHandle.standardError.write(Data("latchkey: \(error.description)\n".utf8))
        return 1
    } catch let error as ProvisioningError {
        FileHandle.standardError.write(Data("latchkey: \(error.description)\n".utf8))
        return 1
    } catch let error as StoreError {
        FileHandle.standardError.write(Data("latchkey: storage error: \(error)\n".utf8))
        return 1
    } catch {
        let code = Latchkey.exitCode(for: error)
        if code == .success {
            print(Latchkey.fullMessage(for: error))
            return 0
        }
        let message = Latchkey.fullMessage(for: error)
        let isUsage = error is ValidationError || code == .validationFailure || message.contains("Usage:") || message.hasPrefix("Error: Missing") || message.hasPrefix("Error: Unknown") || message.hasPrefix("Error: Unexpected")
        FileHandle.standardError.write(Data("latchkey: \(message)\n".utf8))
        return isUsage ? 2 : 1
    }
}

exit(runCLI())

/// The child side of logo decoding (`ImageReencoder`): reads one image on
/// stdin, writes the re-encoded PNGs framed on stdout, exits. `serve` runs
/// one per upload, so the decoder's memory and any fault in libgd stay out
/// of the serving process.
struct ReencodeImage: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "reencode-image", abstract: "Decode and re-encode one logo (used by serve).",
                                                    shouldDisplay: false)
    @Option(help: "image/png, image/jpeg or image/gif") var format: String
    @Option(help: "Comma-separated maximum sides, e.g. 256,64.") var sides: String
    static let maxInput = 2 * 1024 * 1024

    /// CPU seconds a decode may take: a 2048x2048 progressive JPEG decodes in
    /// well under one; a crafted one with thousands of scans would take minutes.
    static let cpuSeconds: rlim_t = 3

    func run() throws {
        // Hard ceilings for the decoder, set before it reads a byte: CPU time
        // (SIGXCPU, then SIGKILL, past it) and address space (far above what a
        // 4-megapixel image needs). The parent blocked SIGTERM and friends in
        // its threads and we inherit that mask: the parent's watchdog kills
        // with SIGKILL.
        var cpu = rlimit(rlim_cur: ReencodeImage.cpuSeconds, rlim_max: ReencodeImage.cpuSeconds + 1)
        var memory = rlimit(rlim_cur: 512 << 20, rlim_max: 512 << 20)
        guard setrlimit(__rlimit_resource_t(RLIMIT_CPU.rawValue), &cpu) == 0,
              setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &memory) == 0 else {
            throw CLIError("cannot limit the decoder's resources")
        }
        guard let format = ImageFormat(rawValue: format) else { throw ValidationError("unknown format") }
        let sides = sides.split(separator: ",").compactMap { Int($0) }
        guard !sides.isEmpty, sides.allSatisfy({ (1...1024).contains($0) }) else { throw ValidationError("bad sides") }
        let input = FileHandle.standardInput.readData(ofLength: ReencodeImage.maxInput + 1)
        guard input.count <= ReencodeImage.maxInput else { throw CLIError("image too large") }
        let images = try Imaging.reencodePNG(Array(input), format: format, sides: sides)
        FileHandle.standardOutput.write(Data(ImageReencoder.frame(images)))
    }

    /// The parent side: runs this binary as `reencode-image` with no
    /// environment (no setting or secret reaches the child), feeds it the
    /// image, and kills it (SIGKILL) if it takes longer than `timeoutSeconds`.
    /// One child at a time per process, one more caller waiting up to two
    /// seconds; anyone beyond gets `SlowHashesBusy` (503): a decode costs a
    /// core, and uploads must never take every core from token traffic.
    static func childProcess(executable: String = "/proc/self/exe", timeoutSeconds: Double = 5,
                             gate: SlowHashPool = SlowHashPool(permits: 1, maxWaiters: 1, maxWaitMillis: 2_000)) -> ImageReencoder {
        ImageReencoder { bytes, format, sides in try gate.run { try decodeInChild(executable, timeoutSeconds, bytes, format, sides) } }
    }

    static func decodeInChild(_ executable: String, _ timeoutSeconds: Double, _ bytes: [UInt8], _ format: ImageFormat, _ sides: [Int]) throws -> [[UInt8]] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["reencode-image", "--format", format.rawValue, "--sides", sides.map(String.init).joined(separator: ",")]
        process.environment = [:]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let pid = process.processIdentifier
        let watchdog = DispatchWorkItem { if process.isRunning { _ = kill(pid, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeoutSeconds, execute: watchdog)
        defer { watchdog.cancel() }
        // The child reads all of its input before it writes, so writing first cannot deadlock.
        try? input.fileHandleForWriting.write(contentsOf: Data(bytes))
        try? input.fileHandleForWriting.close()
        let answer = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationReason == .exit, process.terminationStatus == 0,
              let images = ImageReencoder.unframe(Array(answer), count: sides.count) else {
            throw ImagingError(description: "the image could not be decoded")
        }
        return images
    }
}

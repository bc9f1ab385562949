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
import Synchronization

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the FastCGI worker pool.")
    @OptionGroup var common: Common
    @Option(help: "unix:PATH, HOST:PORT or systemd (env LATCHKEY_LISTEN).") var listen: String?
    @Option(name: .customLong("allow-from"),
            help: "With a TCP listener: the only peers (nginx hosts) that may connect, IP addresses or networks separated by commas (10.0.0.2,10.0.1.0/24; env LATCHKEY_ALLOW_FROM, else FCGI_WEB_SERVER_ADDRS).")
    var allowFrom: String?
    @Option(help: "Worker threads (default one per core and one more, at least 3; env LATCHKEY_WORKERS).") var workers: Int?
    @Option(help: "Issuer URL (env LATCHKEY_ISSUER; default: the one given to init).") var issuer: String?
    @Flag(name: .customLong("accept-any-secret-method"), help: "Accept client_secret_basic and client_secret_post from every confidential client (env LATCHKEY_ACCEPT_ANY_SECRET_METHOD=1).")
    var acceptAny = false
    @Flag(name: .customLong("dpop-nonces"), help: "Require a server-provided nonce in every DPoP proof (RFC 9449 §8, §9; env LATCHKEY_DPOP_NONCES=1).")
    var dpopNonces = false
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
    static func postgresCounters(_ reads: GenerationReads) -> @Sendable () -> StoreCounters {
        {
            StoreCounters(roundTrips: PGCounters.roundTripsTotal, connects: PGCounters.connectsTotal,
                          connectionsLost: PGCounters.connectionFailuresTotal, connectFailures: PGCounters.connectFailuresTotal,
                          retries: PGCounters.retriesTotal, generationReadsShared: reads.sharedTotal, cancels: PGCounters.cancelsTotal)
        }
    }

    static func run(_ options: Serve) throws {
        let env = options.common.env
        guard let address = ListenAddress(options.listen ?? env["LATCHKEY_LISTEN"] ?? "unix:/run/latchkey/latchkey.sock") else {
            throw ValidationError("--listen must be unix:PATH, HOST:PORT or systemd")
        }
        // libfcgi's own variable, left in the environment by a spawn-fcgi set-up, is not an error on a unix socket.
        let inherited: String? = if case .unix = address { nil } else { env["FCGI_WEB_SERVER_ADDRS"] }
        let allowFrom = try peerAllowList(options.allowFrom ?? env["LATCHKEY_ALLOW_FROM"] ?? inherited, address: address)
        let workers = options.workers ?? Int(env["LATCHKEY_WORKERS"] ?? "") ?? max(3, ProcessInfo.processInfo.activeProcessorCount + 1)
        guard (1...256).contains(workers) else { throw ValidationError("--workers must be 1..256") }
        // PostgreSQL when a URL is configured (SPEC 9: any number of nodes share it), else SQLite.
        let databaseURL = options.common.databaseURL
        let path = databaseURL == nil ? try options.common.databasePath() : ""
        let (issuer, environment, sealed, pepper) = try startUp(options, env: env)
        let levelName = options.logLevel ?? (options.quiet ? "error" : env["LATCHKEY_LOG_LEVEL"] ?? "info")
        guard let level = Logger.Level(name: levelName) else {
            throw ValidationError("--log-level must be one of " + Logger.Level.allCases.map(\.name).joined(separator: ", "))
        }
        ProcessMemory.returnLargeAllocationsAtOnce()
        // On PostgreSQL the worker threads share their generation reads (SPEC 9: each request still sees every commit
        // made before it arrived).
        let generationReads = GenerationReads()
        // On PostgreSQL, which several nodes share, failures on an account are counted for all of them (SPEC 9).
        let guards = AbuseGuards(failures: FailureLimiter(shared: databaseURL != nil, keyMAC: { pepper.hmacHash($0) }))
        let app = Application(env: environment, logger: Logger(level: level), guards: guards, images: ReencodeImage.childProcess(),
                              metrics: Metrics(workers: workers, node: address.description,
                                                               store: databaseURL == nil ? nil : postgresCounters(generationReads),
                                                               accepting: { (AcceptCounters.batchedTotal, AcceptCounters.stolenTotal, AcceptCounters.refusedTotal) }))
        let writerLock = WriterLock()
        // Requests checkpoint only past 16,000 WAL pages (a backstop); the checkpointer does it every 200 ms
        // and starts the WAL over once it passes 4,096 pages.
        // On PostgreSQL a busy node takes up to 8 waiting connections at once and validates its memo once for
        // them (SPEC 9); on SQLite that check is a memory read and nothing is gained.
        let batch = Int(env["LATCHKEY_ACCEPT_BATCH"] ?? "") ?? (databaseURL == nil ? 1 : 8)
        guard (1...64).contains(batch) else { throw ValidationError("LATCHKEY_ACCEPT_BATCH must be 1..64") }
        let server = FastCGIServer(address: address, workers: workers, maxBodyBytes: 3 * 1024 * 1024, maxBatch: batch,
                                   allowFrom: allowFrom, parameters: CGI.parametersRead) { _ in
            // Each worker thread its own connection.
            let store: any Store = if let databaseURL {
                try PostgresStore(url: databaseURL, migrate: false, generationReads: generationReads)
            } else {
                try SQLiteStore(path: path, writerLock: writerLock, migrate: false, autoCheckpointPages: 16_000)
            }
            return WorkerHandler(worker: try Worker(app: app, store: store))
        }
        let checkpointer = databaseURL == nil ? Checkpointer(path: path, writerLock: writerLock) : nil
        defer { checkpointer?.stop() }
        // Back-Channel Logout tokens go out from here, never from a request.
        let interval = Int(env["LATCHKEY_BACKCHANNEL_INTERVAL_MS"] ?? "") ?? 1000
        guard (0...60_000).contains(interval) else { throw ValidationError("LATCHKEY_BACKCHANNEL_INTERVAL_MS must be 0..60000") }
        let allowed = try networks(env["LATCHKEY_BACKCHANNEL_ALLOW"].flatMap { $0.isEmpty ? nil : $0 }, named: "LATCHKEY_BACKCHANNEL_ALLOW",
                                   example: "127.0.0.0/8, 10.0.0.0/8, fd00::/8")
        let logoutDelivery = LogoutDeliveryThread(env: environment, logger: app.logger, intervalMillis: interval, allowed: allowed) {
            if let databaseURL { return try PostgresStore(url: databaseURL, migrate: false) }
            return try SQLiteStore(path: path, writerLock: writerLock, migrate: false)
        }
        defer { logoutDelivery.stop() }
        // On PostgreSQL, this node's clock against the database's: at start and every minute (SPEC 9), on a connection of
        // its own, checked before each use (the server may have closed it while it sat idle for the minute) and opened
        // again after a failure.
        let clockWatch = databaseURL.map { url in
            let connection = Mutex<PostgresStore?>(nil)
            let now = environment.now
            return ClockWatch(intervalMillis: 60_000, metrics: app.metrics, logger: app.logger, now: now) {
                try connection.withLock { store in
                    do {
                        let open = try store ?? PostgresStore(url: url, migrate: false)
                        store = open
                        open.beginRequest()
                        defer { open.endRequest() }
                        return try open.clockOffsetMillis(now: now)
                    } catch {
                        store = nil
                        throw error
                    }
                }
            }
        }
        defer { clockWatch?.stop() }
        let signal = try server.run {
            // Started here, after the pool has blocked TERM/INT/HUP, so the thread inherits the mask.
            checkpointer?.start()
            logoutDelivery.start()
            app.logger.info("latchkey serving", [("listen", .string(address.description)), ("workers", JSON(workers)), ("issuer", .string(issuer)),
                                                 ("sealed_at_start", JSON(sealed)), ("allow_from", allowFrom.map { .string($0.description) } ?? .null)])
            clockWatch?.start()
            if case .tcp = address, allowFrom == nil {
                app.logger.warn("FastCGI over TCP admits any peer that reaches the port: name the nginx hosts with --allow-from",
                                [("listen", .string(address.description))])
            }
        }
        app.logger.info("latchkey stopped", [("signal", JSON(Int(signal)))])
    }
}

extension ServeCommand {
    /// What serving needs of the database before the workers start, on a connection closed before they open theirs
    /// (a node holds its workers' connections and two more, docs/scaling.md): the issuer, the environment, how many
    /// values were sealed at start, the secret hasher. Start-up migrates, waiting for a migration another node is
    /// applying (the lock row) instead of failing after the serving deadline; the workers' connections keep that
    /// deadline.
    static func startUp(_ options: Serve, env: [String: String]) throws -> (String, OAuth.Environment, Int, SecretHasher) {
        let store = try options.common.openAnyStore()
        guard let stored = try store.meta("issuer") else { throw CLIError(ProvisioningError.notInitialized.description) }
        let issuer = try validatedIssuer(options.issuer ?? env["LATCHKEY_ISSUER"] ?? stored)
        var environment = try options.common.environment(issuer: issuer)
        environment.acceptAnySecretMethod = options.acceptAny || env["LATCHKEY_ACCEPT_ANY_SECRET_METHOD"] == "1"
        environment.dpopNonces = options.dpopNonces || env["LATCHKEY_DPOP_NONCES"] == "1"
        switch env["LATCHKEY_ES256_PRESIGN"] ?? "off" {
        case "on": environment.presignES256 = true
        case "off": environment.presignES256 = false
        default: throw ValidationError("LATCHKEY_ES256_PRESIGN must be on or off")
        }
        // Every deployment publishes an ES256 and an RS256 key (SPEC 10.1): one from before gains the missing one.
        try KeyManagement.ensurePublished(store: store, env: environment)
        // Fail now, not on the first request, when the signing key cannot be loaded.
        _ = try KeyRing(store: store, env: environment).signingKey()
        // Whatever was stored in clear before a KEK was configured is sealed now.
        let sealed = try Provisioning.sealAtRest(store: store, env: environment)
        return (issuer, environment, sealed, try Provisioning.secretHasher(store: store, env: environment))
    }

    /// `--allow-from` (or its environment variables), checked: a list only a TCP listener (or systemd's socket, which may be one) can use.
    static func peerAllowList(_ text: String?, address: ListenAddress) throws -> IPNetworks? {
        guard let list = try networks(text, named: "--allow-from", example: "10.0.0.2, 10.0.0.0/24, fd00::/8") else { return nil }
        if case .unix = address {
            throw ValidationError("--allow-from applies to a TCP listener; a unix socket's file mode decides who connects")
        }
        return list
    }

    /// A setting's list of IP networks (nil when unset), or why it is refused.
    static func networks(_ text: String?, named name: String, example: String) throws -> IPNetworks? {
        guard let text else { return nil }
        guard let list = IPNetworks(text) else {
            throw ValidationError("\(name) must be IP addresses or networks (\(example)) separated by commas")
        }
        return list
    }
}

final class WorkerHandler: FastCGIHandler {
    let worker: Worker

    init(worker: Worker) { self.worker = worker }

    func handle(_ request: FastCGIRequest) -> [UInt8] {
        var req = CGI.request(params: request.params, body: request.body) { Hex.encode(SecureRandom.bytes(16)) }
        req.abandoned = request.peerGone
        return CGI.bytes(worker.handle(req))
    }

    func beginBatch() { worker.beginBatch() }
    func endBatch() { worker.endBatch() }
}

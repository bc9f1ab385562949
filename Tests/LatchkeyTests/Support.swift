import Common
import Foundation
import HTTPCore
import Imaging
import OAuth
import Postgres
import PostgresStore
import SQLiteStore
import Server
import Synchronization

/// A clock tests move by hand.
final class TestClock: Sendable {
    private let millis: Mutex<Int64>
    init(_ start: Int64 = 1_796_000_000_000) { millis = Mutex(start) }
    var now: Int64 { millis.withLock { $0 } }
    func advance(seconds: Int64) { millis.withLock { $0 += seconds * 1000 } }
}

/// Which store the suite runs on: SQLite by default; PostgreSQL when
/// `LATCHKEY_TEST_STORE=postgres` (with `LATCHKEY_TEST_DATABASE_URL`).
/// `scripts/test` runs the whole suite once on each (SPEC 9: one behaviour
/// on every store); the tests of one store's own machinery say so.
enum TestStore: String, Sendable {
    case sqlite, postgres

    static let kind: TestStore = ProcessInfo.processInfo.environment["LATCHKEY_TEST_STORE"] == "postgres" ? .postgres : .sqlite
    static var isSQLite: Bool { kind == .sqlite }
}

/// A fresh schema in the test cluster for one harness: its own tables,
/// dropped when the harness goes.
final class PostgresSchemaFixture {
    let name = "lk_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    let admin: PGConnection
    let url: String

    init() throws {
        guard let base = TestDatabase.url else { throw HarnessError("LATCHKEY_TEST_STORE=postgres needs LATCHKEY_TEST_DATABASE_URL") }
        admin = try PGConnection(base)
        try admin.run("CREATE SCHEMA \(name)")
        url = base + (base.contains("?") ? "&" : "?") + "options=-csearch_path%3D\(name)"
    }

    deinit { _ = try? admin.run("DROP SCHEMA \(name) CASCADE") }
}

/// A temporary database with an initialized server, and helpers that call
/// the application with plain `Request` values (no sockets).
final class Harness {
    let directory: String
    let clock = TestClock()
    let store: any Store
    let postgres: PostgresSchemaFixture?
    let env: OAuth.Environment
    let worker: Worker
    let primary: ProvisionedOrganization
    static let issuer = "https://auth.example.test"

    init(kek: [UInt8]? = nil, guards: AbuseGuards = AbuseGuards(), images: ImageReencoder = .inProcess) throws {
        directory = NSTemporaryDirectory() + "latchkey-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        switch TestStore.kind {
        case .sqlite:
            postgres = nil
            store = try SQLiteStore(path: directory + "/test.db")
        case .postgres:
            let fixture = try PostgresSchemaFixture()
            postgres = fixture
            store = try PostgresStore(url: fixture.url)
        }
        let clock = self.clock
        env = OAuth.Environment(issuer: Harness.issuer, now: { clock.now }, kek: kek)
        primary = try Provisioning(env: env, store: store).initialize(issuer: Harness.issuer, organizationName: "Acme", clientLimit: 100)
        worker = try Worker(app: Application(env: env, logger: Logger(level: .off), guards: guards, images: images), store: store)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// The SQLite store, for the tests of SQLite's own machinery (memo, WAL, busy).
    var sqlite: SQLiteStore { store as! SQLiteStore }

    /// Opens further connections from any thread (each thread its own, as
    /// the workers and the nodes do).
    var storeFactory: @Sendable () throws -> any Store {
        switch TestStore.kind {
        case .sqlite:
            let path = directory + "/test.db"
            return { try SQLiteStore(path: path, migrate: false) }
        case .postgres:
            let url = postgres!.url
            return { try PostgresStore(url: url, migrate: false) }
        }
    }

    /// Another connection to the same database (another worker, another node).
    func anotherStore() throws -> any Store {
        switch TestStore.kind {
        case .sqlite: return try SQLiteStore(path: directory + "/test.db", migrate: false)
        case .postgres: return try PostgresStore(url: postgres!.url, migrate: false)
        }
    }

    func call(_ method: String, _ path: String, query: String = "", headers: [(String, String)] = [], body: [UInt8] = []) -> Response {
        worker.handle(Request(method: HTTPRequest.Method(method)!, path: path, query: query, headers: HTTPFields(headers), body: body, requestID: "req-test"))
    }

    func form(_ path: String, _ items: [(String, String)], basic: (String, String)? = nil, headers: [(String, String)] = []) -> Response {
        var h = [("Content-Type", "application/x-www-form-urlencoded")] + headers
        if let basic { h.append(("Authorization", Harness.basic(basic.0, basic.1))) }
        return call("POST", path, headers: h, body: Array(FormEncoding.serialize(items).utf8))
    }

    static func basic(_ user: String, _ password: String) -> String {
        "Basic " + Base64.encode(Array("\(FormEncoding.encode(user)):\(FormEncoding.encode(password))".utf8))
    }

    /// A client_credentials token for the primary client (or another).
    func token(clientID: String? = nil, secret: String? = nil, scope: String? = nil) throws -> String {
        var items = [("grant_type", "client_credentials")]
        if let scope { items.append(("scope", scope)) }
        let r = form("/oauth2/token", items, basic: (clientID ?? primary.clientID, secret ?? primary.clientSecret))
        guard r.status == 200, let token = r.json?["access_token"]?.stringValue else {
            throw HarnessError("token request failed: \(r.status) \(r.bodyText)")
        }
        return token
    }

    func json(_ method: String, _ path: String, token: String?, body: JSON? = nil, contentType: String = "application/json",
              headers: [(String, String)] = []) -> Response {
        var h = headers
        if let token { h.append(("Authorization", "Bearer \(token)")) }
        if body != nil { h.append(("Content-Type", contentType)) }
        return call(method, path, headers: h, body: body?.serialized() ?? [])
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

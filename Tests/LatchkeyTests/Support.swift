import Common
import Foundation
import HTTPCore
import Imaging
import OAuth
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

/// A temporary database with an initialized server, and helpers that call
/// the application with plain `Request` values (no sockets).
final class Harness {
    let directory: String
    let clock = TestClock()
    let store: SQLiteStore
    let env: OAuth.Environment
    let worker: Worker
    let primary: ProvisionedOrganization
    static let issuer = "https://auth.example.test"

    init(kek: [UInt8]? = nil, guards: AbuseGuards = AbuseGuards(), images: ImageReencoder = .inProcess) throws {
        directory = NSTemporaryDirectory() + "latchkey-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        store = try SQLiteStore(path: directory + "/test.db")
        let clock = self.clock
        env = OAuth.Environment(issuer: Harness.issuer, now: { clock.now }, kek: kek)
        primary = try Provisioning(env: env, store: store).initialize(issuer: Harness.issuer, organizationName: "Acme", clientLimit: 100)
        worker = try Worker(app: Application(env: env, logger: Logger(level: .off), guards: guards, images: images), store: store)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func call(_ method: String, _ path: String, query: String = "", headers: [(String, String)] = [], body: [UInt8] = []) -> Response {
        worker.handle(Request(method: method, path: path, query: query, headers: Headers(headers), body: body, requestID: "req-test"))
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

import Common
import Foundation
import HTTPCore
import Imaging
import OAuth
import Server
import TestSupport

/// The server over a `StoreFixture`: helpers that call the application
/// with plain `Request` values (no sockets).
final class Harness {
    let fixture: StoreFixture
    let worker: Worker
    static let issuer = StoreFixture.issuer
    static let redirect = StoreFixture.redirect

    init(kek: [UInt8]? = nil, guards: AbuseGuards = AbuseGuards(), images: ImageReencoder = .inProcess, dpopNonces: Bool = false) throws {
        fixture = try StoreFixture(kek: kek)
        var env = fixture.env
        env.dpopNonces = dpopNonces
        worker = try Worker(app: Application(env: env, logger: Logger(level: .off), guards: guards, images: images), store: fixture.store)
    }

    var store: any Store { fixture.store }
    var env: OAuth.Environment { fixture.env }
    var clock: TestClock { fixture.clock }
    var primary: ProvisionedOrganization { fixture.primary }
    var directory: String { fixture.directory }
    var storeFactory: @Sendable () throws -> any Store { fixture.storeFactory }
    func anotherStore() throws -> any Store { try fixture.anotherStore() }
    func app(public isPublic: Bool = true, redirectURIs: [String] = [Harness.redirect],
             scope: [String] = ["openid", "profile", "email", "offline_access", "connections:read", "connections:write"],
             grantTypes: [GrantType] = [.authorizationCode, .refreshToken]) throws -> (String, String?) {
        try fixture.app(public: isPublic, redirectURIs: redirectURIs, scope: scope, grantTypes: grantTypes)
    }
    func user(_ username: String = "alice") throws -> String { try fixture.user(username) }

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

    /// A confidential client created through the native API with `token`
    /// (the primary's full token when nil): its id and its secret.
    func createClient(_ body: JSON, token: String? = nil) throws -> (id: String, secret: String) {
        let r = json("POST", "/api/v1/clients", token: try token ?? self.token(), body: body)
        guard r.status == 201, let id = r.json?["client_id"]?.stringValue, let secret = r.json?["client_secret"]?.stringValue else {
            throw HarnessError("client create failed: \(r.status) \(r.bodyText)")
        }
        return (id, secret)
    }

    func json(_ method: String, _ path: String, token: String?, body: JSON? = nil, contentType: String = "application/json",
              headers: [(String, String)] = []) -> Response {
        var h = headers
        if let token { h.append(("Authorization", "Bearer \(token)")) }
        if body != nil { h.append(("Content-Type", contentType)) }
        return call(method, path, headers: h, body: body?.serialized() ?? [])
    }
}

import Common
import HTTPCore
import OAuth
import SQLite
import SQLiteStore
import Server
import TestSupport
import Testing

@Suite struct BusyDatabaseTests {
    /// SPEC 7: contention never surfaces as a 500; past the busy timeout the answer is 503 with Retry-After.
    @Test(.enabled(if: TestStore.isSQLite, "SQLite's own machinery")) func aLockedDatabaseAnswers503WithRetryAfter() throws {
        let h = try Harness()
        let token = try h.token()
        let store = try SQLiteStore(path: h.directory + "/test.db", migrate: false, busyTimeoutMillis: 20)
        let worker = try Worker(app: Application(env: h.env, logger: Logger(level: .off)), store: store)
        let locker = try Connection(path: h.directory + "/test.db", busyTimeoutMillis: 10)
        try locker.execute("BEGIN IMMEDIATE")
        defer { try? locker.execute("ROLLBACK") }
        let native = worker.handle(Request(method: .post, path: "/api/v1/clients",
                                           headers: HTTPFields([("Authorization", "Bearer \(token)"), ("Content-Type", "application/json")]),
                                           body: Array("{\"client_name\": \"x\"}".utf8)))
        #expect(native.status == 503)
        #expect(native.headers[.retryAfter] == "1")
        #expect(native.json?["code"] == "busy")
        let revoke = worker.handle(Request(method: .post, path: "/oauth2/revoke",
                                           headers: HTTPFields([("Authorization", Harness.basic(h.primary.clientID, h.primary.clientSecret)),
                                                             ("Content-Type", "application/x-www-form-urlencoded")]),
                                           body: Array("token=\(token)".utf8)))
        #expect(revoke.status == 503)
        #expect(revoke.json?["error"] == "temporarily_unavailable")
        #expect(revoke.headers[.retryAfter] == "1")
    }
}

/// Storage faults (storage-fault review, session 33: a full disk on SQLite,
/// a read-only PostgreSQL answered 500 `server_error`): the database cannot
/// take writes, so every write is 503 with a Retry-After of 5 s, nothing is
/// written, reads still answer, and the same writes succeed once the fault
/// is cleared.
@Suite struct StorageFaultTests {
    /// Makes the database refuse writes as a read-only file (SQLite's `query_only`: SQLITE_READONLY) or server
    /// (PostgreSQL's `default_transaction_read_only`: 25006) does, or takes that back.
    func readOnly(_ h: Harness, _ on: Bool) throws {
        if TestStore.isSQLite {
            try h.fixture.statement("PRAGMA query_only = \(on ? "ON" : "OFF")")
        } else {
            try h.fixture.statement("SET default_transaction_read_only = \(on ? "on" : "off")")
        }
    }

    @Test func aDatabaseThatCannotTakeWritesAnswers503AndWritesNothing() throws {
        let h = try Harness()
        let token = try h.token()
        let client = try #require(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "kept"]).json?["client_id"]?.stringValue)
        let app = try h.app()
        _ = try h.user()
        let flow = UserFlowTests()
        let pkce = PKCE()
        let code = try flow.code(h, Browser(h), client: app.0, pkce: pkce, scope: "openid offline_access")
        let refresh = try #require(flow.exchange(h, client: app.0, secret: nil, code: code, verifier: pkce.verifier).json?["refresh_token"]?.stringValue)
        let clients = try h.fixture.texts("clients", "client_id").count
        #expect(clients >= 3)
        try readOnly(h, true)
        let create = h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "refused"])
        #expect(create.status == 503 && create.headers[.retryAfter] == "5" && create.json?["code"] == "busy", "\(create.status) \(create.bodyText)")
        let rotation = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", app.0)])
        #expect(rotation.status == 503 && rotation.headers[.retryAfter] == "5" && rotation.json?["error"] == "temporarily_unavailable",
                "\(rotation.status) \(rotation.bodyText)")
        // The metrics say why (the storage-fault review: nothing but the 503s showed it).
        #expect(h.worker.app.metrics.render().contains("latchkey_storage_refusals_total{cause=\"fault\"} 2\n"))
        // Reads still answer, tokens that write nothing still come.
        #expect(h.json("GET", "/api/v1/clients/\(client)", token: token).status == 200)
        #expect(try !h.token().isEmpty)
        try readOnly(h, false)
        #expect(try h.fixture.texts("clients", "client_id").count == clients)
        // Nothing was half done: the refresh token rotates once now.
        let later = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", app.0)])
        #expect(later.status == 200, "\(later.bodyText)")
        #expect(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "after"]).status == 201)
    }

    /// A full disk (SQLITE_FULL, here `max_page_count` at the file's size): the write that finds no room is 503, the
    /// ones before it were kept whole.
    @Test(.enabled(if: TestStore.isSQLite, "SQLite's own file")) func aFullDiskAnswers503() throws {
        let h = try Harness()
        let token = try h.token()
        let before = try h.fixture.texts("clients", "client_id").count
        #expect(before >= 1)
        let pages = try #require(try h.fixture.statement("PRAGMA page_count"))
        try h.fixture.statement("PRAGMA max_page_count = \(pages)")
        var created = 0
        var refused: Response?
        for i in 0..<2_000 {
            let r = h.json("POST", "/api/v1/clients", token: token, body: ["client_name": .string("filler \(i) " + String(repeating: "x", count: 100))])
            guard r.status == 201 else { refused = r; break }
            created += 1
        }
        let r = try #require(refused, "the file never filled")
        #expect(r.status == 503 && r.headers[.retryAfter] == "5" && r.json?["code"] == "busy", "\(r.status) \(r.bodyText)")
        try h.fixture.statement("PRAGMA max_page_count = 1073741823")
        #expect(try h.fixture.texts("clients", "client_id").count == before + created)
        #expect(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "after"]).status == 201)
    }
}

/// A request nginx gave up while it waited for a worker (its read timeout, or
/// its client gone) is not run (storage-fault review, session 33): a refresh
/// rotated then was lost to its client, whose retry with the old token ended
/// the grant as a reuse.
@Suite struct AbandonedRequestTests {
    @Test func aRequestNobodyAwaitsAnyMoreIsNotRun() throws {
        let h = try Harness()
        let token = try h.token()
        let before = try h.fixture.texts("clients", "client_id").count
        var create = Request(method: .post, path: "/api/v1/clients",
                             headers: HTTPFields([("Authorization", "Bearer \(token)"), ("Content-Type", "application/json")]),
                             body: Array("{\"client_name\": \"unseen\"}".utf8), requestID: "req-gone")
        create.abandoned = { true }
        let r = h.worker.handle(create)
        #expect(r.status.code == 499)
        #expect(try h.fixture.texts("clients", "client_id").count == before)
        #expect(h.worker.app.metrics.render().contains("latchkey_requests_total{route=\"/api/v1/clients\",status=\"499\"} 1\n"))
        // The same request, awaited, is run.
        create.abandoned = { false }
        #expect(h.worker.handle(create).status == 201)
    }
}

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

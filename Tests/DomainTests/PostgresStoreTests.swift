import OAuth
import PostgresStore
import TestSupport
import Testing

@Suite(.enabled(if: TestDatabase.available, "needs LATCHKEY_TEST_DATABASE_URL (scripts/test starts a cluster)"))
struct PostgresStoreTests {
    /// What an operator reads when the store cannot connect (the CLI's error,
    /// a request's log line): libpq's reason, never the password.
    @Test func aStoreThatCannotConnectSaysWhyWithoutThePassword() throws {
        // The test cluster trusts its unix socket: a server that is not there is what can be checked here; a
        // wrong password over TCP is checked end to end (test_multi_host.py).
        do {
            _ = try PostgresStore(url: "postgresql:///postgres?host=/nonexistent-latchkey&user=latchkey&password=secret-in-url-9")
            Issue.record("connected to nothing")
        } catch let e as StoreError {
            guard case let .unavailable(cause) = e else { Issue.record("\(e)"); return }
            #expect(e.isTransient)
            #expect(cause.contains("nonexistent-latchkey"))
            #expect(!"\(e)".contains("secret-in-url-9"))
            #expect("\(e)".hasPrefix("the database cannot be reached: "))
        }
    }
}

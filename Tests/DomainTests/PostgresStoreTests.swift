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

/// Writes that PostgreSQL acknowledges before their flush
/// (`writeDeferringFlush`): only those that ask for it and take nothing away.
@Suite(.enabled(if: TestStore.kind == .postgres, "the PostgreSQL run of scripts/test"))
struct PostgresDeferredFlushTests {
    @Test func onlyAWriteThatAsksAndTakesNothingAwayCommitsBeforeItsFlush() throws {
        let h = try StoreFixture()
        let store = try #require(h.store as? PostgresStore)
        let other = try h.anotherStore()
        let later = Int64.max / 4
        func use(_ jti: String, on s: any Store) throws -> Bool { try s.useProof(jkt: "k", jti: jti, expiresAt: later, now: 0) }
        var deferred = store.flushesDeferred
        #expect(try store.writeDeferringFlush { try use("1", on: store) })
        #expect(store.flushesDeferred == deferred + 1)
        // Committed all the same: every node sees it at once.
        #expect(try !other.write { try use("1", on: other) })
        deferred = store.flushesDeferred
        // Each of these commits with its flush.
        #expect(try store.write { try use("2", on: store) })
        #expect(try store.writeDeferringFlush { store.requireFlush(); return try use("3", on: store) })
        #expect(try store.writeDeferringFlush { try store.write { try use("4", on: store) } })
        try store.writeDeferringFlush { try store.revokeAccessToken(jti: "j", expiresAt: later) }
        #expect(store.flushesDeferred == deferred)
        // The next one that asks defers again: a requireFlush holds for its own transaction only.
        #expect(try store.writeDeferringFlush { try use("5", on: store) })
        #expect(store.flushesDeferred == deferred + 1)
        #expect(try other.read { try other.isAccessTokenRevoked(jti: "j") })
    }
}

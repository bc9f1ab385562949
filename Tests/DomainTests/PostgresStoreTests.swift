import OAuth
import Postgres
import PostgresStore
import SharedSQL
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

/// The purges of expired rows stay index scans in the plan PostgreSQL
/// keeps for a prepared statement, even one made while the table was new:
/// `expires_at < $1` alone became a sequential scan there, which each
/// insert then ran over the whole table until autovacuum analyzed it.
@Suite(.enabled(if: TestStore.kind == .postgres, "the PostgreSQL run of scripts/test"))
struct PostgresPurgePlanTests {
    @Test func everyPurgeIsAnIndexScanOnANewTableAndAGrownOne() throws {
        let h = try StoreFixture()
        let db = try PGConnection(try #require(h.postgres).url)
        _ = try db.run("SET plan_cache_mode = force_generic_plan")
        func plans() throws -> [String: String] {
            var plans: [String: String] = [:]
            for (i, sql) in ExpiredRows.all.enumerated() {
                let name = "purge_\(i)_\(Int.random(in: 0..<1_000_000))"
                var numbered = sql
                for n in 1...2 { numbered = numbered.replacing("?", with: "$\(n)", maxReplacements: 1) }
                _ = try db.run("PREPARE \(name)(bigint, bigint) AS " + numbered)
                plans[sql] = try db.run("EXPLAIN EXECUTE \(name)(0, \(Int64.min))").rows.map { $0.string(0) }.joined(separator: "\n")
            }
            return plans
        }
        for (sql, plan) in try plans() {
            #expect(!plan.contains("Seq Scan"), "\(sql)\n\(plan)")
        }
        // Grown and analyzed: still through the index.
        _ = try db.run("INSERT INTO revoked_tokens(jti, expires_at) SELECT 'j' || i, i FROM generate_series(1, 20000) AS i")
        _ = try db.run("ANALYZE revoked_tokens")
        let grown = try plans()[ExpiredRows.all[0]] ?? ""
        #expect(grown.contains("Index") && !grown.contains("Seq Scan"), "\(grown)")
    }
}

import Foundation
import Postgres
import TestSupport
import Testing

/// The libpq wrapper against a real PostgreSQL (`scripts/test` starts a
/// throwaway cluster and sets `LATCHKEY_TEST_DATABASE_URL`; without it these
/// tests are reported as skipped, not passed).
@Suite(.enabled(if: TestDatabase.available, "needs LATCHKEY_TEST_DATABASE_URL (scripts/test starts a cluster)"))
struct PostgresTests {
    func connection(timeoutMillis: Int = 3_000) throws -> PGConnection { try PGConnection(TestDatabase.url!, timeoutMillis: timeoutMillis) }

    /// A table of its own (`prefix` and a random suffix, with `columns`) for `body`, dropped after it, and the
    /// connection that made it.
    func withScratchTable(_ prefix: String, _ columns: String, _ body: (PGConnection, String) throws -> Void) throws {
        let setup = try PGConnection(try #require(TestDatabase.url))
        let table = prefix + String(UInt32.random(in: 0...UInt32.max))
        try setup.run("CREATE TABLE \(table)(\(columns))")
        defer { _ = try? setup.run("DROP TABLE \(table)") }
        try body(setup, table)
    }

    @Test func valuesRoundTripInTheBinaryFormat() throws {
        let c = try connection()
        try c.run("CREATE TEMP TABLE t (i BIGINT, s TEXT, b BYTEA, f BOOLEAN, n TEXT)")
        let bytes: [UInt8] = [0, 1, 2, 255, 0, 128]
        try c.execute("INSERT INTO t VALUES ($1, $2, $3, $4, $5)", [.int(-9_007_199_254_740_993), .text("Grüße, 名前 ✓"), .bytes(bytes), .bool(true), .null])
        let row = try #require(try c.execute("SELECT i, s, b, f, n, 7::int4, (-2)::int2 FROM t").rows.first)
        #expect(row.int(0) == -9_007_199_254_740_993)
        #expect(row.string(1) == "Grüße, 名前 ✓")
        #expect(row.blob(2) == bytes)
        #expect(row.bool(3))
        #expect(row.optionalString(4) == nil)
        #expect(row.int(5) == 7)
        #expect(row.int(6) == -2)
        #expect(try c.execute("UPDATE t SET i = i + 1 WHERE f").affected == 1)
    }

    @Test func constraintViolationsCarryTheirSQLState() throws {
        let c = try connection()
        try c.run("CREATE TEMP TABLE u (id TEXT PRIMARY KEY)")
        try c.execute("INSERT INTO u VALUES ($1)", [.text("a")])
        do {
            try c.execute("INSERT INTO u VALUES ($1)", [.text("a")])
            Issue.record("a duplicate key was accepted")
        } catch let e as PGError {
            #expect(e.sqlstate == "23505")
            #expect(e.isConstraint && !e.isConnectionFailure && !e.isRetryable)
            #expect(!e.description.contains("\"a\""), "errors never carry bound values: \(e)")
        }
        // In a transaction the failure leaves it aborted until a rollback.
        try c.run("BEGIN")
        #expect(throws: PGError.self) { try c.execute("INSERT INTO u VALUES ($1)", [.text("a")]) }
        #expect(c.inFailedTransaction)
        try c.run("ROLLBACK")
        #expect(!c.inFailedTransaction)
        #expect(try c.execute("SELECT count(*) FROM u").rows.first?.int(0) == 1)
    }

    /// The server gives up before the client (statement_timeout below the
    /// client's deadline): the statement fails with 57014 while the client
    /// still listens, and the connection stays.
    @Test func theServerCancelsAStatementBeforeTheClientsDeadline() throws {
        let c = try connection(timeoutMillis: 1_500)
        let started = Date()
        do {
            try c.execute("SELECT pg_sleep(5)")
            Issue.record("pg_sleep(5) answered")
        } catch let e as PGError {
            #expect(e.sqlstate == "57014" && !e.isConnectionFailure)
        }
        #expect(Date().timeIntervalSince(started) < 1.5)
        #expect(c.isConnected && c.connects == 1)
        #expect(try c.execute("SELECT $1::bigint + 1", [.int(41)]).rows.first?.int(0) == 42)
    }

    @Test func aStatementPastItsDeadlineDropsTheConnectionAndTheNextReconnects() throws {
        let c = try connection(timeoutMillis: 500)
        // A server that answers nothing, a cancel included (a hung backend, a lost network): its backend stopped
        // (the tests run as root, or as the cluster's owner). The client's deadline, then the cancel's, end it.
        let backend = try #require(c.execute("SELECT pg_backend_pid()::bigint").rows.first?.int(0))
        #expect(kill(pid_t(backend), SIGSTOP) == 0)
        defer { kill(pid_t(backend), SIGCONT) }
        let started = Date()
        do {
            try c.execute("SELECT 1::bigint")
            Issue.record("a stopped backend answered")
        } catch let e as PGError {
            #expect(e.isConnectionFailure && e.message == "no answer within 500 ms")
        }
        #expect(Date().timeIntervalSince(started) < 3)
        kill(pid_t(backend), SIGCONT)
        #expect(!c.isConnected)
        // Not at once again (attacker review, session 18: a hung server cost a request its statement's deadline and
        // then a reconnect's): within one more deadline the next statement fails without trying...
        let again = Date()
        #expect(throws: PGError.self) { try c.execute("SELECT 1::bigint") }
        #expect(Date().timeIntervalSince(again) < 0.2 && c.connects == 1)
        // ...until the caller says a new attempt may begin (a new request), or that deadline has passed.
        c.mayReconnect()
        #expect(try c.execute("SELECT $1::bigint + 1", [.int(41)]).rows.first?.int(0) == 42)
        #expect(c.connects == 2)
        try c.run("SET statement_timeout = 0")
        #expect(throws: PGError.self) { try c.execute("SELECT pg_sleep(5)") }
        Thread.sleep(forTimeInterval: 0.6)
        #expect(try c.execute("SELECT 3::bigint").rows.first?.int(0) == 3)
        #expect(c.connects == 3)
    }

    /// A reconnect that fails (here the role's one connection is taken; a
    /// hung server's connect waits out its timeout) holds off the next as a
    /// deadline does (review, session 18: a request waited two).
    @Test func aFailedReconnectIsNotTriedAgainUntilTheCallerSaysSo() throws {
        let admin = try connection()
        let role = "lk_one_\(Int.random(in: 0..<1_000_000))"
        try admin.run("CREATE ROLE \(role) LOGIN CONNECTION LIMIT 1")
        defer { _ = try? admin.run("DROP ROLE \(role)") }
        let url = TestDatabase.url!.replacingOccurrences(of: "user=postgres", with: "user=\(role)")
        let c = try PGConnection(url, timeoutMillis: 500)
        let pid = try #require(try c.execute("SELECT pg_backend_pid()::bigint").rows.first?.int(0))
        try admin.execute("SELECT pg_terminate_backend($1::int)", [.int(pid)])
        var seat: PGConnection?
        for _ in 0..<50 where seat == nil { seat = try? PGConnection(url, timeoutMillis: 500); if seat == nil { Thread.sleep(forTimeInterval: 0.05) } }
        #expect(seat != nil, "the role's one connection")
        // The old session is gone, and its reconnect refused (too many connections for the role)...
        var failures = 0
        for _ in 0..<3 where failures < 2 {
            do { try c.execute("SELECT 1::bigint") } catch let e as PGError { #expect(e.isConnectionFailure); failures += 1 }
        }
        #expect(failures == 2 && c.connects == 1)
        // ...and not tried again at once: the next statement fails without a connect.
        do {
            try c.execute("SELECT 1::bigint")
            Issue.record("answered without its connection")
        } catch let e as PGError {
            #expect(e.message == "the database failed a moment ago; not reconnecting yet")
        }
        seat = nil
        // Once the caller says so it connects again (the freed seat may take the server a moment).
        var answer: Int64?
        for _ in 0..<40 where answer == nil {
            c.mayReconnect()
            answer = try? c.execute("SELECT 7::bigint").rows.first?.int(0)
            if answer == nil { Thread.sleep(forTimeInterval: 0.05) }
        }
        #expect(answer == 7 && c.connects == 2)
    }

    @Test func aTerminatedSessionIsAConnectionFailureThenReconnects() throws {
        let c = try connection()
        let pid = try #require(try c.execute("SELECT pg_backend_pid()::bigint").rows.first?.int(0))
        let other = try connection()
        try other.execute("SELECT pg_terminate_backend($1::int)", [.int(pid)])
        var failed = false
        for _ in 0..<3 {
            do { try c.execute("SELECT 1::bigint"); if failed { break } } catch let e as PGError { #expect(e.isConnectionFailure); failed = true }
        }
        #expect(failed)
        #expect(try c.execute("SELECT 2::bigint").rows.first?.int(0) == 2)
    }

    @Test func anUnreachableServerFailsFastAsAConnectionFailure() throws {
        let started = Date()
        do {
            _ = try PGConnection("postgresql:///postgres?host=/nonexistent-latchkey&user=postgres", timeoutMillis: 500)
            Issue.record("connected to nothing")
        } catch let e as PGError {
            #expect(e.isConnectionFailure)
            #expect(e.sqlstate == nil)
        }
        #expect(Date().timeIntervalSince(started) < 2)
    }

    @Test func aPipelineIsOneRoundTripWithEveryResultInOrder() throws {
        let c = try PGConnection(try #require(TestDatabase.url))
        try c.run("CREATE TEMP TABLE pipe(k BIGINT PRIMARY KEY, v TEXT NOT NULL)")
        _ = try c.execute("SELECT count(*) FROM pipe")
        let before = c.roundTrips
        let results = try c.pipeline([("BEGIN", []), ("INSERT INTO pipe(k, v) VALUES($1, $2)", [.int(1), .text("one")]),
                                      ("INSERT INTO pipe(k, v) VALUES($1, $2)", [.int(2), .text("two")]),
                                      ("SELECT v FROM pipe WHERE k >= $1 ORDER BY k", [.int(1)]), ("COMMIT", [])])
        // (Statements met for the first time are prepared first, once per connection; `roundTrips` counts executions.)
        #expect(c.roundTrips - before == 1)
        #expect(results.map(\.command) == ["BEGIN", "INSERT 0 1", "INSERT 0 1", "SELECT 2", "COMMIT"])
        #expect(results[3].rows.map { $0.string(0) } == ["one", "two"])
        let again = c.roundTrips
        _ = try c.pipeline([("BEGIN", []), ("INSERT INTO pipe(k, v) VALUES($1, $2)", [.int(3), .text("three")]), ("COMMIT", [])])
        #expect(c.roundTrips - again == 1)
    }

    @Test func aFailureInAPipelineSkipsTheRestAndLeavesTheTransactionToRollBack() throws {
        let c = try PGConnection(try #require(TestDatabase.url))
        try c.run("CREATE TEMP TABLE pipe(k BIGINT PRIMARY KEY)")
        do {
            _ = try c.pipeline([("BEGIN", []), ("INSERT INTO pipe(k) VALUES($1)", [.int(1)]), ("INSERT INTO pipe(k) VALUES($1)", [.int(1)]),
                                ("INSERT INTO pipe(k) VALUES($1)", [.int(2)]), ("COMMIT", [])])
            Issue.record("a duplicate key went through")
        } catch let e as PGError {
            #expect(e.sqlstate == "23505" && !e.isConnectionFailure)
        }
        #expect(c.inFailedTransaction)
        try c.run("ROLLBACK")
        #expect(try c.execute("SELECT count(*) FROM pipe").rows.first?.int(0) == 0, "nothing of the failed pipeline stays")
        // The connection is usable again, in and out of pipelines.
        #expect(try c.pipeline([("SELECT 1::bigint", []), ("SELECT 2::bigint", [])]).map { $0.rows.first?.int(0) } == [1, 2])
    }

    /// A pipelined write whose statement waits on a lock past the server's
    /// lock_timeout fails with 55P03 while the client still listens, so its
    /// COMMIT never runs: a write answered 503 is never committed later
    /// (the review's scenario: the client gave up, the server went on).
    @Test func aPipelineBlockedOnALockFailsWithoutCommittingLater() throws { try withScratchTable("lockp_", "k BIGINT PRIMARY KEY, v BIGINT NOT NULL") { setup, table in
        let url = try #require(TestDatabase.url)
        try setup.run("INSERT INTO \(table)(k, v) VALUES (1, 0)")
        let holder = try PGConnection(url)
        try holder.run("BEGIN")
        try holder.run("UPDATE \(table) SET v = v + 1 WHERE k = 1")
        let writer = try PGConnection(url, timeoutMillis: 1_500)
        do {
            _ = try writer.pipeline([("BEGIN", []), ("INSERT INTO \(table)(k, v) VALUES($1, $2)", [.int(2), .int(0)]),
                                     ("UPDATE \(table) SET v = v + 10 WHERE k = $1", [.int(1)]), ("COMMIT", [])])
            Issue.record("the blocked pipeline committed")
        } catch let e as PGError {
            #expect(e.sqlstate == "55P03" && !e.isConnectionFailure)
        }
        if writer.inFailedTransaction { try writer.run("ROLLBACK") }
        try holder.run("COMMIT")
        usleep(200_000)
        #expect(try setup.execute("SELECT count(*) FROM \(table) WHERE k = 2").rows.first?.int(0) == 0)
        #expect(try setup.execute("SELECT v FROM \(table) WHERE k = 1").rows.first?.int(0) == 1)
    } }

    /// Review, session 28: PostgreSQL restarts `statement_timeout` at each
    /// statement of a pipeline, so statements each within their limit
    /// outlasted the client's deadline together, and the COMMIT ran after the
    /// client had given up (answered 503: the retry found its code spent).
    /// Past the deadline the server is now asked to cancel and its answer is
    /// read: the statement fails, the COMMIT is skipped, the failure is true.
    @Test func aPipelineOutlastingTheDeadlineIsCancelledNotCommittedLater() throws { try withScratchTable("cancelp_", "k BIGINT PRIMARY KEY") { setup, table in
        let writer = try PGConnection(try #require(TestDatabase.url), timeoutMillis: 1_500)
        let cancels = PGCounters.cancelsTotal
        let started = Date()
        do {
            _ = try writer.pipeline([("BEGIN", []), ("SELECT 1::bigint FROM pg_sleep(0.9)", []), ("SELECT 2::bigint FROM pg_sleep(0.9)", []),
                                     ("INSERT INTO \(table)(k) VALUES($1)", [.int(1)]), ("COMMIT", [])])
            Issue.record("the pipeline answered within its deadline")
        } catch let e as PGError {
            #expect(e.sqlstate == "57014" && !e.isConnectionFailure, "\(e)")
        }
        #expect(Date().timeIntervalSince(started) < 3)
        #expect(PGCounters.cancelsTotal > cancels, "counted (other tests may cancel at the same time)")
        #expect(!writer.isConnected, "dropped once answered: a late cancel would end its next statement")
        // Past the time the abandoned COMMIT would have run: nothing was committed.
        usleep(1_000_000)
        #expect(try setup.execute("SELECT count(*) FROM \(table)").rows.first?.int(0) == 0)
        // The next statement reconnects at once (the server answered: no deadline to wait out).
        #expect(try writer.execute("SELECT $1::bigint + 1", [.int(41)]).rows.first?.int(0) == 42)
    } }
}

import Common
import Cryptography
import Foundation
import OAuth
import Postgres
@testable import PostgresStore
import SharedSQL
import Synchronization
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

    /// `serve` compares its clock with the database's (`ClockWatch`, whose
    /// tests say when it warns): review of time handling, session 32: nodes
    /// judge times by their own clocks, and a node off by minutes let a DPoP
    /// proof be taken twice.
    @Test func aNodesClockIsComparedWithTheDatabases() throws {
        let store = try PostgresStore(url: try #require(TestDatabase.url), migrate: false)
        let real = { Int64(Date().timeIntervalSince1970 * 1000) }
        #expect(try store.clockOffsetMillis(now: real).magnitude < 2_000, "the test cluster runs on this machine's clock")
        let ahead = try store.clockOffsetMillis { real() + 200_000 }
        #expect((-202_000 ... -198_000).contains(ahead), "\(ahead)")
    }
}

/// Writes that PostgreSQL acknowledges before their flush
/// (`writeDeferringFlush`): only those that ask for it and write nothing
/// but what a flow starts; the setting ends with the transaction.
@Suite(.enabled(if: TestStore.kind == .postgres, "the PostgreSQL run of scripts/test"))
struct PostgresDeferredFlushTests {
    @Test func onlyAWriteThatAsksAndTakesNothingAwayCommitsBeforeItsFlush() throws {
        let h = try StoreFixture()
        let store = try #require(h.store as? PostgresStore)
        let other = try h.anotherStore()
        let (client, _) = try h.app()
        let now = h.clock.now
        let request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true, scope: ["openid"], state: nil,
                                           nonce: nil, codeChallenge: nil, prompt: [], maxAge: nil)
        func save(_ id: String) throws { try store.insertAuthorizationRequest(idHash: id, request: request, createdAt: now, expiresAt: now + 60_000) }
        var deferred = store.flushesDeferred
        try store.writeDeferringFlush { try save("1") }
        #expect(store.flushesDeferred == deferred + 1)
        // The setting was the transaction's alone: this connection's next commits wait for their flush.
        #expect(try store.db.run("SHOW synchronous_commit").rows.first?.string(0) == "on")
        // Committed all the same: every node sees it at once.
        #expect(try other.read { try other.authorizationRequest(idHash: "1") } != nil)
        deferred = store.flushesDeferred
        // Each of these commits with its flush: a plain write, one that asks for its flush, a plain part inside
        // or around a deferring one, and any write beyond what a flow starts (a revocation, a sign-out, a replay record).
        try store.write { try save("2") }
        try store.writeDeferringFlush { store.requireFlush(); try save("3") }
        try store.writeDeferringFlush { try store.write { try save("4") } }
        try store.write { try store.writeDeferringFlush { try save("5") } }
        try store.writeDeferringFlush { try save("6"); try store.revokeAccessToken(jti: "j", expiresAt: Int64.max / 4, now: 1_000_000) }
        try store.writeDeferringFlush { try save("7"); try store.deleteSession(idHash: "none") }
        try store.writeDeferringFlush { _ = try store.useProof(jkt: "k", jti: "1", expiresAt: Int64.max / 4, now: 0) }
        #expect(store.flushesDeferred == deferred)
        // The next one that asks defers again: a requireFlush holds for its own transaction only.
        try store.writeDeferringFlush { try save("8"); _ = try store.markAuthorizationRequestAnswered(idHash: "8", at: now) }
        #expect(store.flushesDeferred == deferred + 1)
        #expect(try other.read { try other.isAccessTokenRevoked(jti: "j") })
    }
}

/// The connection a grant updates is held by its write (`prefetchConnection`
/// reads it `FOR NO KEY UPDATE`), even when the request had already read it
/// along without the lock (a code's read brings it): another node cannot
/// take the row until the write ends (review, session 22).
@Suite(.enabled(if: TestStore.kind == .postgres, "the PostgreSQL run of scripts/test"))
struct PostgresConnectionLockTests {
    @Test func aConnectionReadAlongIsReadAgainLockedForTheGrant() throws {
        let h = try StoreFixture()
        let store = try #require(h.store as? PostgresStore)
        let userID = try h.user()
        let (client, _) = try h.app()
        let user = try #require(try h.store.read { try h.store.user(id: userID) })
        let request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true, scope: ["openid"],
                                           state: nil, nonce: nil, codeChallenge: nil, prompt: [], maxAge: nil)
        let code = try AuthorizationService(env: h.env, store: h.store).issueCode(request, user: user, authTime: h.clock.now / 1000, session: nil,
                                                                                scope: ["openid"], consent: .forget, answering: nil)
        let other = try PGConnection(try #require(h.postgres).url)
        let take = "SELECT 1 FROM connections WHERE user_id = '\(userID)' AND client_id = '\(client)' FOR NO KEY UPDATE NOWAIT"
        store.beginRequest()
        try store.write {
            #expect(try store.code(hash: Base64.urlEncode(Digest.sha256(code))) != nil)
            try store.prefetchConnection(userID: userID, clientID: client)
            #expect(try store.connection(userID: userID, clientID: client)?.grantedScope == ["openid"])
            #expect(throws: PGError.self) { try other.run(take) }
        }
        // Released with the write; a later write of the same request locks it again.
        #expect(try other.run(take).rows.count == 1)
        try store.write {
            try store.prefetchConnection(userID: userID, clientID: client)
            _ = try store.connection(userID: userID, clientID: client)
            #expect(throws: PGError.self) { try other.run(take) }
        }
        store.endRequest()
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
                let arguments = sql.filter { $0 == "?" }.count
                for n in 1...arguments { numbered = numbered.replacing("?", with: "$\(n)", maxReplacements: 1) }
                let types = Array(repeating: "bigint", count: arguments).joined(separator: ", ")
                // The values every purge binds (ExpiredRows.arguments), with nothing expired before 0.
                let values = (0..<arguments).map { $0 % 2 == 0 ? "0" : "\(Int64.min)" }.joined(separator: ", ")
                _ = try db.run("PREPARE \(name)(\(types)) AS " + numbered)
                plans[sql] = try db.run("EXPLAIN EXECUTE \(name)(\(values))").rows.map { $0.string(0) }.joined(separator: "\n")
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

/// One node's worker threads share their generation reads
/// (`GenerationReads`): a read begun after a request arrived orders it,
/// whichever thread sent it, and no read begun before it ever does.
@Suite(.enabled(if: TestStore.kind == .postgres, "the PostgreSQL run of scripts/test"))
struct PostgresSharedGenerationReadTests {
    /// Two worker threads of one node (their own connections, one `GenerationReads`).
    static func node(_ h: StoreFixture, threads: Int = 2) throws -> (GenerationReads, [PostgresStore]) {
        let reads = GenerationReads()
        return (reads, try (0..<threads).map { _ in try PostgresStore(url: h.postgres!.url, migrate: false, generationReads: reads) })
    }

    @Test func aRequestTakesAReadAnotherThreadBeganAfterItArrived() throws {
        let h = try StoreFixture()
        let (client, _) = try h.app()
        let (reads, stores) = try Self.node(h)
        let (a, b) = (stores[0], stores[1])
        // b remembers the client.
        b.beginRequest()
        #expect(try b.read { try b.client(client) } != nil)
        b.endRequest()
        // b's next request arrives; a's read begins after it: b sends nothing to be ordered.
        b.beginRequest()
        a.beginRequest()
        _ = try a.read { try a.client(client) }
        a.endRequest()
        let (trips, shared) = (b.roundTrips, reads.sharedTotal)
        #expect(try b.read { try b.client(client) } != nil)
        #expect(b.roundTrips == trips)
        #expect(reads.sharedTotal == shared + 1)
        b.endRequest()
        // A batch is marked when it begins, the same way: a read begun after it answers it...
        b.beginBatch()
        b.beginRequest()
        _ = try a.read { try a.client(client) }
        #expect(try b.read { try b.client(client) } != nil)
        #expect(b.roundTrips == trips)
        b.endRequest()
        b.endBatch()
        // ...and one begun before it does not, though none began since b's last request: b remembers the token
        // active, a reads, another node revokes the token, and then b's batch begins.
        b.beginRequest()
        #expect(try !b.read { try b.isAccessTokenRevoked(jti: "batch") })
        b.endRequest()
        a.beginRequest()
        _ = try a.read { try a.client(client) }
        a.endRequest()
        try h.store.write { try h.store.revokeAccessToken(jti: "batch", expiresAt: Int64.max / 4, now: 1_000_000) }
        let (batchTrips, batchShared) = (b.roundTrips, reads.sharedTotal)
        b.beginBatch()
        b.beginRequest()
        #expect(try b.read { try b.isAccessTokenRevoked(jti: "batch") })
        #expect(b.roundTrips > batchTrips)
        #expect(reads.sharedTotal == batchShared)
        b.endRequest()
        b.endBatch()
    }

    /// A generation read that travels with a statement is numbered before
    /// it is sent: a request that arrives while it is on its way (after the
    /// read's snapshot) does not take it, and sees a commit acknowledged
    /// meanwhile.
    @Test func aReadTravellingWithASlowStatementDoesNotOrderARequestThatArrivedWhileItWasOut() throws {
        let h = try StoreFixture()
        let (reads, stores) = try Self.node(h, threads: 1)
        let b = stores[0]
        b.beginRequest()
        #expect(try !b.read { try b.isAccessTokenRevoked(jti: "slow") })
        b.endRequest()
        let sent = DispatchSemaphore(value: 0), back = DispatchSemaphore(value: 0)
        let failure = Mutex<String?>(nil)
        let url = h.postgres!.url
        Thread.detachNewThread {
            do {
                let a = try PostgresStore(url: url, migrate: false, generationReads: reads)
                sent.signal()
                // The generation read goes first in the pipeline; the answers come back when the sleep ends.
                _ = try a.read { try a.rows("SELECT pg_sleep(0.6)", []) }
            } catch {
                sent.signal()
                failure.withLock { $0 = "\(error)" }
            }
            back.signal()
        }
        sent.wait()
        Thread.sleep(forTimeInterval: 0.2)
        try h.store.write { try h.store.revokeAccessToken(jti: "slow", expiresAt: Int64.max / 4, now: 1_000_000) }
        b.beginRequest()
        back.wait()
        #expect(failure.withLock { $0 } == nil)
        #expect(try b.read { try b.isAccessTokenRevoked(jti: "slow") })
        b.endRequest()
    }

    @Test func aReadBegunBeforeARequestArrivedNeverOrdersIt() throws {
        let h = try StoreFixture()
        let (reads, stores) = try Self.node(h)
        let (a, b) = (stores[0], stores[1])
        // b remembers that the token is not revoked.
        b.beginRequest()
        #expect(try !b.read { try b.isAccessTokenRevoked(jti: "j") })
        b.endRequest()
        // a reads (before the revocation), then another node revokes the token.
        a.beginRequest()
        _ = try a.read { try a.isAccessTokenRevoked(jti: "j") }
        a.endRequest()
        try h.store.write { try h.store.revokeAccessToken(jti: "j", expiresAt: Int64.max / 4, now: 1_000_000) }
        // b's request arrives after the revocation was acknowledged: a's read is too old for it; b reads.
        let (trips, shared) = (b.roundTrips, reads.sharedTotal)
        b.beginRequest()
        #expect(try b.read { try b.isAccessTokenRevoked(jti: "j") })
        #expect(b.roundTrips > trips)
        #expect(reads.sharedTotal == shared)
        b.endRequest()
        // Outside any request, a read is ordered where it begins: a remembers the token active, b reads, another
        // node revokes the token, and a's next read (in no request) does not take b's.
        #expect(try !a.read { try a.isAccessTokenRevoked(jti: "k") })
        _ = try b.read { try b.isAccessTokenRevoked(jti: "j") }
        try h.store.write { try h.store.revokeAccessToken(jti: "k", expiresAt: Int64.max / 4, now: 1_000_000) }
        #expect(try a.read { try a.isAccessTokenRevoked(jti: "k") })
    }

    /// Threads of one node reading while another node commits: every read
    /// sees each change acknowledged before its request arrived.
    /// What the threads of the race below share.
    final class Race: Sendable {
        let committed = Atomic<Int>(0)
        let requests = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
        let failures = Mutex<[String]>([])
    }

    @Test func underRacesEveryRequestSeesWhatWasCommittedBeforeItArrived() throws {
        let h = try StoreFixture()
        let (client, _) = try h.app()
        let url = h.postgres!.url
        let reads = GenerationReads()
        let race = Race()
        let done = DispatchSemaphore(value: 0)
        let readers = 3
        for _ in 0..<readers {
            Thread.detachNewThread {
                do {
                    let store = try PostgresStore(url: url, migrate: false, generationReads: reads)
                    while !race.stop.load(ordering: .acquiring) {
                        let floor = race.committed.load(ordering: .acquiring)
                        store.beginRequest()
                        let name = try store.read { try store.client(client)?.name } ?? ""
                        store.endRequest()
                        race.requests.add(1, ordering: .relaxed)
                        let seen = name.hasPrefix("v ") ? Int(name.dropFirst(2)) ?? -1 : 0
                        if seen < floor { race.failures.withLock { if $0.count < 5 { $0.append("\(name) after v \(floor)") } } }
                    }
                } catch {
                    race.failures.withLock { $0.append("\(error)") }
                }
                done.signal()
            }
        }
        let writer = try PostgresStore(url: url, migrate: false)
        for version in 1...150 {
            try writer.write {
                guard var row = try writer.clientForUpdate(client) else { throw HarnessError("no client") }
                row.name = "v \(version)"
                row.version += 1
                try writer.updateClient(row)
            }
            race.committed.store(version, ordering: .releasing)
        }
        race.stop.store(true, ordering: .releasing)
        for _ in 0..<readers { done.wait() }
        #expect(race.failures.withLock { $0 } == [])
        #expect(race.requests.load(ordering: .relaxed) > 150)
        // The threads took one another's reads.
        #expect(reads.sharedTotal > 0)
    }
}

/// `GenerationReads` alone, with stand-in reads: which answers a thread may
/// take, and that one stuck read does not hold up every request after it.
@Suite struct GenerationReadsTests {
    static let one = GenerationReads.Values(config: 1, revocation: 1)
    static let two = GenerationReads.Values(config: 2, revocation: 2)

    @Test func onlyAReadBegunAfterTheMarkIsTaken() throws {
        let reads = GenerationReads()
        let wake = DispatchSemaphore(value: 0)
        var sent = 0
        #expect(try reads.values(after: reads.mark(), wake: wake) { sent += 1; return Self.one } == Self.one)
        // The last answer began before this mark: the caller reads.
        #expect(try reads.values(after: reads.mark(), wake: wake) { sent += 1; return Self.two } == Self.two)
        #expect(sent == 2)
        // A read (travelling with a statement) numbered after the mark, answered: taken, nothing sent.
        let mark = reads.mark()
        let number = reads.begin()
        reads.end(number, Self.one)
        #expect(try reads.values(after: mark, wake: wake) { sent += 1; return Self.two } == Self.one)
        #expect(sent == 2)
        #expect(reads.sharedTotal == 1)
        // A failed read is never taken.
        let later = reads.mark()
        reads.end(reads.begin(), nil)
        #expect(try reads.values(after: later, wake: wake) { sent += 1; return Self.two } == Self.two)
        #expect(sent == 3)
    }

    @Test func aStuckReadHoldsUpOnlyTheRequestsThatArrivedWhileItWasYoung() throws {
        let reads = GenerationReads(patienceMillis: 20)
        let stuck = DispatchSemaphore(value: 0), started = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            _ = try? reads.values(after: reads.mark(), wake: DispatchSemaphore(value: 0)) {
                started.signal()
                stuck.wait()
                return Self.one
            }
            done.signal()
        }
        started.wait()
        // Older than the patience: the reads after it neither wait for it nor for one another.
        Thread.sleep(forTimeInterval: 0.1)
        let waits = reads.waitsTotal
        let wake = DispatchSemaphore(value: 0)
        for _ in 0..<20 {
            #expect(try reads.values(after: reads.mark(), wake: wake) { Self.two } == Self.two)
        }
        #expect(reads.waitsTotal == waits)
        stuck.signal()
        done.wait()
    }
}

/// Review, session 28: two disconnects of one app racing on two nodes (a
/// double click) both read the connection; the one whose DELETE waited for
/// the other's and then found nothing went on, queued a second, user-wide
/// back-channel logout token and answered 204. The DELETE's own count now
/// decides: the loser ends nothing and queues nothing.
@Suite(.enabled(if: TestStore.kind == .postgres, "the PostgreSQL run of scripts/test"))
struct PostgresRacingDisconnectTests {
    @Test func aDisconnectThatLosesTheRaceQueuesNoSecondLogoutToken() throws {
        let h = try StoreFixture()
        let userID = try h.user()
        let (client, _) = try h.app(public: false)
        let user = try #require(try h.store.read { try h.store.user(id: userID) })
        try h.store.write {
            var c = try #require(try h.store.client(client))
            c.backchannelLogoutURI = "https://app.example/backchannel"
            try h.store.updateClient(c)
        }
        let request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true, scope: ["openid"],
                                           state: nil, nonce: nil, codeChallenge: nil, prompt: [], maxAge: nil)
        _ = try AuthorizationService(env: h.env, store: h.store).issueCode(request, user: user, authTime: h.clock.now / 1000, session: nil,
                                                                         scope: ["openid"], consent: .forget, answering: nil)
        let url = try #require(h.postgres).url
        // The winner, another node, holds its DELETE of the connection open.
        let winner = try PGConnection(url)
        try winner.run("BEGIN")
        try winner.run("DELETE FROM connections WHERE user_id = '\(userID)' AND client_id = '\(client)'")
        let answered = Mutex<String?>(nil), done = DispatchSemaphore(value: 0)
        let env = h.env
        Thread.detachNewThread {
            do {
                let loser = try PostgresStore(url: url, migrate: false)
                let deleted = try ConnectionService(env: env, store: loser).delete(userID: userID, clientID: client)
                answered.withLock { $0 = "\(deleted)" }
            } catch {
                answered.withLock { $0 = "\(error)" }
            }
            done.signal()
        }
        Thread.sleep(forTimeInterval: 0.3)
        try winner.run("COMMIT")
        done.wait()
        #expect(answered.withLock { $0 } == "false", "the loser found no connection to delete")
        let queued = try winner.execute("SELECT count(*) FROM logout_deliveries WHERE client_id = $1", [.text(client)]).rows.first?.int(0)
        #expect(queued == 0)
    }
}

/// A connection the server closed while it sat idle (a terminated backend, a
/// restart) is replaced as the next request begins: every worker thread's
/// first request after a PostgreSQL restart was a 503 (storage-fault review,
/// session 33).
@Suite(.enabled(if: TestStore.kind == .postgres, "the PostgreSQL run of scripts/test"))
struct PostgresClosedConnectionTests {
    @Test func aConnectionTheServerClosedWhileIdleIsReplacedBeforeTheRequestsFirstStatement() throws {
        let h = try StoreFixture()
        let store = try #require(try h.anotherStore() as? PostgresStore)
        let killer = try #require(try h.anotherStore() as? PostgresStore)
        store.beginRequest()
        let pid = try #require(try store.query("SELECT pg_backend_pid()", []).first?.int(0))
        store.endRequest()
        _ = try killer.query("SELECT pg_terminate_backend(\(pid))", [])
        // The backend is gone once its pid is no longer listed.
        var waits = 0
        while try !killer.query("SELECT 1 FROM pg_stat_activity WHERE pid = \(pid)", []).isEmpty, waits < 250 {
            Thread.sleep(forTimeInterval: 0.02)
            waits += 1
        }
        store.beginRequest()
        defer { store.endRequest() }
        #expect(try store.read { try store.client(h.primary.clientID) }?.clientID == h.primary.clientID)
        #expect(try store.query("SELECT pg_backend_pid()", []).first?.int(0) != pid)
    }
}

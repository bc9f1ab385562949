import Common
import Foundation
import Synchronization
import OAuth
import PostgresStore
import SQLiteStore
import TestSupport
import Testing

/// SPEC 9 with SPEC 7.1: failed credential checks counted for all nodes
/// together, on either store (the server shares them on PostgreSQL).
@Suite struct FailureCountTests {
    /// A key's window: counts add up within it, a new one starts once it has
    /// ended, and ended windows are purged at a later addition.
    @Test func countsAddUpWithinAWindowAndStartOverAfterIt() throws {
        let h = try StoreFixture()
        let t0 = h.clock.now
        func add(_ counts: [String: Int], at now: Int64) throws -> [String: (start: Int64, count: Int)] {
            try h.store.write { try h.store.addFailures(counts, now: now, windowMillis: 60_000) }
        }
        let first = try add(["k1": 2, "k2": 1], at: t0)
        #expect(first["k1"]! == (t0, 2) && first["k2"]! == (t0, 1))
        let second = try add(["k1": 1], at: t0 + 59_999)
        #expect(second.count == 1 && second["k1"]! == (t0, 3))
        let third = try add(["k1": 1], at: t0 + 60_000)
        #expect(third["k1"]! == (t0 + 60_000, 1), "a new window")
        #expect(Set(try h.failureKeys()) == ["k1", "k2"], "k2's window ended, kept a window more")
        _ = try add(["k1": 1], at: t0 + 120_001)
        #expect(Set(try h.failureKeys()) == ["k1"], "then purged")
    }

    /// Two nodes with limiters of their own, each on its own connection,
    /// counting one guesser in turn: once shared, a limit holds to within one
    /// attempt on both; the limit from anywhere likewise, for an address that
    /// failed on the account too.
    @Test func twoNodesShareTheirCountsOfAnAccount() throws {
        let h = try StoreFixture()
        let limits = FailureLimiter.Limits(perAddress: 1000, perAccount: 3, perAccountAnywhere: 5)
        let nodes = [(FailureLimiter(limits: limits, shared: true), h.store), (FailureLimiter(limits: limits, shared: true), try h.anotherStore())]
        let now = h.clock.now
        var allowed = 0
        for i in 0..<8 {
            let (limiter, store) = nodes[i % 2]
            guard limiter.refusal(account: "client-a", address: "203.0.113.9", now: now) == nil else { continue }
            allowed += 1
            limiter.recordFailure(FailureLimiter.keys(account: "client-a", address: "203.0.113.9"), now: now)
            limiter.flush(to: store, now: now)
        }
        #expect(allowed == limits.perAccount + 1)
        #expect(nodes.allSatisfy { $0.0.refusal(account: "client-a", address: "203.0.113.9", now: now) != nil })
        #expect(nodes.allSatisfy { $0.0.refusal(account: "client-a", address: "198.51.100.7", now: now) == nil }, "another address never failed")
        // From anywhere: two more addresses fail once each on node 1; node 0 learns the total (6 > 5) at its next.
        for address in ["192.0.2.1", "192.0.2.2"] {
            nodes[1].0.recordFailure(FailureLimiter.keys(account: "client-a", address: address), now: now)
            nodes[1].0.flush(to: nodes[1].1, now: now)
        }
        #expect(nodes[0].0.refusal(account: "client-a", address: "192.0.2.3", now: now) == nil)
        nodes[0].0.recordFailure(FailureLimiter.keys(account: "client-a", address: "192.0.2.3"), now: now)
        nodes[0].0.flush(to: nodes[0].1, now: now)
        #expect(nodes[0].0.refusal(account: "client-a", address: "192.0.2.3", now: now) != nil, "past the limit from anywhere")
        // Nothing in the database names an account or an address.
        let keys = try h.failureKeys()
        #expect(keys.count == 5 && keys.allSatisfy { !$0.contains("client-a") && !$0.contains("203.0") })
    }

    /// A node whose database is away a moment keeps what it counted and adds it at its next flush.
    @Test func countsAFlushCouldNotAddWaitForTheNext() throws {
        let h = try StoreFixture()
        let limiter = FailureLimiter(limits: .init(perAddress: 1000, perAccount: 3), shared: true)
        let now = h.clock.now
        limiter.recordFailure(FailureLimiter.keys(account: "client-b", address: "203.0.113.9"), now: now)
        limiter.flush(to: Unreachable(), now: now)
        #expect(try h.failureKeys().isEmpty)
        #expect(limiter.failedFlushes == 1 && limiter.unsentAccountKeys == 2, "counted for the metrics")
        limiter.flush(to: h.store, now: now)
        #expect(try h.failureKeys().count == 2)
        #expect(limiter.failedFlushes == 1 && limiter.unsentAccountKeys == 0)
        // And a limiter that does not share (SQLite, one node) writes nothing.
        let alone = FailureLimiter(limits: .init(perAddress: 1000, perAccount: 3))
        alone.recordFailure(FailureLimiter.keys(account: "client-c", address: "203.0.113.9"), now: now)
        alone.flush(to: h.store, now: now)
        #expect(try h.failureKeys().count == 2)
    }
}

extension StoreFixture {
    /// The failure counts' keys, read directly (the table is no part of a backup).
    func failureKeys() throws -> [String] {
        let sql = "SELECT key_hash FROM failure_counts ORDER BY key_hash"
        if let s = store as? SQLiteStore { return try s.read { try s.query(sql, []).map { $0.string(0) } } }
        if let p = store as? PostgresStore { return try p.read { try p.query(sql, []).map { $0.string(0) } } }
        return []
    }
}

/// What a flood costs the database: one flush at a time per node, each of at most 128 keys.
@Suite struct FailureFlushTests {
    /// A flood of made-up ids, each failing once, fills the table of unsent
    /// counts: a key that failed twice (someone guessing) still gets in,
    /// pushing out one that failed once, and goes in the first flush.
    @Test func aRepeatedFailureGoesFirstAndIsKeptWhenTheTableIsFull() {
        let target = FailureLimiter.Key.accountAnywhere("target")
        // More unsent keys than one transaction takes: the repeated one is in the first.
        let roomy = FailureLimiter(limits: .init(perAddress: 100_000, perAccount: 3), capacity: 1000, shared: true)
        for i in 0..<300 { roomy.recordFailure([.accountAnywhere("made-up-\(i)")], now: 1_000) }
        roomy.recordFailure([target], now: 1_000)
        roomy.recordFailure([target], now: 1_000)
        let store = Recording()
        roomy.flush(to: store, now: 1_000, batches: 1)
        #expect(store.keys.withLock { $0 }.first?.contains(roomy.sharedKey(target)) == true)
        #expect(store.batches.withLock { $0 } == [128])
        // A full table: the repeated key pushes out a made-up one.
        let full = FailureLimiter(limits: .init(perAddress: 100_000, perAccount: 3), capacity: 40, shared: true)
        for i in 0..<40 { full.recordFailure([.accountAnywhere("made-up-\(i)")], now: 1_000) }
        full.recordFailure([target], now: 1_000)
        full.recordFailure([target], now: 1_000)
        let fullStore = Recording()
        full.flush(to: fullStore, now: 1_000)
        #expect(fullStore.keys.withLock { $0 }.first?.contains(full.sharedKey(target)) == true)
        #expect(fullStore.batches.withLock { $0.reduce(0, +) } == 40, "the table held 40: one made-up id made room")
    }

    @Test func aFlushSendsAtMost128KeysATransactionAndEverythingInTheEnd() {
        let limiter = FailureLimiter(limits: .init(perAddress: 100_000, perAccount: 3), shared: true)
        for i in 0..<150 { limiter.recordFailure(FailureLimiter.keys(account: "client-\(i)", address: "203.0.113.9"), now: 1_000) }
        let store = Recording()
        limiter.flush(to: store, now: 1_000)
        let batches = store.batches.withLock { $0 }
        #expect(batches.allSatisfy { $0 <= 128 } && batches.reduce(0, +) == 300, "\(batches)")
    }

    @Test func aRequestEndingWhileAnotherFlushesLeavesItsFailuresToThatFlush() throws {
        let limiter = FailureLimiter(limits: .init(perAddress: 1000, perAccount: 3), shared: true)
        let store = Recording(), entered = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        store.hold.withLock { $0 = (entered, DispatchSemaphore(value: 0)) }
        let release = try #require(store.hold.withLock { $0?.1 })
        limiter.recordFailure(FailureLimiter.keys(account: "first", address: "203.0.113.9"), now: 1_000)
        Thread.detachNewThread { limiter.flush(to: store, now: 1_000); done.signal() }
        entered.wait()
        // Another request's failure while the first flush is in the database: its own flush returns at once.
        limiter.recordFailure(FailureLimiter.keys(account: "second", address: "203.0.113.9"), now: 1_000)
        limiter.flush(to: store, now: 1_000)
        #expect(store.batches.withLock { $0 } == [2])
        release.signal()
        done.wait()
        #expect(store.batches.withLock { $0 } == [2, 2], "the first flush took the second's failures on")
    }
}

/// Adds nothing, recording how many keys each transaction brought; the first can be held in the database.
private final class Recording: FailureCountStorage, @unchecked Sendable {
    let batches = Mutex<[Int]>([])
    let keys = Mutex<[Set<String>]>([])
    let hold = Mutex<(DispatchSemaphore, DispatchSemaphore)?>(nil)
    func write<T>(_ body: () throws -> T) throws -> T { try body() }
    func read<T>(_ body: () throws -> T) throws -> T { try body() }
    func addFailures(_ counts: [String: Int], now: Int64, windowMillis: Int64) throws -> [String: (start: Int64, count: Int)] {
        batches.withLock { $0.append(counts.count) }
        keys.withLock { $0.append(Set(counts.keys)) }
        if let (entered, release) = hold.withLock({ h -> (DispatchSemaphore, DispatchSemaphore)? in defer { h = nil }; return h }) {
            entered.signal()
            release.wait()
        }
        return counts.mapValues { (now, $0) }
    }
}

/// A store that cannot be reached.
private final class Unreachable: FailureCountStorage {
    struct Away: Error {}
    func write<T>(_ body: () throws -> T) throws -> T { throw Away() }
    func read<T>(_ body: () throws -> T) throws -> T { throw Away() }
    func addFailures(_ counts: [String: Int], now: Int64, windowMillis: Int64) throws -> [String: (start: Int64, count: Int)] { throw Away() }
}

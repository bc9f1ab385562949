import Common
import Foundation
import OAuth
import Postgres

/// Transactions on PostgreSQL (SPEC 9): a write's BEGIN travels with its
/// first statement and its blind writes with the COMMIT; 40001 and 40P01
/// are retried; the memo is validated once per request.
extension PostgresStore {
    public func write<T>(_ body: () throws -> T) throws -> T {
        try write(deferringFlush: false, body)
    }

    /// The commit is acknowledged before PostgreSQL flushes it (the WAL
    /// writer flushes it within three `wal_writer_delay`s, 600 ms by
    /// default, and any commit that waits for its flush flushes everything
    /// before it): a crash of the database loses at most those moments of
    /// such writes, and never a later write that depended on them.
    public func writeDeferringFlush<T>(_ body: () throws -> T) throws -> T {
        try write(deferringFlush: true, body)
    }

    public func requireFlush() {
        defersFlush = false
    }

    func write<T>(deferringFlush: Bool, _ body: () throws -> T) throws -> T {
        if depth > 0 {
            // A bug in the caller: a 500 for its request, not the end of the process.
            guard writing else { throw StoreError.writeInsideRead }
            // A part that must be durable makes the whole transaction so.
            if !deferringFlush { defersFlush = false }
            depth += 1
            defer { depth -= 1 }
            return try body()
        }
        var attempt = 0
        while true {
            attempt += 1
            touchedConfig = false
            touchedRevocation = false
            commitsWithNextStatement = oneStatement
            committedEarly = false
            defersFlush = deferringFlush
            // BEGIN travels with the transaction's first statement.
            pending = [("BEGIN", [])]
            do {
                depth = 1
                writing = true
                defer { depth = 0; writing = false; pending = []; readsAhead = []; committedEarly = false; commitsWithNextStatement = false
                        defersFlush = false
                        // A row lock ends with its transaction; rows read along stay for the request.
                        if !inRequest { along = AlongRows() } else { along.lockedConnections = [] } }
                let result = try body()
                // writeOne: its statement went with the COMMIT.
                if committedEarly {
                    precondition(!touchedConfig && !touchedRevocation, "writeOne touched the configuration or revocations")
                    return result
                }
                // Nothing was written or read: the BEGIN was never sent, no transaction to end.
                if pending.count == 1 && pending[0].sql == "BEGIN" { return result }
                if touchedConfig || touchedRevocation {
                    // A new random value, not the old one plus one: after a failover to a standby that missed the last
                    // commits (or a restore of an older copy), counting on from there would come back to a value a
                    // node's memo holds from the lost history, with other rows behind it (attacker review, session 13).
                    pending.append(("UPDATE generation SET config = COALESCE($1, config), revocation = COALESCE($2, revocation) WHERE id = 1",
                                    [touchedConfig ? .int(PostgresStore.newGeneration()) : .null,
                                     touchedRevocation ? .int(PostgresStore.newGeneration()) : .null]))
                }
                // The blind writes, the generation bump and the COMMIT: one round trip.
                let deferred = defersFlush && !touchedConfig && !touchedRevocation
                if deferred { pending.append(("SET LOCAL synchronous_commit = off", [])) }
                let commit = try sendPending(with: [("COMMIT", [])])[0]
                // A COMMIT of a failed transaction answers ROLLBACK, not an error.
                guard commit.command == "COMMIT" else { throw PGError(sqlstate: "40001", message: "commit rolled back", isConnectionFailure: false) }
                if deferred { flushesDeferred += 1 }
                // What this write changed is read afresh; token-only writes keep the memo.
                if touchedConfig { memo.forgetConfiguration() }
                if touchedRevocation { memo.forgetRevocations() }
                return result
            } catch let error as PGError {
                // Rows read along inside the failed transaction may show its own writes: read them again.
                along = AlongRows()
                if db.isConnected { _ = try? db.run("ROLLBACK") }
                if error.isRetryable && attempt < PostgresStore.maxAttempts {
                    PGCounters.countRetry()
                    usleep(useconds_t(1_000 * (1 << attempt)))
                    continue
                }
                throw PostgresStore.map(error)
            } catch {
                along = AlongRows()
                if db.isConnected { _ = try? db.run("ROLLBACK") }
                throw error
            }
        }
    }

    public func writeOne<T>(_ body: () throws -> T) throws -> T {
        guard depth == 0 else { return try write(body) }
        oneStatement = true
        defer { oneStatement = false }
        return try write(body)
    }

    /// A read: the generation row, then memo answers or, for what the memo
    /// lacks, single statements (each sees every commit made before it).
    /// The generation read travels with the read's first statement (SPEC 9:
    /// one round trip for both), or alone just before the first memo answer.
    public func read<T>(_ body: () throws -> T) throws -> T {
        if depth > 0 { return try body() }
        depth = 1
        defer { depth = 0; memoUsable = false; generationPending = false; pending = []; readsAhead = [] }
        do {
            // Within one request the generation read at its first read holds
            // for the rest of it (the request is ordered at that moment; what
            // it writes itself, the memo forgets at the commit).
            if inRequest && validated {
                memoUsable = true
            } else {
                // Outside a request (the CLI, logout delivery) the read itself is what must be ordered.
                if !inRequest { arrival = generationReads.mark() }
                generationPending = true
                pending = [(PostgresStore.generationSQL, [])]
            }
            return try body()
        } catch let error as PGError {
            throw PostgresStore.map(error)
        }
    }

    static let generationSQL = "SELECT config, revocation FROM generation WHERE id = 1"

    /// The generation row in a result of `generationSQL` (nil: no row).
    static func generation(in result: PGResult) -> GenerationReads.Values? {
        guard let row = result.rows.first else { return nil }
        return GenerationReads.Values(config: row.int(0), revocation: row.int(1))
    }

    /// A generation read's answer: the memo is valid from here on.
    func validate(_ values: GenerationReads.Values?) {
        memo.revalidate(config: values?.config ?? -1, revocation: values?.revocation ?? -1)
        validated = values != nil
        memoUsable = validated
    }

    /// Before a memo answer: the generation read, if it has not gone out
    /// yet, alone, unless another thread's read begun after this request
    /// arrived answers it (`GenerationReads`).
    func validateIfPending() throws {
        guard generationPending else { return }
        guard pending.count == 1 else { _ = try sendPending(with: []); return }
        // The generation read alone (a token, an introspection: the memo answers the rest): a plain statement.
        pending = []
        generationPending = false
        validate(try generationReads.values(after: arrival, wake: wake) {
            PostgresStore.generation(in: try db.execute(PostgresStore.generationSQL, []))
        })
    }

    /// A generation value: random, never negative (-1 marks a memo unusable), so that no two histories share one.
    static func newGeneration() -> Int64 { Int64.random(in: 0...Int64.max) }

    public func beginRequest(abandoned: @escaping @Sendable () -> Bool) {
        inRequest = true
        // A request after one that waited out its deadline connects again at once (within one, it does not).
        db.mayReconnect()
        db.dropIfClosedByServer()
        if !inBatch { validated = false; arrival = generationReads.mark() }
        along = AlongRows()
    }

    public func endRequest() {
        inRequest = false
        if !inBatch { validated = false }
        along = AlongRows()
    }

    /// The generation read of a batch's first read orders every request of
    /// the batch (each had arrived before it began), so it holds for all of
    /// them: one round trip for the batch instead of one a request.
    public func beginBatch() {
        inBatch = true
        validated = false
        arrival = generationReads.mark()
    }

    public func endBatch() {
        inBatch = false
        validated = false
    }

    /// Whether rows read along may be kept: within a request or a write.
    var keepsAlong: Bool { inRequest || writing }
}

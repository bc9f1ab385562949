import Common
import Foundation
import SQLiteStore
import OAuth
import Synchronization
import Postgres
@testable import PostgresStore
import TestSupport
import Testing

/// The PostgreSQL store's memo (SPEC 9): exact across nodes at the cost of
/// one round trip per request while nothing changed.
@Suite(.enabled(if: TestStore.kind == .postgres, "the PostgreSQL run of scripts/test"))
struct PostgresMemoTests {
    /// Rows read along are forgotten wholesale only at a delete that may
    /// cascade to them: the list of such tables is the schema's own.
    @Test func theTablesWhoseDeletesCascadeAreTheSchemas() throws {
        let h = try StoreFixture()
        let schema = try #require(h.postgres).name
        let catalog = try PGConnection(try #require(h.postgres).url)
        let referenced = try catalog.execute("""
            SELECT DISTINCT (SELECT relname FROM pg_class WHERE oid = c.confrelid) FROM pg_constraint c
            JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.contype = 'f' AND c.confdeltype = 'c' AND n.nspname = $1
            """, [.text(schema)]).rows.map { $0.string(0) }
        #expect(Set(referenced) == PostgresStore.cascadingTables)
    }

    /// A migration's rewrite of rows reaches every node's memo (cross-node review, session 29): the memo is ended by
    /// the generation row, which Latchkey's own writes change and a migration's script did not.
    @Test func aMigrationThatRewritesRowsEndsEveryNodesMemo() throws {
        let h = try StoreFixture()
        let node = try #require(h.store as? PostgresStore)
        let id = h.primary.clientID
        #expect(try node.read { try node.client(id)?.enabled } == true)
        let admin = try PGConnection(try #require(h.postgres?.url))
        let next = PostgresStore.migrations + ["UPDATE clients SET enabled = 0 WHERE client_id = '\(id)'"]
        #expect(try PostgresStore.migrate(admin, migrations: next) == 1)
        #expect(try node.read { try node.client(id)?.enabled } == false, "the memo answered from before the migration")
    }

    @Test func anUnchangedConfigurationCostsOneRoundTripARead() throws {
        let h = try StoreFixture()
        let store = try #require(h.store as? PostgresStore)
        let id = h.primary.clientID
        let read = { try store.read { (try store.client(id), try store.secrets(clientID: id), try store.meta("keys_version"), try store.isAccessTokenRevoked(jti: "j")) } }
        _ = try read()
        let before = store.roundTrips
        _ = try read()
        #expect(store.roundTrips - before == 1, "the generation row only")
        // A token-only write (a refresh rotation, a code) keeps the memo; a revocation elsewhere ends its revocation part.
        let other = try h.anotherStore()
        try other.write { try other.revokeAccessToken(jti: "j", expiresAt: Int64.max / 4, now: 1_000_000) }
        #expect(try store.read { try store.isAccessTokenRevoked(jti: "j") })
        // A configuration write elsewhere ends the configuration part.
        var client = try #require(try store.read { try store.client(id) })
        client.name = "renamed on another node"
        try other.write { try other.updateClient(client) }
        #expect(try store.read { try store.client(id)?.name } == "renamed on another node")
    }

    /// SPEC 9 across a failover (attacker review, session 13): a standby that missed the primary's last commit takes
    /// over, and the new primary's next change must end what a node remembered from the lost commit. With generations
    /// counted up by one, the new primary's change came back to the number the node held, over other rows: a client
    /// disabled on the new primary stayed enabled in that node's memo, for good. Played here on one database: the lost
    /// commit is undone by hand (its row and its generation put back), as a standby taking over would have them.
    @Test func aFailoverToAStandbyBehindNeverBringsBackAGenerationAMemoHolds() throws {
        let h = try StoreFixture()
        let node = try #require(h.store as? PostgresStore)
        let primary = try h.anotherStore()
        let admin = try PGConnection(try #require(h.postgres?.url))
        let id = h.primary.clientID
        let standby = try #require(try admin.execute("SELECT config, revocation FROM generation WHERE id = 1").rows.first)
        var client = try #require(try primary.read { try primary.client(id) })
        let name = client.name
        client.name = "renamed, then lost in the failover"
        try primary.write { try primary.updateClient(client) }
        #expect(try node.read { try node.client(id)?.name } == client.name, "the node remembers the lost commit")
        // The standby takes over without that commit.
        try admin.execute("UPDATE clients SET client_name = $1 WHERE client_id = $2", [.text(name), .text(id)])
        try admin.execute("UPDATE generation SET config = $1, revocation = $2 WHERE id = 1", [.int(standby.int(0)), .int(standby.int(1))])
        // The new primary disables the client; the node's next read must see it.
        let newPrimary = try h.anotherStore()
        var current = try #require(try newPrimary.read { try newPrimary.client(id) })
        #expect(current.name == name && current.enabled)
        current.enabled = false
        try newPrimary.write { try newPrimary.updateClient(current) }
        let seen = try #require(try node.read { try node.client(id) })
        #expect(!seen.enabled && seen.name == name)
    }

    /// SPEC 9: memoized reads cost the exactness round trip and nothing more,
    /// through the whole handler (client authentication, key ring, claims).
    /// SPEC 9: validated each request, once: the second read of a request
    /// costs nothing; the next request sees what another node committed.
    @Test func theMemoIsValidatedOncePerRequest() throws {
        let h = try StoreFixture()
        let store = try #require(h.store as? PostgresStore)
        let id = h.primary.clientID
        let other = try h.anotherStore()
        _ = try store.read { try store.client(id) }
        store.beginRequest()
        var before = store.roundTrips
        _ = try store.read { try store.client(id) }
        _ = try store.read { try store.client(id) }
        #expect(store.roundTrips - before == 1)
        store.endRequest()
        var client = try #require(try other.read { try other.client(id) })
        client.name = "renamed between requests"
        try other.write { try other.updateClient(client) }
        store.beginRequest()
        before = store.roundTrips
        #expect(try store.read { try store.client(id)?.name } == "renamed between requests")
        store.endRequest()
        // Outside a request (the CLI, tests), every read validates.
        before = store.roundTrips
        _ = try store.read { try store.client(id) }
        _ = try store.read { try store.client(id) }
        #expect(store.roundTrips - before == 2)
    }

    /// SPEC 9: the generation is read in the same round trip as a read's
    /// first query, and the memo answers after it are those of that
    /// generation: a client disabled on another node is seen by a read that
    /// begins with a query the memo does not hold (here a session) and then
    /// asks the memo; a client remembered is answered after the generation
    /// read alone, a client not remembered comes with it.
    @Test func theGenerationTravelsWithTheFirstQuery() throws {
        let h = try StoreFixture()
        let store = try #require(h.store as? PostgresStore)
        let other = try h.anotherStore()
        let id = h.primary.clientID
        #expect(try store.read { try store.client(id)?.enabled } == true)
        var client = try #require(try other.read { try other.client(id) })
        client.enabled = false
        try other.write { try other.updateClient(client) }
        var before = store.roundTrips
        let seen = try store.read { (try store.session(idHash: "unknown"), try store.client(id)) }
        #expect(seen.0 == nil && seen.1?.enabled == false, "the memo was validated by the generation read sent with the session's")
        #expect(store.roundTrips - before == 2, "the generation with the session, then the client the generation's change made it forget")
        // Remembered and unchanged: the generation read alone, then the memo.
        before = store.roundTrips
        #expect(try store.read { try store.client(id)?.enabled } == false)
        #expect(store.roundTrips - before == 1)
        // Not remembered: one round trip for the generation and the row.
        before = store.roundTrips
        #expect(try store.read { try store.client("unknown-client") } == nil)
        #expect(store.roundTrips - before == 1)
        #expect(try store.read { try store.client("unknown-client") } == nil)
        before = store.roundTrips
        #expect(try store.read { try store.isFamilyRevoked(id: "unknown-family") })
        #expect(store.roundTrips - before == 1, "a family not remembered comes with the generation read too")
        // A read that asks nothing sends nothing, and leaves nothing waiting for the next.
        before = store.roundTrips
        try store.read {}
        #expect(store.roundTrips == before)
        let alone = store.roundTrips
        try store.write { try store.deleteSession(idHash: "none") }
        let writeTrips = store.roundTrips - alone
        try store.read {}
        let again = store.roundTrips
        try store.write { try store.deleteSession(idHash: "none") }
        #expect(store.roundTrips - again == writeTrips, "no generation read left over goes with the write")
    }

    /// The consent page's session and the request it answers in one round
    /// trip: the request read ahead answers as its own read would, within the
    /// request only, and a write to the requests (the answer) forgets it.
    @Test func aRequestReadAheadAnswersOnceAndAWriteForgetsIt() throws {
        let h = try StoreFixture()
        let store = try #require(h.store as? PostgresStore)
        let (client, _) = try h.app()
        let now = h.clock.now
        let request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true, scope: ["openid"], state: nil,
                                           nonce: nil, codeChallenge: nil, prompt: [], maxAge: nil)
        try store.write { try store.insertAuthorizationRequest(idHash: "ahead", request: request, createdAt: now, expiresAt: now + 60_000) }
        store.beginRequest()
        var before = store.roundTrips
        let session = try store.read { try store.prefetchAuthorizationRequest(idHash: "ahead"); return try store.session(idHash: "none") }
        #expect(session == nil)
        let ahead = try store.read { try store.authorizationRequest(idHash: "ahead") }
        #expect(ahead?.request.clientID == client && ahead?.answeredAt == nil)
        #expect(store.roundTrips - before == 1, "the generation, the request and the session together")
        // Answered on another node meanwhile: this request ordered itself before that, and says so at its write.
        let other = try h.anotherStore()
        #expect(try other.write { try other.markAuthorizationRequestAnswered(idHash: "ahead", at: now) })
        #expect(try store.write { try store.markAuthorizationRequestAnswered(idHash: "ahead", at: now) } == false)
        before = store.roundTrips
        #expect(try store.read { try store.authorizationRequest(idHash: "ahead") }?.answeredAt == now, "read again after the write")
        #expect(store.roundTrips - before == 1)
        store.endRequest()
        // Outside a request nothing is kept: a read ahead is not queued.
        before = store.roundTrips
        _ = try store.read { try store.prefetchAuthorizationRequest(idHash: "ahead"); return try store.session(idHash: "none") }
        _ = try store.read { try store.authorizationRequest(idHash: "ahead") }
        #expect(store.roundTrips - before == 2)
    }

    /// SPEC 9 with the worker's batches: requests a worker took from its
    /// socket together all arrived before the batch's first read, so that
    /// one generation read orders each of them (one round trip for the
    /// batch). What a request of the batch writes, the next one reads; what
    /// another node commits after the batch's read, the next batch sees
    /// (those requests had arrived before that commit ended).
    @Test func aBatchIsValidatedOnceForAllItsRequests() throws {
        let h = try StoreFixture()
        let store = try #require(h.store as? PostgresStore)
        let id = h.primary.clientID
        let other = try h.anotherStore()
        var client = try #require(try other.read { try other.client(id) })
        client.name = "renamed before the batch"
        try other.write { try other.updateClient(client) }
        store.beginBatch()
        var trips: [Int] = []
        for _ in 0..<3 {
            let before = store.roundTrips
            store.beginRequest()
            #expect(try store.read { try store.client(id)?.name } == "renamed before the batch")
            store.endRequest()
            trips.append(store.roundTrips - before)
        }
        #expect(trips == [1, 0, 0], "the generation with the renamed row once, then the memo, for the whole batch")
        // The batch's own write: the next request of the batch reads it.
        store.beginRequest()
        var mine = try #require(try store.read { try store.client(id) })
        mine.name = "renamed by the batch"
        try store.write { try store.updateClient(mine) }
        store.endRequest()
        store.beginRequest()
        #expect(try store.read { try store.client(id)?.name } == "renamed by the batch")
        store.endRequest()
        // Another node's commit after the batch's read: ordered after the batch's requests, seen by the next batch.
        var theirs = try #require(try other.read { try other.client(id) })
        theirs.name = "renamed on another node during the batch"
        try other.write { try other.updateClient(theirs) }
        store.endBatch()
        store.beginBatch()
        store.beginRequest()
        #expect(try store.read { try store.client(id)?.name } == "renamed on another node during the batch")
        store.endRequest()
        store.endBatch()
    }
}

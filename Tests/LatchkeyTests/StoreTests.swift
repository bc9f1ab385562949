import Common
import Foundation
import OAuth
import SQLite
import SQLiteStore
import Testing

@Suite struct StoreTests {
    @Test func migrationsAreIdempotentAndCounted() throws {
        let h = try Harness()
        #expect(try h.store.schemaVersionApplied() == SQLiteStore.schemaVersion)
        #expect(try h.store.migrate() == 0)
        let again = try SQLiteStore(path: h.directory + "/test.db")
        #expect(try again.schemaVersionApplied() == SQLiteStore.schemaVersion)
    }

    @Test func clientsRoundTripWithNonASCIIAndInjectionText() throws {
        let h = try Harness()
        let client = Client(clientID: "client-ü-1", organizationID: h.primary.organizationID, name: "Zürich 🚀 '); DROP TABLE clients;--",
                            description: "naïve \"quoted\"", redirectURIs: ["https://app.example/cb"], scope: ["openid", "profile"],
                            extraData: ["k": ["nested": true]], createdAt: h.clock.now)
        try h.store.write { try h.store.insertClient(client) }
        let loaded = try #require(try h.store.client("client-ü-1"))
        #expect(loaded == client)
        #expect(try h.store.clientCount(organizationID: h.primary.organizationID) == 2)
    }

    @Test func writeTransactionsRollBackOnError() throws {
        let h = try Harness()
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try h.store.write {
                try h.store.setMeta("half", "written")
                throw Boom()
            }
        }
        #expect(try h.store.meta("half") == nil)
    }

    @Test func uniquenessViolationsBecomeConflicts() throws {
        let h = try Harness()
        let dup = Client(clientID: h.primary.clientID, organizationID: h.primary.organizationID, name: "dup", createdAt: 0)
        #expect(throws: StoreError.self) { try h.store.write { try h.store.insertClient(dup) } }
    }

    @Test func aLockedDatabaseIsReportedAsBusy() throws {
        let h = try Harness()
        let other = try Connection(path: h.directory + "/test.db", busyTimeoutMillis: 10)
        try other.execute("BEGIN IMMEDIATE")
        defer { try? other.execute("ROLLBACK") }
        let blocked = try SQLiteStore(path: h.directory + "/test.db", migrate: false, busyTimeoutMillis: 50)
        // A short busy timeout on this connection too, so the test is quick.
        #expect(throws: StoreError.busy) {
            try blocked.write { try blocked.setMeta("x", "y") }
        }
    }

    @Test func backupWritesAConsistentCopy() throws {
        let h = try Harness()
        let path = h.directory + "/backup.db"
        try h.store.backup(to: path)
        let copy = try SQLiteStore(path: path)
        #expect(try copy.client(h.primary.clientID)?.isPrimary == true)
    }

    @Test func deletingAClientRemovesItsSecrets() throws {
        let h = try Harness()
        #expect(!(try h.store.secrets(clientID: h.primary.clientID)).isEmpty)
        try h.store.write { try h.store.deleteClient(h.primary.clientID) }
        #expect(try h.store.secrets(clientID: h.primary.clientID).isEmpty)
    }
}

import Common
import Foundation
import OAuth
import SQLite
import SQLiteStore
import SharedSQL
import PostgresStore
import Cryptography
import TestSupport
import Synchronization
import Testing

@Suite struct StoreTests {
    @Test(.enabled(if: TestStore.isSQLite, "SQLite's own machinery")) func migrationsAreIdempotentAndCounted() throws {
        let h = try StoreFixture()
        #expect(try h.sqlite.schemaVersionApplied() == SQLiteStore.schemaVersion)
        #expect(try h.sqlite.migrate() == 0)
        let again = try SQLiteStore(path: h.directory + "/test.db")
        #expect(try again.schemaVersionApplied() == SQLiteStore.schemaVersion)
    }

    /// Migrations are append-only: what a deployment already ran is never
    /// edited (a changed one would leave existing databases behind). The
    /// shipped ones are pinned by digest; a new migration is appended and,
    /// once released, pinned here too.
    @Test func shippedMigrationsNeverChange() {
        func digest(_ migrations: ArraySlice<String>) -> String { Base64.urlEncode(Digest.sha256(migrations.joined(separator: "\u{0}"))) }
        #expect(digest(SQLiteStore.migrations.prefix(12)) == "QzjFOzN76LrYUbOuoxbhJ7JnMigr8rSwm6j3I-bd8Dk", "SQLite migrations 1-12 changed")
        #expect(digest(PostgresStore.migrations.prefix(8)) == "BFUwY0psxTISwy7OnKL7Df2h264thX8vptRHvO8dU7c", "PostgreSQL migrations 1-8 changed")
        #expect(digest(SQLiteStore.migrations.prefix(16)) == "c2od0osPwGzQNvCQE_0jsSZeMP1PWnm8z5KRDpVPAiQ", "SQLite migrations 1-16 changed")
        #expect(digest(PostgresStore.migrations.prefix(13)) == "2ZhpQscSpRquxzAB1V8dFYAvbV_VrtXl_Llk485dCOk", "PostgreSQL migrations 1-13 changed")
        #expect(digest(SQLiteStore.migrations.prefix(17)) == "SBxKM9WjjPzEL_bvgYKnIDsAwDIygHzwfXK1Sa9hCC4", "SQLite migrations 1-17 changed")
        #expect(digest(PostgresStore.migrations.prefix(14)) == "gNGoMpOOxy3TJ-qHv_OSDGff7Rhg7RMm7dA3QzfIqQU", "PostgreSQL migrations 1-14 changed")
        #expect(digest(SQLiteStore.migrations.prefix(18)) == "y3MCgZhQfPKNMDEOqZlvjpwdU7JVWawr-OS0XJ2RYPY", "SQLite migrations 1-18 changed")
        #expect(digest(PostgresStore.migrations.prefix(15)) == "S5I-JX11LAQ1_J3JkLWX_a2N0JC-oMEDu9ogpzsw2w0", "PostgreSQL migrations 1-15 changed")
        #expect(digest(SQLiteStore.migrations.prefix(20)) == "kD2wuf2uUHaSdQiiA3wBs3RylOw2QbV7XeI6STJelPw", "SQLite migrations 1-20 changed")
        #expect(digest(PostgresStore.migrations.prefix(17)) == "ElCgE247uThqBzNv2N0lKotpXihTDAMDoBtktb4D0DE", "PostgreSQL migrations 1-17 changed")
        #expect(digest(SQLiteStore.migrations.prefix(21)) == "KbtItANh3D-9sCmQN9h_pR1BZQOMAj3LMtQXT5acSnU", "SQLite migrations 1-21 changed")
        #expect(digest(PostgresStore.migrations.prefix(18)) == "iqS6eZLtVGMAIDsP8_SgWBQ5hrZbTHSPop0pkaM32QU", "PostgreSQL migrations 1-18 changed")
        #expect(digest(SQLiteStore.migrations.prefix(23)) == "lwrOyWyJlEK76l7BPXS2QZW7xs4Q43dtGcMt3C-TXDw", "SQLite migrations 1-23 changed")
        #expect(digest(PostgresStore.migrations.prefix(19)) == "EAvkxxu4TH0dkqWlcQzIu70aleiiNJj3QNxkzyt7O6Q", "PostgreSQL migrations 1-19 changed")
    }

    /// A purge takes at most `ExpiredRows.batch` expired rows, the oldest first: rows that piled up while nothing
    /// was inserted go a batch at each insert, not all in one request that holds the writer for seconds meanwhile.
    @Test func aPurgeTakesABatchOfTheOldestExpiredRowsAtEachInsert() throws {
        let h = try StoreFixture()
        let day: Int64 = 86_400_000
        let expired = ExpiredRows.batch + 88
        // Revocations kept until their token has expired on every node (the revocation margin past its expiry):
        // these go with revocations made later than that; one whose token expired just now stays.
        let later = 1_000_000 + Int64(expired) + ExpiredRows.revocationMarginMillis + 1
        try h.store.write {
            for i in 0..<expired { try h.store.revokeAccessToken(jti: "old-\(i)", expiresAt: 1_000_000 + Int64(i), now: 1_000_000) }
            try h.store.revokeAccessToken(jti: "just-expired", expiresAt: later - 1_000, now: 1_000_000)
        }
        func left() throws -> [String] {
            try h.rows("revoked_tokens").compactMap { if case let .text(jti)? = $0["jti"] { jti } else { nil } }.filter { $0.hasPrefix("old-") }
        }
        #expect(try left().count == expired)
        try h.store.write { try h.store.revokeAccessToken(jti: "new-1", expiresAt: later + day, now: later) }
        #expect(try Set(left()) == Set((ExpiredRows.batch..<expired).map { "old-\($0)" }), "the oldest batch went first")
        try h.store.write { try h.store.revokeAccessToken(jti: "new-2", expiresAt: later + day, now: later) }
        #expect(try left().isEmpty)
        #expect(try h.store.read { try h.store.isAccessTokenRevoked(jti: "new-1") && h.store.isAccessTokenRevoked(jti: "new-2") })
        #expect(try h.store.read { try h.store.isAccessTokenRevoked(jti: "just-expired") }, "kept the margin past its expiry")
    }

    /// A write asked for inside a read is a caller's bug: refused with an error (a 500 for that request), the
    /// store usable afterwards; as a precondition it stopped the whole process (review of the change, session 32).
    @Test func aWriteInsideAReadIsRefusedNotAProcessStopped() throws {
        let h = try StoreFixture()
        #expect(throws: StoreError.writeInsideRead) {
            try h.store.read { try h.store.write { try h.store.useProof(jkt: "k", jti: "inside", expiresAt: 2_000, now: 1_000) } }
        }
        #expect(try h.store.write { try h.store.useProof(jkt: "k", jti: "inside", expiresAt: 2_000, now: 1_000) }, "nothing was recorded")
    }

    /// Every table the migrations leave is either state that a backup and a restore carry (`StateTables.all`) or
    /// one named here as the store's own: a table added without either would be left out of every backup, silently.
    @Test func everyTableIsCarriedByABackupOrNamedAsTheStoresOwn() throws {
        let h = try StoreFixture()
        let tables: [String]
        let own: Set<String>
        if let s = h.store as? SQLiteStore {
            tables = try s.read { try s.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'", []).map { $0.string(0) } }
            // The memo's counter, bumped by triggers; failed authentications counted for a few minutes.
            own = ["config_generation", "failure_counts"]
        } else {
            let p = try #require(h.store as? PostgresStore)
            tables = try p.read {
                try p.query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'", [])
                    .map { $0.string(0) }
            }
            // The migrations' lock row, the memos' generation row, the failure counts the nodes share, and every
            // client id ever used (kept unique across clients and retired ids; a restore rebuilds it from both).
            own = ["schema_version", "generation", "failure_counts", "client_ids"]
        }
        #expect(Set(tables) == Set(StateTables.all).union(own))
        #expect(Set(StateTables.all).count == StateTables.all.count)
    }

    /// A database a newer latchkey migrated is refused by this one, on either store, and left as it was: migrating
    /// (`latchkey migrate`, and every command and node that opens the store) says so instead of reporting success
    /// (upgrade review, session 30: an older binary answered with the newer schema's version and exit 0).
    @Test func aSchemaNewerThanTheseMigrationsIsRefusedAndLeftAlone() throws {
        let h = try StoreFixture()
        let known = h.store is SQLiteStore ? SQLiteStore.schemaVersion : PostgresStore.schemaVersion
        try h.store.write {
            if let s = h.store as? SQLiteStore {
                _ = try s.update("PRAGMA user_version = \(known + 3)", [])
            } else if let p = h.store as? PostgresStore {
                _ = try p.update("UPDATE schema_version SET version = ? WHERE id = 1", [.int(Int64(known + 3))])
            }
        }
        let refusal = StoreError.schemaNewer(applied: known + 3, known: known)
        #expect(throws: refusal) { _ = try (h.store as? SQLiteStore)?.migrate() ?? (h.store as? PostgresStore)?.migrate() }
        switch TestStore.kind {
        case .sqlite: #expect(throws: refusal) { _ = try SQLiteStore(path: h.directory + "/test.db") }
        case .postgres: #expect(throws: refusal) { _ = try PostgresStore(url: h.postgres!.url) }
        }
        #expect(!refusal.isTransient && refusal.description.contains("version \(known + 3), newer than this latchkey's \(known)"))
        let applied = try (h.store as? SQLiteStore)?.schemaVersionApplied() ?? (h.store as? PostgresStore)?.schemaVersionApplied()
        #expect(applied == known + 3)
    }

    /// SQLite migration 14, PostgreSQL 10: clients the audit log says were registered anonymously (before the
    /// registration marked them) are marked, with what else their attributes hold kept; no other client is.
    @Test func theMigrationMarksClientsRegisteredAnonymouslyBeforeTheMark() throws {
        let h = try StoreFixture()
        let registry = try h.registry()
        var anonymous = try h.caller(surface: "registration")
        anonymous.actor = "anonymous"
        let bare = try registry.create(ClientSpec(name: "Anon bare", redirectURIs: [StoreFixture.redirect]), caller: anonymous).client.clientID
        var withAttributes = ClientSpec(name: "Anon with attributes", redirectURIs: [StoreFixture.redirect])
        withAttributes.attributes = ["businessName": "B \"quoted\", {braced}"]
        let rich = try registry.create(withAttributes, caller: anonymous).client.clientID
        let managed = try registry.create(ClientSpec(name: "Managed", redirectURIs: [StoreFixture.redirect]), caller: try h.caller()).client.clientID
        // That migration (and those after it) again, as on a database that had these clients before it.
        let rerun = try rewindMigrations(h.store, sqlite: 14, postgres: 10)
        #expect(try (h.store as? SQLiteStore)?.migrate() ?? (h.store as? PostgresStore)?.migrate() == rerun)
        let clients = try h.store.read { try [bare, rich, managed].map { try #require(try h.store.client($0)) } }
        #expect(clients[0].attributes == ["registered_anonymously": true])
        #expect(clients[1].attributes["registered_anonymously"] == true && clients[1].attributes["businessName"] == "B \"quoted\", {braced}")
        #expect(clients[2].attributes["registered_anonymously"] == nil)
    }

    /// Marks the store as having applied the migrations before the given one (numbered from 1), so that
    /// `migrate()` runs it and every later one again; returns how many that is.
    func rewindMigrations(_ store: any Store, sqlite: Int, postgres: Int) throws -> Int {
        try store.write {
            if let s = store as? SQLiteStore {
                // SQLite cannot add a column that exists (no IF NOT EXISTS): what migrations 17 to 24 added goes first.
                if sqlite <= 24 {
                    _ = try s.update("DROP TRIGGER audit_events_counted", [])
                    _ = try s.update("DROP TRIGGER audit_events_uncounted", [])
                    _ = try s.update("ALTER TABLE organizations DROP COLUMN audit_count", [])
                }
                if sqlite <= 22 { _ = try s.update("ALTER TABLE refresh_tokens DROP COLUMN session_ends_at", []) }
                if sqlite <= 21 {
                    _ = try s.update("ALTER TABLE refresh_tokens DROP COLUMN withdrawn_at", [])
                    _ = try s.update("ALTER TABLE refresh_tokens DROP COLUMN parent_hash", [])
                }
                if sqlite <= 19 {
                    _ = try s.update("DROP INDEX token_families_by_expiry", [])
                    _ = try s.update("DROP INDEX refresh_tokens_by_expiry", [])
                    _ = try s.update("ALTER TABLE token_families DROP COLUMN expires_at", [])
                }
                if sqlite <= 18 {
                    _ = try s.update("DROP INDEX logout_deliveries_by_share", [])
                    _ = try s.update("ALTER TABLE logout_deliveries DROP COLUMN share_key", [])
                }
                if sqlite <= 17 {
                    _ = try s.update("ALTER TABLE authorization_codes DROP COLUMN pushed", [])
                    _ = try s.update("ALTER TABLE device_codes DROP COLUMN dpop_jkt", [])
                }
                _ = try s.update("PRAGMA user_version = \(sqlite - 1)", [])
            } else if let p = store as? PostgresStore {
                _ = try p.update("UPDATE schema_version SET version = ? WHERE id = 1", [.int(Int64(postgres - 1))])
            }
        }
        return store is SQLiteStore ? SQLiteStore.schemaVersion - sqlite + 1 : PostgresStore.migrations.count - postgres + 1
    }

    /// SQLite migration 23: the single-use records' tables rebuilt keyed by their primary key alone (WITHOUT
    /// ROWID: fewer WAL pages a record); what they held is carried over, so a DPoP proof or a client assertion
    /// recorded before the upgrade is still refused after it. PostgreSQL has no such migration (nothing reruns).
    @Test func theSingleUseRecordsOutliveTheirTablesRebuild() throws {
        let h = try StoreFixture()
        let now: Int64 = 1_000_000
        #expect(try h.store.write {
            try h.store.useProof(jkt: "k", jti: "before", expiresAt: now + 120_000, now: now)
                && h.store.useAssertion(clientID: "c", jti: "before", expiresAt: now + 120_000, now: now)
        })
        let rerun = try rewindMigrations(h.store, sqlite: 23, postgres: PostgresStore.migrations.count + 1)
        #expect(try (h.store as? SQLiteStore)?.migrate() ?? (h.store as? PostgresStore)?.migrate() == rerun)
        let fresh = try h.anotherStore()
        #expect(try !fresh.write { try fresh.useProof(jkt: "k", jti: "before", expiresAt: now + 121_000, now: now + 1_000) })
        #expect(try !fresh.write { try fresh.useAssertion(clientID: "c", jti: "before", expiresAt: now + 121_000, now: now + 1_000) })
        #expect(try fresh.write { try fresh.useProof(jkt: "k", jti: "after", expiresAt: now + 121_000, now: now + 1_000) })
        if let s = h.store as? SQLiteStore {
            let tables = try s.read {
                try s.query("SELECT sql FROM sqlite_master WHERE name IN ('dpop_proofs', 'client_assertions')", []).map { $0.string(0) }
            }
            #expect(tables.count == 2 && tables.allSatisfy { $0.hasSuffix("WITHOUT ROWID") }, "\(tables)")
        }
    }

    /// SQLite migration 21, PostgreSQL 18: a FAPI 2.0 client stored with RS256 ID tokens or signed userinfo (before
    /// FAPI 2.0 §5.4 was enforced) gets ES256, as a new version; no other client changes.
    @Test func theMigrationGivesFAPIClientsES256WhereTheyHadRS256() throws {
        let h = try StoreFixture()
        let (fapi, _) = try h.app(public: false)
        let (plain, _) = try h.app(public: false)
        try h.store.write {
            for (id, strict) in [(fapi, true), (plain, false)] {
                var c = try #require(try h.store.client(id))
                (c.fapi2, c.idTokenAlg, c.userinfoAlg) = (strict, .rs256, .rs256)
                try h.store.updateClient(c)
            }
        }
        let before = try h.store.read { try [fapi, plain].map { try #require(try h.store.client($0)) } }
        let rerun = try rewindMigrations(h.store, sqlite: 21, postgres: 18)
        #expect(try (h.store as? SQLiteStore)?.migrate() ?? (h.store as? PostgresStore)?.migrate() == rerun)
        let fresh = try h.anotherStore()
        let after = try fresh.read { try [fapi, plain].map { try #require(try fresh.client($0)) } }
        #expect(after[0].idTokenAlg == .es256 && after[0].userinfoAlg == .es256 && after[0].version == before[0].version + 1)
        #expect(after[1] == before[1])
        // Recorded, as every write is (SPEC 6.0): for the FAPI client alone.
        let audited = try h.rows("audit_events").filter { $0["actor"] == .text("migration") }
        #expect(audited.map { $0["target"] } == [.text(fapi)])
    }

    /// SQLite migration 18, PostgreSQL 15: a logout delivery waiting from before waits in its client's organization's share.
    @Test func theMigrationNamesEachWaitingLogoutDeliverysShare() throws {
        let h = try StoreFixture()
        let other = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Other", clientLimit: 10)
        for (client, org) in [(h.primary.clientID, h.primary.organizationID), (other.clientID, other.organizationID)] {
            try h.store.write {
                try h.store.enqueueLogout(LogoutDelivery(id: h.env.randomID(24), clientID: client, share: org, subject: "alice", sid: nil,
                                                         nextAttemptAt: h.clock.now, createdAt: h.clock.now),
                                          limitPerClient: 10, limitPerShare: 10, reservedPerClient: 1)
            }
        }
        if let p = h.store as? PostgresStore { try p.write { _ = try p.update("UPDATE logout_deliveries SET share_key = ''", []) } }
        let rerun = try rewindMigrations(h.store, sqlite: 18, postgres: 15)
        #expect(try (h.store as? SQLiteStore)?.migrate() ?? (h.store as? PostgresStore)?.migrate() == rerun)
        let waiting = try h.store.read { try h.store.dueLogouts(now: h.clock.now, limit: 10, perClient: 10, perShare: 10) }
        #expect(Set(waiting.map { "\($0.clientID) \($0.share)" })
                == ["\(h.primary.clientID) \(h.primary.organizationID)", "\(other.clientID) \(other.organizationID)"])
    }

    /// SQLite migration 19, PostgreSQL 16: a family expires with its last refresh token (one without any at its
    /// creation), and what expired over a day before the upgrade (by the database's clock) is gone after it.
    @Test func theMigrationGivesFamiliesTheirExpiryAndPurgesWhatExpiredLongAgo() throws {
        let h = try StoreFixture()
        let user = try h.user(), (client, _) = try h.app()
        let now = Int64(Date().timeIntervalSince1970 * 1000), day: Int64 = 86_400_000
        func run(_ sql: String, _ arguments: [StoredValue]) throws {
            if let s = h.store as? SQLiteStore { _ = try s.update(sql, arguments) } else if let p = h.store as? PostgresStore { _ = try p.update(sql, arguments) }
        }
        // (family, created, its refresh tokens' expiries)
        let families: [(String, Int64, [Int64])] = [("live", now - 2 * day, [now - 3 * day, now + 10 * day]), ("recent", now - 3_600_000, []),
                                                  ("bare", now - 3 * day, []), ("over", now - 40 * day, [now - 9 * day, now - 5 * day]),
                                                  ("lately", now - 40 * day, [now - 12 * 3_600_000])]
        try h.store.write {
            for (id, created, expiries) in families {
                try run("INSERT INTO token_families(id, client_id, user_id, created_at) VALUES(?, ?, ?, ?)", [.text(id), .text(client), .text(user), .int(created)])
                for (i, expiry) in expiries.enumerated() {
                    try run("""
                        INSERT INTO refresh_tokens(token_hash, family_id, client_id, user_id, scope, auth_time, created_at, expires_at)
                        VALUES(?, ?, ?, ?, 'openid', 0, ?, ?)
                        """, [.text("\(id)-\(i)"), .text(id), .text(client), .text(user), .int(created), .int(expiry)])
                }
            }
            try run("UPDATE token_families SET expires_at = 0", [])
        }
        let rerun = try rewindMigrations(h.store, sqlite: 19, postgres: 16)
        #expect(try (h.store as? SQLiteStore)?.migrate() ?? (h.store as? PostgresStore)?.migrate() == rerun)
        var expiries: [String: StoredValue] = [:]
        for row in try h.rows("token_families") { if case let .text(id)? = row["id"] { expiries[id] = row["expires_at"] } }
        #expect(expiries == ["live": .int(now + 10 * day), "recent": .int(now - 3_600_000), "lately": .int(now - 12 * 3_600_000)])
        #expect(Set(try h.texts("refresh_tokens", "token_hash")) == ["live-1", "lately-0"])
        // A family inserted by a node of the version before (no expiry given) is never purged.
        try h.store.write { try run("INSERT INTO token_families(id, client_id, user_id, created_at) VALUES('old-node', ?, ?, 0)", [.text(client), .text(user)]) }
        try h.store.write { try h.store.insertFamily(id: "new-node", clientID: client, userID: user, createdAt: now + 30 * day, sid: nil) }
        #expect(Set(try h.texts("token_families", "id")) == ["old-node", "new-node"])
    }

    /// SQLite migration 15, PostgreSQL 11: upstream records keyed by (organization, sysId), every record and
    /// field kept; afterwards the same sysId can be two organizations' records.
    @Test func theMigrationKeysUpstreamRecordsByOrganization() throws {
        let h = try StoreFixture()
        let orgB = try Provisioning(env: h.env, store: h.store).createOrganization(name: "B", clientLimit: 10)
        func record(_ org: String, _ sysID: String, _ name: String) -> UpstreamClient {
            UpstreamClient(sysID: sysID, organizationID: org, name: name, provider: .azureAD, tenantID: "common", clientID: "c-\(name)",
                           secret: [1, 2, 3], secretEncrypted: false, description: "d \(name)", clusterRedirectURLs: [(node: "n", url: "https://uc.example/cb")],
                           opswiseGroups: ["ops"], scopes: ["openid"], version: 3, createdAt: 5, updatedAt: 6)
        }
        let a = record(h.primary.organizationID, String(repeating: "a", count: 32), "A one")
        let b = record(orgB.organizationID, String(repeating: "b", count: 32), "B one")
        try h.store.write { try h.store.insertUpstream(a); try h.store.insertUpstream(b) }
        let rerun = try rewindMigrations(h.store, sqlite: 15, postgres: 11)
        #expect(try (h.store as? SQLiteStore)?.migrate() ?? (h.store as? PostgresStore)?.migrate() == rerun)
        let found = try h.store.read {
            try [(a.organizationID, a.sysID), (b.organizationID, b.sysID), (b.organizationID, a.sysID)].map { try h.store.upstream(organizationID: $0, sysID: $1) }
        }
        #expect(found == [a, b, nil])
        let twin = record(orgB.organizationID, a.sysID, "B twin")
        try h.store.write { try h.store.insertUpstream(twin) }
        #expect(try h.store.write { try h.store.deleteUpstream(organizationID: orgB.organizationID, sysID: a.sysID) })
        #expect(try h.store.read { try h.store.upstream(organizationID: a.organizationID, sysID: a.sysID) } == a)
        // Deleted already (by a racing request): false, so the service writes no second audit row.
        #expect(try !h.store.write { try h.store.deleteUpstream(organizationID: orgB.organizationID, sysID: a.sysID) })
    }

    /// PostgreSQL's text holds no NUL: on both stores a read with one matches
    /// no row and a write with one is refused (`StoreError.invalidText`),
    /// and nothing of the refused write is left.
    @Test func textWithANULMatchesNothingAndIsNeverWritten() throws {
        let h = try StoreFixture()
        let nul = h.primary.clientID + "\u{0}"
        #expect(try h.store.read { try h.store.client(nul) } == nil)
        #expect(try h.store.read { try h.store.user(username: "alice\u{0}") } == nil)
        var client = try #require(try h.store.read { try h.store.client(h.primary.clientID) })
        let before = client
        client.description = "with a \u{0} inside"
        #expect(throws: StoreError.invalidText) { try h.store.write { try h.store.updateClient(client) } }
        #expect(try h.store.read { try h.store.client(h.primary.clientID) } == before)
        #expect(throws: StoreError.invalidText) { try h.store.write { try h.store.setMeta("k", "v\u{0}") } }
        #expect(try h.store.meta("k") == nil)
    }

    /// Upstream records list by name in byte order on both stores (PostgreSQL migration 12: the column's
    /// collation is "C", so a database created with another locale orders the same as SQLite).
    @Test func upstreamRecordsListByNameInByteOrder() throws {
        let h = try StoreFixture()
        let names = ["b", "C", "a", "_z", "Ä", "B"]
        try h.store.write {
            for (i, name) in names.enumerated() {
                try h.store.insertUpstream(UpstreamClient(sysID: String(repeating: String(i), count: 32), organizationID: h.primary.organizationID, name: name,
                                                          provider: .azureAD, tenantID: "common", clientID: "c\(i)", secret: [1], secretEncrypted: false,
                                                          description: nil, clusterRedirectURLs: [], opswiseGroups: [], scopes: [], version: 1,
                                                          createdAt: 1, updatedAt: 1))
            }
        }
        let listed = try h.store.read { try h.store.upstreams(organizationID: h.primary.organizationID).map(\.name) }
        #expect(listed == names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        if let p = h.store as? PostgresStore {
            let collation = try p.read {
                try p.query("SELECT collation_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'upstream_clients' AND column_name = 'name'", [])
                    .first?.optionalString(0)
            }
            #expect(collation == "C")
        }
    }

    /// Review, session 25: every foreign key has an index that leads with its column, so what a parent's delete
    /// cascades to, and each statement that finds a client's, a user's or an organization's rows (disabling a
    /// client withdraws its codes; a password change ends the user's sessions), reads those rows, not a whole table
    /// (on PostgreSQL a scan of a day's codes ran past the statement timeout, so a compromised client could not be
    /// disabled; on SQLite it held the writer).
    @Test func everyForeignKeyHasAnIndexLeadingWithIt() throws {
        let h = try StoreFixture()
        var keys: [String] = [], unindexed: [String] = []
        if let p = h.store as? PostgresStore {
            let rows = try p.read {
                try p.query("""
                    SELECT c.conrelid::regclass::text, a.attname, EXISTS (
                      SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])
                    FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                    WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace
                    """, [])
            }
            for row in rows {
                keys.append("\(row.string(0)).\(row.string(1))")
                if !row.bool(2) { unindexed.append("\(row.string(0)).\(row.string(1))") }
            }
        } else {
            let rows = try h.sqlite.read {
                try h.sqlite.query("""
                    SELECT m.name, f."from", EXISTS (
                      SELECT 1 FROM pragma_index_list(m.name) il JOIN pragma_index_info(il.name) ii WHERE ii.seqno = 0 AND ii.name = f."from")
                    FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table'
                    """, [])
            }
            for row in rows {
                keys.append("\(row.string(0)).\(row.string(1))")
                if row.int(2) == 0 { unindexed.append("\(row.string(0)).\(row.string(1))") }
            }
        }
        #expect(keys.contains("authorization_codes.client_id") && keys.contains("sessions.user_id"), "\(keys)")
        #expect(unindexed.isEmpty, "foreign keys without an index leading with them: \(unindexed)")
    }

    @Test func clientsRoundTripWithNonASCIIAndInjectionText() throws {
        let h = try StoreFixture()
        let client = Client(clientID: "client-ü-1", organizationID: h.primary.organizationID, name: "Zürich 🚀 '); DROP TABLE clients;--",
                            description: "naïve \"quoted\"", redirectURIs: ["https://app.example/cb"], scope: ["openid", "profile"],
                            extraData: ["k": ["nested": true]], createdAt: h.clock.now)
        try h.store.write { try h.store.insertClient(client) }
        let loaded = try #require(try h.store.client("client-ü-1"))
        #expect(loaded == client)
        #expect(try h.store.clientCount(organizationID: h.primary.organizationID) == 2)
    }

    @Test func writeTransactionsRollBackOnError() throws {
        let h = try StoreFixture()
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
        let h = try StoreFixture()
        let dup = Client(clientID: h.primary.clientID, organizationID: h.primary.organizationID, name: "dup", createdAt: 0)
        #expect(throws: StoreError.self) { try h.store.write { try h.store.insertClient(dup) } }
    }

    @Test(.enabled(if: TestStore.isSQLite, "SQLite's own machinery")) func aLockedDatabaseIsReportedAsBusy() throws {
        let h = try StoreFixture()
        let other = try Connection(path: h.directory + "/test.db", busyTimeoutMillis: 10)
        try other.execute("BEGIN IMMEDIATE")
        defer { try? other.execute("ROLLBACK") }
        let blocked = try SQLiteStore(path: h.directory + "/test.db", migrate: false, busyTimeoutMillis: 50)
        // A short busy timeout on this connection too, so the test is quick.
        #expect(throws: StoreError.busy) {
            try blocked.write { try blocked.setMeta("x", "y") }
        }
    }

    @Test(.enabled(if: TestStore.isSQLite, "SQLite's own machinery")) func backupWritesAConsistentCopy() throws {
        let h = try StoreFixture()
        let path = h.directory + "/backup.db"
        try h.sqlite.backup(to: path)
        let copy = try SQLiteStore(path: path)
        #expect(try copy.client(h.primary.clientID)?.isPrimary == true)
    }

    @Test(.enabled(if: TestStore.isSQLite, "SQLite's own machinery")) func theCheckpointerMovesTheWALIntoTheDatabase() throws {
        let h = try StoreFixture()
        let path = h.directory + "/test.db"
        func fileSize() throws -> Int { (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }
        let store = try SQLiteStore(path: path, migrate: false, autoCheckpointPages: 0)
        _ = try store.checkpoint()
        let before = try fileSize()
        for i in 0..<50 { try store.write { try store.setMeta("k\(i)", String(repeating: "x", count: 2000)) } }
        // Nothing has checkpointed: the new pages are only in the WAL.
        #expect(try fileSize() == before)
        let checkpointer = Checkpointer(path: path, intervalMillis: 20, writerLock: WriterLock(), restartFrames: 8)
        checkpointer.start()
        var grown = false
        for _ in 0..<200 where !grown {
            Thread.sleep(forTimeInterval: 0.01)
            grown = try fileSize() > before
        }
        Thread.sleep(forTimeInterval: 0.1)
        checkpointer.stop()
        #expect(grown)
        // Everything was checkpointed (with or without the RESTART round), so the next write starts the WAL over.
        try store.write { try store.setMeta("after", "x") }
        #expect(try store.checkpoint().walFrames < 8)
        #expect(try store.read { try store.meta("k49") }?.count == 2000)
        // Stopping one that never started returns at once.
        Checkpointer(path: path).stop()
    }

    @Test func theClientCountFollowsInsertsAndDeletes() throws {
        let h = try StoreFixture()
        let org = h.primary.organizationID
        // The rows themselves, as a list returns them (the kept count must agree).
        func counted() throws -> Int { try h.store.clients(organizationID: org, namePrefix: nil, limit: 250, offset: 0).clients.count }
        for i in 0..<3 {
            try h.store.write { try h.store.insertClient(Client(clientID: "c\(i)", organizationID: org, name: "c\(i)", createdAt: 0)) }
        }
        #expect(try h.store.clientCount(organizationID: org) == 4)
        try h.store.write { try h.store.deleteClient("c1") }
        // A rolled-back insert leaves the count alone.
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try h.store.write {
                try h.store.insertClient(Client(clientID: "c9", organizationID: org, name: "c9", createdAt: 0))
                throw Boom()
            }
        }
        #expect(try h.store.clientCount(organizationID: org) == 3)
        #expect(try h.store.clientCount(organizationID: org) == (try counted()))
        #expect(try h.store.clients(organizationID: org, namePrefix: nil, limit: 10, offset: 0).total == 3)
        #expect(try h.store.clients(organizationID: org, namePrefix: "c", limit: 10, offset: 0).total == 2)
    }

    @Test func deletingAClientRemovesItsSecrets() throws {
        let h = try StoreFixture()
        #expect(!(try h.store.secrets(clientID: h.primary.clientID)).isEmpty)
        try h.store.write { try h.store.deleteClient(h.primary.clientID) }
        #expect(try h.store.secrets(clientID: h.primary.clientID).isEmpty)
    }
}

/// The read memo of `SQLiteStore` must never answer from a stale state.
@Suite struct ReadMemoTests {
    @Test func anotherConnectionsCommitIsSeenByTheNextReadTransaction() throws {
        let h = try StoreFixture()
        let id = h.primary.clientID
        let other = try h.anotherStore()
        // Remember the client, its secrets and a negative revocation answer.
        let before = try h.store.read { (try h.store.client(id), try h.store.secrets(clientID: id), try h.store.isAccessTokenRevoked(jti: "j1")) }
        #expect(before.0 != nil && !before.1.isEmpty && !before.2)
        #expect(try h.store.read { try h.store.client(id)?.name } == before.0?.name)
        var renamed = try #require(before.0)
        renamed.name = "renamed elsewhere"
        try other.write {
            try other.updateClient(renamed)
            try other.revokeAccessToken(jti: "j1", expiresAt: Int64.max / 4, now: 1_000_000)
            try other.deleteSecret(id: before.1[0].id)
        }
        let after = try h.store.read { (try h.store.client(id), try h.store.secrets(clientID: id), try h.store.isAccessTokenRevoked(jti: "j1")) }
        #expect(after.0?.name == "renamed elsewhere")
        #expect(after.1.count == before.1.count - 1)
        #expect(after.2)
    }

    @Test(.enabled(if: TestStore.isSQLite, "SQLite's own machinery")) func aReadAnsweredFromTheMemoStillQueriesWhatItLacks() throws {
        let h = try StoreFixture()
        let id = h.primary.clientID
        _ = try h.store.read { try h.store.client(id) }
        // The memo is valid: this read begins its transaction only for the user query.
        let (client, user) = try h.store.read { (try h.store.client(id), try h.store.user(username: "nobody")) }
        #expect(client?.clientID == id && user == nil)
        let other = try SQLiteStore(path: h.directory + "/test.db", migrate: false)
        try other.write { try other.revokeAccessToken(jti: "j3", expiresAt: Int64.max / 4, now: 1_000_000) }
        #expect(try h.store.read { (try h.store.client(id)?.clientID, try h.store.isAccessTokenRevoked(jti: "j3")) } == (id, true))
        // Nothing is left open: another connection can take the write lock and checkpoint fully.
        try other.write { try other.setMeta("after", "x") }
        #expect(try other.checkpoint().walFrames == (try other.checkpoint().checkpointed))
    }

    @Test func ownWritesAreSeenAtOnce() throws {
        let h = try StoreFixture()
        let id = h.primary.clientID
        var client = try #require(try h.store.read { try h.store.client(id) })
        client.name = "renamed here"
        try h.store.write { try h.store.updateClient(client) }
        #expect(try h.store.read { try h.store.client(id)?.name } == "renamed here")
        try h.store.write { try h.store.setMeta("keys_version", "99") }
        #expect(try h.store.read { try h.store.meta("keys_version") } == "99")
        // Inside a write transaction reads are never memoized.
        try h.store.write {
            try h.store.setMeta("keys_version", "100")
            #expect(try h.store.meta("keys_version") == "100")
        }
    }

    /// A made-up id longer than any real one is looked up but never remembered, on either store: a caller's
    /// 7,000-byte ids, 4,096 a worker, held 100 MB (review, session 20). A short unknown one is remembered.
    @Test func madeUpLongIdsAreNotRemembered() throws {
        let h = try StoreFixture()
        let remembered = { (h.store as? SQLiteStore)?.rememberedClients ?? (h.store as? PostgresStore)?.rememberedClients ?? -1 }
        _ = try h.store.read { try h.store.client(h.primary.clientID) }
        let start = remembered()
        #expect(start >= 1)
        for i in 0..<20 {
            #expect(try h.store.read { try h.store.client(String(repeating: "x", count: 7_000) + "\(i)") } == nil)
        }
        #expect(remembered() == start)
        #expect(try h.store.read { try h.store.client("unknown-but-short") } == nil)
        #expect(remembered() == start + 1)
    }

    @Test(.enabled(if: TestStore.isSQLite, "SQLite's own machinery")) func ownTokenOnlyWritesKeepTheConfigurationMemo() throws {
        let h = try StoreFixture()
        let id = h.primary.clientID
        _ = try h.store.read { try h.store.client(id) }
        try h.store.write { try h.store.revokeAccessToken(jti: "own", expiresAt: Int64.max / 4, now: 1_000_000) }
        var before = h.sqlite.statementsRun
        #expect(try h.store.read { try h.store.client(id)?.clientID } == id)
        #expect(h.sqlite.statementsRun - before == 1, "answered from the memo: PRAGMA data_version only")
        // Revocation answers never outlive a write; this one is read afresh.
        #expect(try h.store.read { try h.store.isAccessTokenRevoked(jti: "own") })
        // A configuration write of this connection ends the configuration memo.
        var client = try #require(try h.store.read { try h.store.client(id) })
        client.name = "renamed by its own connection"
        try h.store.write { try h.store.updateClient(client) }
        before = h.sqlite.statementsRun
        #expect(try h.store.read { try h.store.client(id)?.name } == "renamed by its own connection")
        #expect(h.sqlite.statementsRun - before > 1)
        // A failed write leaves nothing remembered from inside it.
        struct Abort: Error {}
        #expect(throws: Abort.self) {
            try h.store.write {
                try h.store.revokeAccessToken(jti: "rolled-back", expiresAt: Int64.max / 4, now: 1_000_000)
                throw Abort()
            }
        }
        #expect(try h.store.read { try h.store.isAccessTokenRevoked(jti: "rolled-back") } == false)
        // Another connection's commit after this one's write is still seen.
        let other = try SQLiteStore(path: h.directory + "/test.db", migrate: false)
        try h.store.write { try h.store.revokeAccessToken(jti: "mine", expiresAt: Int64.max / 4, now: 1_000_000) }
        client.name = "renamed elsewhere after"
        try other.write { try other.updateClient(client) }
        #expect(try h.store.read { try h.store.client(id)?.name } == "renamed elsewhere after")
    }

    @Test func configurationChangesElsewhereAreSeenThroughTokenOnlyWrites() throws {
        let h = try StoreFixture()
        let id = h.primary.clientID
        let other = try h.anotherStore()
        let keysVersion = try h.store.read { try h.store.meta("keys_version") }
        #expect(try h.store.read { try h.store.client(id)?.hasLogo } == false)
        // A token-only write elsewhere keeps the configuration memo…
        try other.write { try other.revokeAccessToken(jti: "j2", expiresAt: Int64.max / 4, now: 1_000_000) }
        #expect(try h.store.read { try h.store.isAccessTokenRevoked(jti: "j2") })
        // …and configuration writes elsewhere end it: a logo, a meta value.
        try other.write {
            try other.setLogo(clientID: id, contentType: "image/png", image: [1, 2, 3], preview: [1], etag: "e", at: 1)
            try other.setMeta("keys_version", (keysVersion ?? "0") + "1")
        }
        #expect(try h.store.read { try h.store.client(id)?.hasLogo } == true)
        #expect(try h.store.read { try h.store.meta("keys_version") } == (keysVersion ?? "0") + "1")
        try other.write { try other.deleteLogo(clientID: id) }
        #expect(try h.store.read { try h.store.client(id)?.hasLogo } == false)
    }

    /// Refresh tokens hang off their family alone (SQLite migration 17, PostgreSQL 14): a deleted client's still go,
    /// with its families, and a rotation's insert checks one parent, not three.
    @Test func aDeletedClientTakesItsRefreshTokensWithItsFamilies() throws {
        let h = try StoreFixture()
        let userID = try h.user()
        let client = Client(clientID: "with-tokens", organizationID: h.primary.organizationID, name: "with-tokens", createdAt: h.clock.now)
        let now = h.clock.now
        try h.store.write {
            try h.store.insertClient(client)
            try h.store.insertFamily(id: "family-1", clientID: client.clientID, userID: userID, createdAt: now, sid: nil)
            try h.store.insertRefreshToken(RefreshTokenRecord(tokenHash: "token-1", familyID: "family-1", clientID: client.clientID, userID: userID,
                                                              scope: ["openid"], authTime: now / 1000, createdAt: now, expiresAt: now + 60_000))
        }
        #expect(try h.store.read { try h.store.refreshToken(hash: "token-1") } != nil)
        try h.store.write { try h.store.deleteClient(client.clientID) }
        #expect(try h.store.read { try h.store.refreshToken(hash: "token-1") } == nil)
        // A family's token whose family is unknown is refused, as before.
        #expect(throws: (any Error).self) {
            try h.store.write {
                try h.store.insertRefreshToken(RefreshTokenRecord(tokenHash: "token-2", familyID: "no-family", clientID: h.primary.clientID,
                                                                  userID: userID, scope: ["openid"], authTime: now / 1000, createdAt: now,
                                                                  expiresAt: now + 60_000))
            }
        }
    }

    @Test func aDeletedClientIsGoneForEveryConnection() throws {
        let h = try StoreFixture()
        let other = try h.anotherStore()
        let created = Client(clientID: "short-lived", organizationID: h.primary.organizationID, name: "short-lived", createdAt: h.clock.now)
        try h.store.write { try h.store.insertClient(created) }
        #expect(try other.read { try other.client(created.clientID) } != nil)
        try h.store.write { try h.store.deleteClient(created.clientID) }
        #expect(try other.read { try other.client(created.clientID) } == nil)
    }
}

/// Writes against a lock held from outside the process and requests nginx has
/// given up (storage-fault review, session 33: the k-th writer queued behind
/// an outside lock waited k busy timeouts, past nginx's read timeout, and a
/// refresh committed after nginx had answered 504; the client's retry with
/// the old token then ended the grant as a reuse).
@Suite(.enabled(if: TestStore.isSQLite, "SQLite's own locking"), .serialized) struct SQLiteWriteWaitTests {
    @Test func writersQueuedBehindAnOutsideLockWaitOneTimeoutInAll() throws {
        let h = try StoreFixture()
        let path = h.directory + "/test.db"
        let lock = WriterLock()
        let outside = try Connection(path: path, busyTimeoutMillis: 0)
        try outside.execute("BEGIN IMMEDIATE")
        defer { try? outside.execute("ROLLBACK") }
        let results = Mutex<[Int: (error: String, millis: Int64)]>([:])
        let threads = (0..<3).map { i in
            Thread {
                guard let store = try? SQLiteStore(path: path, writerLock: lock, migrate: false, busyTimeoutMillis: 1000) else { return }
                let start = ContinuousClock.now
                let outcome: String
                do { try store.write { try store.useProof(jkt: "k", jti: "queued-\(i)", expiresAt: 2_000, now: 1_000) }; outcome = "committed" } catch {
                    outcome = "\(error)"
                }
                let elapsed = ContinuousClock.now - start
                results.withLock { $0[i] = (outcome, elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000) }
            }
        }
        for (i, thread) in threads.enumerated() {
            thread.start()
            if i == 0 { Thread.sleep(forTimeInterval: 0.1) }
        }
        while results.withLock({ $0.count }) < 3 { Thread.sleep(forTimeInterval: 0.02) }
        let all = results.withLock { $0 }
        // Each is refused as busy after about one timeout of its own, not after its place in the queue's worth of them.
        for (i, r) in all.sorted(by: { $0.key < $1.key }) {
            #expect(r.error == "\(StoreError.busy)", "writer \(i): \(r.error)")
            #expect(r.millis >= 900 && r.millis < 1_600, "writer \(i) waited \(r.millis) ms")
        }
    }

    /// A write that waited asks whether its request is still awaited, and rolls back if not; one that did not wait
    /// does not ask (the worker asked before running the request).
    @Test func aWriteThatWaitedIsRolledBackWhenItsRequestWasGivenUp() throws {
        let h = try StoreFixture()
        let path = h.directory + "/test.db"
        let asking = try SQLiteStore(path: path, migrate: false, askAbandonedAfterMillis: 0)
        let asked = Mutex(0)
        asking.beginRequest { asked.withLock { $0 += 1 }; return true }
        #expect(throws: StoreError.abandoned) { try asking.write { try asking.useProof(jkt: "k", jti: "given-up", expiresAt: 2_000, now: 1_000) } }
        #expect(asked.withLock { $0 } == 1)
        asking.endRequest()
        #expect(try asking.write { try asking.useProof(jkt: "k", jti: "given-up", expiresAt: 2_000, now: 1_000) }, "nothing was recorded")
        let quick = try SQLiteStore(path: path, migrate: false)
        quick.beginRequest { asked.withLock { $0 += 1 }; return true }
        #expect(try quick.write { try quick.useProof(jkt: "k", jti: "quick", expiresAt: 2_000, now: 1_000) })
        #expect(asked.withLock { $0 } == 1)
    }
}

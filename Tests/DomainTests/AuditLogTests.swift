import Common
import OAuth
import PostgresStore
import SQLiteStore
import TestSupport
import Testing

/// The audit log's bounds (review, session 34): its total is a count kept on
/// the organization's row, its events are kept a year, and deep pages are
/// read by id. Both stores.
@Suite struct AuditLogTests {
    static func event(_ org: String?, at: Int64, _ action: String = "client.updated") -> AuditEvent {
        AuditEvent(organizationID: org, actor: "test", action: action, target: nil, surface: "native", requestID: nil, createdAt: at)
    }

    func append(_ h: StoreFixture, _ events: [AuditEvent]) throws {
        try h.store.write { for e in events { try h.store.appendAudit(e) } }
    }

    func total(_ h: StoreFixture, _ org: String) throws -> Int {
        try h.store.read { try h.store.auditEvents(organizationID: org, limit: 1, offset: 0) }.total
    }

    func actions(_ h: StoreFixture, _ org: String) throws -> [String] {
        try h.store.read { try h.store.auditEvents(organizationID: org, limit: 250, offset: 0) }.events.map(\.action)
    }

    /// A write one year and more after an organization's oldest events purges them (one write in sixteen, by its
    /// millisecond) and takes them off the count; another organization's and younger events stay.
    @Test func eventsAreKeptAYearAndTheCountFollows() throws {
        let h = try StoreFixture()
        let a = h.primary.organizationID
        let b = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Other", clientLimit: 10).organizationID
        let start = try total(h, a)
        let now: Int64 = 64 * 1_000_000_000   // a multiple of 16: this write purges
        let old = now - AuditLog.retentionMillis - 1_000
        try append(h, (0..<5).map { Self.event(a, at: old + Int64($0) * 16 + 1, "old") } + [Self.event(b, at: old + 1, "old")]
                   + [Self.event(nil, at: old + 1, "old"), Self.event(a, at: now - AuditLog.retentionMillis + 1, "young")])
        #expect(try total(h, a) == start + 6)
        #expect(try total(h, b) == 1 + 1)   // its creation, and the old one
        try append(h, [Self.event(a, at: now + 1, "not purging")])   // not a multiple of 16: nothing purged
        #expect(try total(h, a) == start + 7)
        try append(h, [Self.event(a, at: now, "purging")])
        #expect(try !actions(h, a).contains("old"))
        #expect(try actions(h, a).contains("young"))
        #expect(try total(h, a) == (try actions(h, a)).count, "the count is what is kept")
        #expect(try actions(h, b).contains("old"), "another organization's events wait for its own writes")
        #expect(try total(h, b) == 2)
        // The events of no organization are purged by such an event.
        try h.store.write { try h.store.purgeAudit(organizationID: nil, before: now - AuditLog.retentionMillis) }
        #expect(try h.texts("audit_events", "action").filter { $0 == "old" }.count == 1, "only organization b's is left")
    }

    /// The count is kept by the database: an event inserted as the release before wrote it (a node serving through
    /// the upgrade, whose SQL knows no count) counts, and so does its deletion (review of the change, session 34).
    @Test func eventsWrittenWithoutTheCountAreCounted() throws {
        let h = try StoreFixture()
        let a = h.primary.organizationID
        let before = try total(h, a)
        _ = try h.statement("""
            INSERT INTO audit_events(organization_id, actor, action, target, surface, request_id, details, created_at) \
            VALUES('\(a)', 'old-node', 'client.updated', NULL, 'native', NULL, '{}', 5)
            """)
        _ = try h.statement("INSERT INTO audit_events(organization_id, actor, action, target, surface, request_id, details, created_at) VALUES(NULL, 'cli', 'user.created', NULL, 'cli', NULL, '{}', 5)")
        #expect(try total(h, a) == before + 1)
        _ = try h.statement("DELETE FROM audit_events WHERE actor = 'old-node'")
        #expect(try total(h, a) == before)
    }

    /// Deep pages by id: `before` reads the events below an id, newest first, whatever the depth.
    @Test func pagesBelowAnEventID() throws {
        let h = try StoreFixture()
        let a = h.primary.organizationID
        try append(h, (1...30).map { Self.event(a, at: 1_000 + Int64($0) * 16 + 1, "e\($0)") })
        let all = try h.store.read { try h.store.auditEvents(organizationID: a, limit: 250, offset: 0) }.events
        let pivot = try #require(all.first { $0.action == "e10" })
        let below = try h.store.read { try h.store.auditEvents(organizationID: a, limit: 3, offset: 0, before: pivot.id) }
        #expect(below.events.map(\.action) == ["e9", "e8", "e7"])
        #expect(below.total == all.count)
    }

    /// A database from before the count (SQLite 24, PostgreSQL 20): the migration counts each organization's events.
    @Test func theMigrationCountsEachOrganizationsEvents() throws {
        let h = try StoreFixture()
        let a = h.primary.organizationID
        try append(h, (0..<4).map { Self.event(a, at: 1_000 + Int64($0) * 16 + 1) } + [Self.event(nil, at: 1_001)])
        let expected = try h.store.read { try h.store.auditEvents(organizationID: a, limit: 250, offset: 0) }.events.count
        if let p = h.store as? PostgresStore { _ = try p.write { try p.update("UPDATE organizations SET audit_count = 0", []) } }
        _ = try StoreTests().rewindMigrations(h.store, sqlite: 24, postgres: 20)
        _ = try (h.store as? SQLiteStore)?.migrate() ?? (h.store as? PostgresStore)?.migrate()
        #expect(try total(h, a) == expected && expected >= 4)
    }
}

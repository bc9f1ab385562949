import Common
import Foundation
import OAuth
import SQLite
import Synchronization

/// Upstream client records and the audit log (UpstreamStorage, AuditStorage).
extension SQLiteStore {
    // MARK: Upstream clients

    static let upstreamColumns = """
        sys_id, organization_id, name, provider, tenant_id, client_id, secret, secret_encrypted, description, cluster_redirect_urls,
        opswise_groups, scopes, version, created_at, updated_at
        """

    static func upstream(_ r: Row) -> UpstreamClient {
        func strings(_ i: Int) -> [String] { ((try? JSON.parse(r.string(i)))?.arrayValue ?? []).compactMap(\.stringValue) }
        let urls = ((try? JSON.parse(r.string(9)))?.arrayValue ?? []).map { (node: $0["clusterNode"]?.stringValue ?? "", url: $0["redirectUrl"]?.stringValue ?? "") }
        return UpstreamClient(sysID: r.string(0), organizationID: r.string(1), name: r.string(2), provider: r.string(3), tenantID: r.optionalString(4),
                              clientID: r.string(5), secret: r.blob(6), secretEncrypted: r.bool(7), description: r.optionalString(8),
                              clusterRedirectURLs: urls, opswiseGroups: strings(10), scopes: strings(11), version: Int(r.int(12)),
                              createdAt: r.int(13), updatedAt: r.int(14))
    }

    static func upstreamValues(_ u: UpstreamClient) -> [SQLValue] {
        let urls = JSON.array(u.clusterRedirectURLs.map { ["clusterNode": .string($0.node), "redirectUrl": .string($0.url)] })
        return [.text(u.sysID), .text(u.organizationID), .text(u.name), .text(u.provider), SQLValue(u.tenantID), .text(u.clientID), .blob(u.secret),
                SQLValue(u.secretEncrypted), SQLValue(u.description), .text(urls.text), .text(JSON(u.opswiseGroups).text), .text(JSON(u.scopes).text),
                SQLValue(u.version), .integer(u.createdAt), .integer(u.updatedAt)]
    }

    public func insertUpstream(_ u: UpstreamClient) throws {
        try exec("INSERT INTO upstream_clients(\(SQLiteStore.upstreamColumns)) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", SQLiteStore.upstreamValues(u))
    }

    public func updateUpstream(_ u: UpstreamClient) throws {
        var values = Array(SQLiteStore.upstreamValues(u).dropFirst(2))
        values.append(.text(u.sysID))
        try exec("""
            UPDATE upstream_clients SET name = ?, provider = ?, tenant_id = ?, client_id = ?, secret = ?, secret_encrypted = ?, description = ?,
              cluster_redirect_urls = ?, opswise_groups = ?, scopes = ?, version = ?, created_at = ?, updated_at = ? WHERE sys_id = ?
            """, values)
    }

    public func upstream(sysID: String) throws -> UpstreamClient? {
        try rows("SELECT \(SQLiteStore.upstreamColumns) FROM upstream_clients WHERE sys_id = ?", [.text(sysID)]).first.map(SQLiteStore.upstream)
    }

    public func upstream(organizationID: String, name: String) throws -> UpstreamClient? {
        try rows("SELECT \(SQLiteStore.upstreamColumns) FROM upstream_clients WHERE organization_id = ? AND name = ?",
                 [.text(organizationID), .text(name)]).first.map(SQLiteStore.upstream)
    }

    public func upstreams(organizationID: String) throws -> [UpstreamClient] {
        try rows("SELECT \(SQLiteStore.upstreamColumns) FROM upstream_clients WHERE organization_id = ? ORDER BY name",
                 [.text(organizationID)]).map(SQLiteStore.upstream)
    }

    public func upstreamsStoredInClear() throws -> [UpstreamClient] {
        try rows("SELECT \(SQLiteStore.upstreamColumns) FROM upstream_clients WHERE secret_encrypted = 0").map(SQLiteStore.upstream)
    }

    public func deleteUpstream(sysID: String) throws { try exec("DELETE FROM upstream_clients WHERE sys_id = ?", [.text(sysID)]) }

    // MARK: Audit

    public func appendAudit(_ e: AuditEvent) throws {
        try exec("INSERT INTO audit_events(organization_id, actor, action, target, surface, request_id, details, created_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                 [SQLValue(e.organizationID), .text(e.actor), .text(e.action), SQLValue(e.target), .text(e.surface), SQLValue(e.requestID),
                  .text(e.details.text), .integer(e.createdAt)])
    }

    public func auditEvents(organizationID: String, limit: Int, offset: Int) throws -> (events: [AuditEvent], total: Int) {
        let total = Int(try rows("SELECT count(*) FROM audit_events WHERE organization_id = ?", [.text(organizationID)]).first?.int(0) ?? 0)
        let events = try rows("""
            SELECT id, organization_id, actor, action, target, surface, request_id, details, created_at FROM audit_events
            WHERE organization_id = ? ORDER BY id DESC LIMIT ? OFFSET ?
            """, [.text(organizationID), SQLValue(limit), SQLValue(offset)]).map {
            AuditEvent(id: $0.int(0), organizationID: $0.optionalString(1), actor: $0.string(2), action: $0.string(3), target: $0.optionalString(4),
                       surface: $0.string(5), requestID: $0.optionalString(6), details: (try? JSON.parse($0.string(7))) ?? .object([]), createdAt: $0.int(8))
        }
        return (events, total)
    }
}

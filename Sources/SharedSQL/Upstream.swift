import Common
import OAuth

/// Row mappings both stores share: columns in one order, one decoding.
public enum SharedRows {
    public static let upstreamColumns = """
        sys_id, organization_id, name, provider, tenant_id, client_id, secret, secret_encrypted, description, cluster_redirect_urls,
        opswise_groups, scopes, version, created_at, updated_at
        """

    public static func upstream(_ r: some SQLRowValues) -> UpstreamClient {
        let urls = ((try? JSON.parse(r.string(9)))?.arrayValue ?? []).map { (node: $0["clusterNode"]?.stringValue ?? "", url: $0["redirectUrl"]?.stringValue ?? "") }
        return UpstreamClient(sysID: r.string(0), organizationID: r.string(1), name: r.string(2), provider: UpstreamProvider(rawValue: r.string(3)) ?? .azureAD /* written only from validated input */, tenantID: r.optionalString(4),
                              clientID: r.string(5), secret: r.blob(6), secretEncrypted: r.bool(7), description: r.optionalString(8),
                              clusterRedirectURLs: urls, opswiseGroups: r.strings(10), scopes: r.strings(11), version: Int(r.int(12)),
                              createdAt: r.int(13), updatedAt: r.int(14))
    }

    public static func upstreamValues(_ u: UpstreamClient) -> [SQLArgument] {
        let urls = JSON.array(u.clusterRedirectURLs.map { ["clusterNode": .string($0.node), "redirectUrl": .string($0.url)] })
        return [.text(u.sysID), .text(u.organizationID), .text(u.name), .text(u.provider.rawValue), SQLArgument(u.tenantID), .text(u.clientID), .bytes(u.secret),
                SQLArgument(flag: u.secretEncrypted), SQLArgument(u.description), .text(urls.text), .text(JSON(u.opswiseGroups).text), .text(JSON(u.scopes).text),
                SQLArgument(u.version), .int(u.createdAt), .int(u.updatedAt)]
    }
}

/// Upstream client records and the audit log (UpstreamStorage, AuditStorage), on both stores.
extension SQLStatementRunner {
    // MARK: Upstream clients

    public func insertUpstream(_ u: UpstreamClient) throws {
        try update("INSERT INTO upstream_clients(\(SharedRows.upstreamColumns)) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", SharedRows.upstreamValues(u))
    }

    public func updateUpstream(_ u: UpstreamClient, from version: Int) throws -> Bool {
        var values = Array(SharedRows.upstreamValues(u).dropFirst(2))
        values += [.text(u.organizationID), .text(u.sysID), .int(Int64(version))]
        return try update("""
            UPDATE upstream_clients SET name = ?, provider = ?, tenant_id = ?, client_id = ?, secret = ?, secret_encrypted = ?, description = ?,
              cluster_redirect_urls = ?, opswise_groups = ?, scopes = ?, version = ?, created_at = ?, updated_at = ?
            WHERE organization_id = ? AND sys_id = ? AND version = ?
            """, values) == 1
    }

    public func upstream(organizationID: String, sysID: String) throws -> UpstreamClient? {
        try query("SELECT \(SharedRows.upstreamColumns) FROM upstream_clients WHERE organization_id = ? AND sys_id = ?",
                  [.text(organizationID), .text(sysID)]).first.map(SharedRows.upstream)
    }

    public func upstream(organizationID: String, name: String) throws -> UpstreamClient? {
        try query("SELECT \(SharedRows.upstreamColumns) FROM upstream_clients WHERE organization_id = ? AND name = ?",
                 [.text(organizationID), .text(name)]).first.map(SharedRows.upstream)
    }

    public func upstreams(organizationID: String) throws -> [UpstreamClient] {
        try query("SELECT \(SharedRows.upstreamColumns) FROM upstream_clients WHERE organization_id = ? ORDER BY name",
                 [.text(organizationID)]).map(SharedRows.upstream)
    }

    public func upstreamsStoredInClear() throws -> [UpstreamClient] {
        try query("SELECT \(SharedRows.upstreamColumns) FROM upstream_clients WHERE secret_encrypted = 0").map(SharedRows.upstream)
    }

    /// False when there was none (deleted meanwhile by a racing request).
    @discardableResult
    public func deleteUpstream(organizationID: String, sysID: String) throws -> Bool {
        try update("DELETE FROM upstream_clients WHERE organization_id = ? AND sys_id = ?", [.text(organizationID), .text(sysID)]) == 1
    }

    // MARK: Audit

    /// An organization's events are counted on its row (`audit_count`, kept by triggers on `audit_events`), so a
    /// read of the log's total costs one row, not a count of every event (review, session 34: with two million
    /// events each read took 100-280 ms and sixteen in parallel held the token endpoint for seconds). About one
    /// write in sixteen also purges up to `ExpiredRows.batch` of the same organization's events (or of the events
    /// of none) older than `AuditLog.retentionMillis`, oldest first by id: only that organization's row is
    /// touched, which the write's own event holds already, so two organizations' writes never wait on each other.
    public func appendAudit(_ e: AuditEvent) throws {
        try blindUpdate("INSERT INTO audit_events(organization_id, actor, action, target, surface, request_id, details, created_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                 [SQLArgument(e.organizationID), .text(e.actor), .text(e.action), SQLArgument(e.target), .text(e.surface), SQLArgument(e.requestID),
                  .text(e.details.text), .int(e.createdAt)])
        if Self.purgesExpired(at: e.createdAt) { try purgeAudit(organizationID: e.organizationID, before: e.createdAt - AuditLog.retentionMillis) }
    }

    public func purgeAudit(organizationID: String?, before: Int64) throws {
        let scope = organizationID == nil ? "organization_id IS NULL" : "organization_id = ?"
        var arguments: [SQLArgument] = organizationID.map { [.text($0)] } ?? []
        arguments.append(.int(before))
        // The batch is the oldest events by id (the index's order), filtered by age: bounded work even when none is old.
        try blindUpdate("""
            DELETE FROM audit_events WHERE id IN (SELECT id FROM (SELECT id, created_at FROM audit_events WHERE \(scope) \
            ORDER BY id LIMIT \(ExpiredRows.batch)) oldest WHERE created_at < ?)
            """, arguments)
    }

    public func auditEvents(organizationID: String, limit: Int, offset: Int, before: Int64?) throws -> (events: [AuditEvent], total: Int) {
        let total = Int(try query("SELECT audit_count FROM organizations WHERE id = ?", [.text(organizationID)]).first?.int(0) ?? 0)
        let events = try query("""
            SELECT id, organization_id, actor, action, target, surface, request_id, details, created_at FROM audit_events
            WHERE organization_id = ? AND id < ? ORDER BY id DESC LIMIT ? OFFSET ?
            """, [.text(organizationID), .int(before ?? Int64.max), SQLArgument(limit), SQLArgument(offset)]).map {
            AuditEvent(id: $0.int(0), organizationID: $0.optionalString(1), actor: $0.string(2), action: $0.string(3), target: $0.optionalString(4),
                       surface: $0.string(5), requestID: $0.optionalString(6), details: (try? JSON.parse($0.string(7))) ?? .object([]), createdAt: $0.int(8))
        }
        return (events, total)
    }
}

import Common
import OAuth

/// Back-Channel Logout's sessions-to-clients record and delivery queue (BackchannelStorage), on both stores.
extension SQLStatementRunner {
    public func recordSessionClient(sid: String, clientID: String, userID: String, at: Int64, expiresAt: Int64) throws {
        try blindUpdate("""
            INSERT INTO session_clients(sid, client_id, user_id, created_at, expires_at) VALUES(?, ?, ?, ?, ?)
              ON CONFLICT(sid, client_id) DO NOTHING
            """, [.text(sid), .text(clientID), .text(userID), .int(at), .int(expiresAt)])
        // What expired sessions left is gone at the next sign-in to a client.
        try blindUpdate(ExpiredRows.sessionClients, ExpiredRows.arguments(before: at))
    }

    public func takeSessionClients(sid: String) throws -> [String] {
        let clients = try query("SELECT client_id FROM session_clients WHERE sid = ? ORDER BY created_at, client_id", [.text(sid)]).map { $0.string(0) }
        if !clients.isEmpty { try update("DELETE FROM session_clients WHERE sid = ?", [.text(sid)]) }
        return clients
    }

    public func takeSessions(userID: String, clientID: String) throws -> [String] {
        let sids = try query("SELECT sid FROM session_clients WHERE user_id = ? AND client_id = ? ORDER BY created_at, sid",
                             [.text(userID), .text(clientID)]).map { $0.string(0) }
        if !sids.isEmpty { try update("DELETE FROM session_clients WHERE user_id = ? AND client_id = ?", [.text(userID), .text(clientID)]) }
        return sids
    }

    public func enqueueLogout(_ d: LogoutDelivery, limitPerClient: Int, limitPerOrganization: Int) throws -> Bool {
        // Once per (client, user, session); nothing past the client's limit (it is not taking them anyway) or its
        // organization's (what a round reads stays bounded). Both counts read an index alone.
        try update("""
            INSERT INTO logout_deliveries(id, client_id, organization_id, subject, sid, attempts, next_attempt_at, created_at)
              SELECT ?, ?, ?, ?, ?, ?, ?, ?
              WHERE NOT EXISTS (SELECT 1 FROM logout_deliveries WHERE client_id = ? AND subject = ? AND sid IS NOT DISTINCT FROM ?)
                AND (SELECT COUNT(*) FROM logout_deliveries WHERE client_id = ?) < ?
                AND (SELECT COUNT(*) FROM logout_deliveries WHERE organization_id = ?) < ?
            """, [.text(d.id), .text(d.clientID), .text(d.organizationID), .text(d.subject), SQLArgument(d.sid), SQLArgument(d.attempts),
                  .int(d.nextAttemptAt), .int(d.createdAt), .text(d.clientID), .text(d.subject), SQLArgument(d.sid), .text(d.clientID),
                  SQLArgument(limitPerClient), .text(d.organizationID), SQLArgument(limitPerOrganization)]) == 1
    }

    public func dueLogouts(now: Int64, limit: Int, perClient: Int, perOrganization: Int) throws -> [LogoutDelivery] {
        // Each client's oldest `perClient`, then of those each organization's oldest `perOrganization`, then the
        // oldest of all: a round's reading is every due row, at most each organization's limit of them.
        try query("""
            SELECT id, client_id, organization_id, subject, sid, attempts, next_attempt_at, created_at FROM (
              SELECT per_client.*, ROW_NUMBER() OVER (PARTITION BY organization_id ORDER BY next_attempt_at, id) AS in_organization FROM (
                SELECT id, client_id, organization_id, subject, sid, attempts, next_attempt_at, created_at,
                       ROW_NUMBER() OVER (PARTITION BY client_id ORDER BY next_attempt_at, id) AS in_client
                  FROM logout_deliveries WHERE next_attempt_at <= ?
              ) per_client WHERE in_client <= ?
            ) shares WHERE in_organization <= ? ORDER BY next_attempt_at, id LIMIT ?
            """, [.int(now), SQLArgument(perClient), SQLArgument(perOrganization), SQLArgument(limit)]).map {
            LogoutDelivery(id: $0.string(0), clientID: $0.string(1), organizationID: $0.string(2), subject: $0.string(3), sid: $0.optionalString(4),
                           attempts: Int($0.int(5)), nextAttemptAt: $0.int(6), createdAt: $0.int(7))
        }
    }

    public func claimLogout(_ d: LogoutDelivery, nextAttemptAt: Int64) throws -> Bool {
        try update("UPDATE logout_deliveries SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ? AND attempts = ?",
                   [.int(nextAttemptAt), .text(d.id), SQLArgument(d.attempts)]) == 1
    }

    public func deleteLogout(id: String) throws {
        try update("DELETE FROM logout_deliveries WHERE id = ?", [.text(id)])
    }
}

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

    public func enqueueLogout(_ d: LogoutDelivery, limitPerClient: Int, limitPerShare: Int, reservedPerClient: Int) throws -> LogoutQueueing {
        // Once per (client, user, session); nothing past the client's limit (it is not taking them anyway) or,
        // beyond the client's reserve, its share's (what a read of the due ones takes stays bounded). Each count reads an index.
        let queued = try update("""
            INSERT INTO logout_deliveries(id, client_id, share_key, subject, sid, attempts, next_attempt_at, created_at)
              SELECT ?, ?, ?, ?, ?, ?, ?, ?
              WHERE NOT EXISTS (SELECT 1 FROM logout_deliveries WHERE client_id = ? AND subject = ? AND sid IS NOT DISTINCT FROM ?)
                AND (SELECT COUNT(*) FROM logout_deliveries WHERE client_id = ?) < ?
                AND ((SELECT COUNT(*) FROM logout_deliveries WHERE share_key = ?) < ?
                     OR (SELECT COUNT(*) FROM logout_deliveries WHERE client_id = ?) < ?)
            """, [.text(d.id), .text(d.clientID), .text(d.share), .text(d.subject), SQLArgument(d.sid), SQLArgument(d.attempts),
                  .int(d.nextAttemptAt), .int(d.createdAt), .text(d.clientID), .text(d.subject), SQLArgument(d.sid), .text(d.clientID),
                  SQLArgument(limitPerClient), .text(d.share), SQLArgument(limitPerShare), .text(d.clientID), SQLArgument(reservedPerClient)]) == 1
        if queued { return .queued }
        // Not queued: the same one waits already, or a queue is full (told apart only then).
        let waiting = try query("SELECT 1 FROM logout_deliveries WHERE client_id = ? AND subject = ? AND sid IS NOT DISTINCT FROM ?",
                                [.text(d.clientID), .text(d.subject), SQLArgument(d.sid)])
        return waiting.isEmpty ? .full : .alreadyQueued
    }

    public func dueLogouts(now: Int64, limit: Int, perClient: Int, perShare: Int) throws -> [LogoutDelivery] {
        // Each client's oldest `perClient`, then of those each share's oldest `perShare`; then every share's
        // first, oldest first, before any share's second. It reads every due row: at most each share's limit.
        try query("""
            SELECT id, client_id, share_key, subject, sid, attempts, next_attempt_at, created_at FROM (
              SELECT per_client.*, ROW_NUMBER() OVER (PARTITION BY share_key ORDER BY next_attempt_at, id) AS in_share FROM (
                SELECT id, client_id, share_key, subject, sid, attempts, next_attempt_at, created_at,
                       ROW_NUMBER() OVER (PARTITION BY client_id ORDER BY next_attempt_at, id) AS in_client
                  FROM logout_deliveries WHERE next_attempt_at <= ?
              ) per_client WHERE in_client <= ?
            ) shares WHERE in_share <= ? ORDER BY in_share, next_attempt_at, id LIMIT ?
            """, [.int(now), SQLArgument(perClient), SQLArgument(perShare), SQLArgument(limit)]).map {
            LogoutDelivery(id: $0.string(0), clientID: $0.string(1), share: $0.string(2), subject: $0.string(3), sid: $0.optionalString(4),
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

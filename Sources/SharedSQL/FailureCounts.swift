import Common
import OAuth

/// Failed credential checks counted for every node (FailureCountStorage), on both stores.
extension SQLStatementRunner {
    public func addFailures(_ counts: [String: Int], now: Int64, windowMillis: Int64) throws -> [String: (start: Int64, count: Int)] {
        // Windows ended a window ago: no node (its clock a little off) is adding to them any more.
        try blindUpdate(ExpiredRows.failureCounts, ExpiredRows.arguments(before: now - windowMillis))
        // In one order on every node, so that two nodes adding to the same keys never wait on each other's rows.
        let keys = counts.keys.sorted()
        for key in keys {
            try blindUpdate("""
                INSERT INTO failure_counts(key_hash, window_start, count, expires_at) VALUES(?, ?, ?, ?)
                ON CONFLICT (key_hash) DO UPDATE SET
                  window_start = CASE WHEN failure_counts.expires_at > excluded.window_start THEN failure_counts.window_start
                                      ELSE excluded.window_start END,
                  count = CASE WHEN failure_counts.expires_at > excluded.window_start THEN failure_counts.count + excluded.count
                               ELSE excluded.count END,
                  expires_at = CASE WHEN failure_counts.expires_at > excluded.window_start THEN failure_counts.expires_at
                                    ELSE excluded.expires_at END
                """, [.text(key), .int(now), SQLArgument(counts[key] ?? 0), .int(now + windowMillis)])
        }
        var totals: [String: (start: Int64, count: Int)] = [:]
        for chunk in stride(from: 0, to: keys.count, by: 32).map({ keys[$0..<min($0 + 32, keys.count)] }) {
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ", ")
            for row in try query("SELECT key_hash, window_start, count FROM failure_counts WHERE key_hash IN (\(marks))", chunk.map { .text($0) }) {
                totals[row.string(0)] = (row.int(1), Int(row.int(2)))
            }
        }
        return totals
    }
}

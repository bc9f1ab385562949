import Synchronization

/// What every connection of this process has done, for a node's metrics
/// (issue 11: operating several nodes): statements sent, connections made,
/// lost and refused, transactions retried. Relaxed atomics: a counter per
/// round trip, no lock.
public enum PGCounters {
    static let roundTrips = Atomic<Int>(0)
    static let connects = Atomic<Int>(0)
    static let failures = Atomic<Int>(0)
    static let refused = Atomic<Int>(0)
    static let retries = Atomic<Int>(0)
    static let cancels = Atomic<Int>(0)

    /// A transaction run again after a serialization failure or deadlock.
    public static func countRetry() { retries.add(1, ordering: .relaxed) }

    public static var roundTripsTotal: Int { roundTrips.load(ordering: .relaxed) }
    public static var connectsTotal: Int { connects.load(ordering: .relaxed) }
    public static var connectionFailuresTotal: Int { failures.load(ordering: .relaxed) }
    public static var connectFailuresTotal: Int { refused.load(ordering: .relaxed) }
    public static var retriesTotal: Int { retries.load(ordering: .relaxed) }
    /// Statements the server was asked to cancel when they outlasted the client's deadline.
    public static var cancelsTotal: Int { cancels.load(ordering: .relaxed) }
}

/// Why a storage operation failed, in terms the endpoints can answer with.
public enum StoreError: Error, Equatable, CustomStringConvertible {
    /// The database stayed locked past the busy timeout: answer 503 + Retry-After.
    case busy
    /// A uniqueness or foreign-key rule refused the write.
    case conflict(String)
    /// The database server cannot be reached (PostgreSQL down, restarting,
    /// refusing the credentials): answered like `busy` (503 + Retry-After);
    /// the cause (libpq's first line, never a password) is for the logs and
    /// the CLI.
    case unavailable(String)
    /// The database is there but cannot do the work now: its disk full, an
    /// I/O error, a read-only file system or server, out of memory or
    /// connections. Answered like `busy` (503 + Retry-After): what was
    /// asked is not done, and may succeed once the operator (or the
    /// database) has cleared the cause, which the log names.
    case fault(String)
    /// A write that had waited found nobody awaiting its request's answer
    /// any more (nginx had closed the connection): it was rolled back rather
    /// than committed unseen. A refresh token rotated that way would have
    /// been lost to its client, whose retry with the old one then ends the
    /// grant as a reuse (storage-fault review, session 33).
    case abandoned
    /// A text value holds a NUL character: PostgreSQL's text cannot, so
    /// neither store writes one (a read with one matches no row, on both).
    /// The caller sent it: answered 400.
    case invalidText
    /// The database's schema is newer than the migrations this binary holds:
    /// a newer latchkey migrated it. This one neither serves nor changes it
    /// (its code would write rows without what the newer schema relies on).
    case schemaNewer(applied: Int, known: Int)
    /// A write was asked for inside a read transaction: a bug in the caller,
    /// answered 500 for that request alone (it stopped the process, every
    /// thread with it, when it was a precondition: review, session 32).
    case writeInsideRead

    public var description: String {
        switch self {
        case .busy: return "the database is busy"
        case .invalidText: return "a text value holds a NUL character"
        case let .conflict(what): return "a write conflicts with existing data (\(what))"
        case let .unavailable(cause): return "the database cannot be reached: \(cause)"
        case let .fault(cause): return "the database cannot do the work now: \(cause)"
        case .abandoned: return "the write waited and its request was given up (the connection closed): rolled back"
        case let .schemaNewer(applied, known):
            return "the database's schema is version \(applied), newer than this latchkey's \(known): run the latchkey that migrated it, or a newer one"
        case .writeInsideRead: return "a write was requested inside a read transaction"
        }
    }

    /// The transient cases by name (the metrics' label); nil for the others.
    public var refusalCause: String? {
        switch self {
        case .busy: return "busy"
        case .unavailable: return "unavailable"
        case .fault: return "fault"
        case .abandoned: return "abandoned"
        case .conflict, .invalidText, .schemaNewer, .writeInsideRead: return nil
        }
    }

    /// `busy`, `unavailable` or `fault`: the request may succeed if retried shortly.
    public var isTransient: Bool {
        switch self {
        case .busy, .unavailable, .fault: return true
        case .abandoned, .conflict, .invalidText, .schemaNewer, .writeInsideRead: return false
        }
    }
}

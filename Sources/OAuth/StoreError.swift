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
        case let .schemaNewer(applied, known):
            return "the database's schema is version \(applied), newer than this latchkey's \(known): run the latchkey that migrated it, or a newer one"
        case .writeInsideRead: return "a write was requested inside a read transaction"
        }
    }

    /// `busy` or `unavailable`: the request may succeed if retried shortly.
    public var isTransient: Bool {
        switch self {
        case .busy, .unavailable: return true
        case .conflict, .invalidText, .schemaNewer, .writeInsideRead: return false
        }
    }
}

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

    public var description: String {
        switch self {
        case .busy: return "the database is busy"
        case .invalidText: return "a text value holds a NUL character"
        case let .conflict(what): return "a write conflicts with existing data (\(what))"
        case let .unavailable(cause): return "the database cannot be reached: \(cause)"
        }
    }

    /// `busy` or `unavailable`: the request may succeed if retried shortly.
    public var isTransient: Bool {
        switch self {
        case .busy, .unavailable: return true
        case .conflict, .invalidText: return false
        }
    }
}

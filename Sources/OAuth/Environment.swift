import Common
import Cryptography

/// Everything a request may depend on besides its own input: the issuer,
/// the clock and the random source (closures, so tests fix them), and the
/// server's keys. Immutable and shared by every worker thread.
public struct Environment: Sendable {
    /// The issuer identifier (RFC 8414 §2): an https (or local http) origin, no trailing slash.
    public var issuer: String
    /// Epoch milliseconds.
    public var now: @Sendable () -> Int64
    public var random: @Sendable (Int) -> [UInt8]
    /// Key-encryption key for private material at rest (32 bytes), if configured.
    public var kek: [UInt8]?
    /// When true, a confidential client may authenticate with either
    /// client_secret_basic or client_secret_post, whatever it registered.
    public var acceptAnySecretMethod: Bool

    public init(issuer: String, now: @escaping @Sendable () -> Int64, random: @escaping @Sendable (Int) -> [UInt8] = SecureRandom.bytes,
                kek: [UInt8]? = nil, acceptAnySecretMethod: Bool = false) {
        self.issuer = issuer
        self.now = now
        self.random = random
        self.kek = kek
        self.acceptAnySecretMethod = acceptAnySecretMethod
    }

    public var nowSeconds: Int64 { now() / 1000 }

    /// `count` characters of lowercase base32, uniformly random.
    public func randomID(_ count: Int) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)
        return String(decoding: random(count).map { alphabet[Int($0 & 31)] }, as: UTF8.self)
    }

    /// An opaque token: `prefix` + base64url of `bytes` random bytes.
    public func randomToken(prefix: String = "", bytes: Int = 32) -> String {
        prefix + Base64.urlEncode(random(bytes))
    }
}

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

    public var description: String {
        switch self {
        case .busy: return "the database is busy"
        case let .conflict(what): return "a write conflicts with existing data (\(what))"
        case let .unavailable(cause): return "the database cannot be reached: \(cause)"
        }
    }

    /// `busy` or `unavailable`: the request may succeed if retried shortly.
    public var isTransient: Bool {
        switch self {
        case .busy, .unavailable: return true
        case .conflict: return false
        }
    }
}

import Common
import Cryptography

/// Sign-in sessions for the browser pages (SPEC 5.1). The cookie holds a
/// random token; the database holds its SHA-256. The CSRF token is a second
/// random value, sent back by the pages in `X-CSRF-Token`.
public struct SessionService {
    public static let lifetimeMillis: Int64 = 12 * 3_600_000
    /// A real scrypt hash verified when the username is unknown, so both
    /// failures take the same time.
    static let decoyHash = PasswordHasher.hash("latchkey-decoy-password")

    let env: Environment
    let store: Store

    public init(env: Environment, store: Store) {
        self.env = env
        self.store = store
    }

    public static func hash(_ token: String) -> String { Base64.urlEncode(Digest.sha256(token)) }

    public struct Started: Sendable {
        public var token: String
        public var csrf: String
        public var user: User
    }

    /// Signs in; unknown user and wrong password are the same `nil`.
    public func login(username: String, password: String) throws -> Started? {
        let user = try store.read { try store.user(username: username) }
        guard let user, PasswordHasher.verify(password, encoded: user.passwordHash) else {
            if user == nil { _ = PasswordHasher.verify(password, encoded: SessionService.decoyHash) }
            return nil
        }
        let token = env.randomToken(bytes: 32)
        let csrf = env.randomToken(bytes: 24)
        let now = env.now()
        try store.write {
            try store.insertSession(SessionRecord(idHash: SessionService.hash(token), userID: user.id, csrf: csrf, authTime: now / 1000,
                                                  createdAt: now, expiresAt: now + SessionService.lifetimeMillis))
        }
        return Started(token: token, csrf: csrf, user: user)
    }

    /// The session and user behind a cookie value, if still valid.
    public func current(_ token: String?) throws -> (session: SessionRecord, user: User)? {
        guard let token, !token.isEmpty, token.utf8.count <= 128 else { return nil }
        return try store.read {
            guard let session = try store.session(idHash: SessionService.hash(token)), session.expiresAt > env.now(),
                  let user = try store.user(id: session.userID) else { return nil }
            return (session, user)
        }
    }

    public func logout(_ token: String) throws {
        try store.write { try store.deleteSession(idHash: SessionService.hash(token)) }
    }

    /// Double-submit check: the header must equal the session's CSRF token.
    public static func csrfMatches(header: String?, session: SessionRecord) -> Bool {
        guard let header, !header.isEmpty else { return false }
        return Digest.constantTimeEqual(Array(header.utf8), Array(session.csrf.utf8))
    }
}

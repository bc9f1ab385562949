import Common
import Cryptography

/// Sign-in sessions for the browser pages (SPEC 5.1). The cookie holds a
/// random token; the database holds its SHA-256. The CSRF token is a second
/// random value, sent back by the pages in `X-CSRF-Token`; the database holds
/// only its SHA-256 too (SPEC 7.1).
public struct SessionService {
    public static let lifetimeMillis: Int64 = 12 * 3_600_000
    /// A real scrypt hash verified when the username is unknown, so both
    /// failures take the same time.
    static let decoyHash = PasswordHasher.hash("latchkey-decoy-password")

    /// Live sessions one user may hold: a sign-in beyond them ends the
    /// oldest (as a logout would), so repeated sign-ins with a user's own
    /// password cannot pile up rows for twelve hours each.
    public static let sessionsPerUser = 100

    let env: Environment
    let store: Store
    let sessionsPerUser: Int

    public init(env: Environment, store: Store, sessionsPerUser: Int = SessionService.sessionsPerUser) {
        self.env = env
        self.store = store
        self.sessionsPerUser = sessionsPerUser
    }

    public static func hash(_ token: String) -> String { Base64.urlEncode(Digest.sha256(token)) }

    public struct Started: Sendable {
        public var token: String
        public var csrf: String
        public var user: User
    }

    /// Signs in; unknown user and wrong password are the same `nil`. With
    /// `guards` (SPEC 7.1) the hash runs on the slow-hash pool (throws
    /// `SlowHashesBusy` when it is full) after the failure limits of the
    /// address and the username (throws `TooManyFailures` past them), and a
    /// failure is counted against both; a password verified for the user
    /// before is remembered (`VerifiedSecretCache`), so one account signing
    /// in again and again with its own password costs one hash, not one per
    /// sign-in, and cannot keep the pool from everyone else (review, session 26).
    /// `replacing`: the session the browser had (any user's), which ends as a logout would in the same write.
    public func login(username: String, password: String, guards: AbuseGuards? = nil, address: String = "", replacing previous: String? = nil) throws -> Started? {
        let user = try store.read { try store.user(username: username) }
        let account = "user:" + username
        let keys = FailureLimiter.keys(account: account, address: address)
        let now = env.now()
        try guards?.checkAttempt(account: account, address: address, now: now)
        let hash = user?.passwordHash ?? SessionService.decoyHash
        let remembered = user.flatMap { user in guards.map { $0.secrets.signInKey(userID: user.id, passwordHash: hash, password: password) } }
        let verified: Bool
        if let guards, let remembered, guards.secrets.contains(remembered) {
            verified = true
        } else {
            do {
                verified = try guards.map { try $0.pool.run { PasswordHasher.verify(password, encoded: hash) } }
                    ?? PasswordHasher.verify(password, encoded: hash)
            } catch let busy as SlowHashesBusy {
                // Turned away unverified counts as a failure (as for clients): else, with the pool kept full, wrong
                // guesses (503) would cost nothing and a remembered right one would still sign in.
                guards?.failures.recordFailure(keys, now: now)
                throw busy
            }
            if verified, let guards, let remembered { guards.secrets.insert(remembered) }
        }
        guard let user, verified else {
            guards?.failures.recordFailure(keys, now: now)
            return nil
        }
        return try start(user, now: now, replacing: previous)
    }

    /// A session for `user`, whose password hash (read before it was
    /// verified) is still theirs: a password changed meanwhile (`latchkey
    /// user password`, which ends every session) signs in no more. The user's
    /// row is held until the session is in (PostgreSQL: `FOR NO KEY UPDATE`), so a
    /// change either comes first or waits for this sign-in and ends its session, and another sign-in of the
    /// user waits too and counts this session towards the limit.
    /// Past `sessionsPerUser`, the user's oldest sessions end with it, each as its logout would, after the one it
    /// replaces (so a browser signing in again at the limit ends no other session: review of the change, session 29).
    func start(_ user: User, now: Int64, replacing previous: String? = nil) throws -> Started? {
        let token = env.randomToken(bytes: 32)
        let csrf = env.randomToken(bytes: 24)
        let idHash = SessionService.hash(token)
        let started = try store.write {
            guard try store.holdPasswordHash(userID: user.id) == user.passwordHash else { return false }
            if let previous, previous.utf8.count <= 128 { try end(idHash: SessionService.hash(previous)) }
            try store.insertSession(SessionRecord(idHash: idHash, userID: user.id, csrf: SessionService.hash(csrf), authTime: now / 1000,
                                                  createdAt: now, expiresAt: now + SessionService.lifetimeMillis))
            for sid in try store.takeSessions(userID: user.id, beyondNewest: sessionsPerUser, besides: idHash) {
                try BackchannelLogout.sessionEnded(sid: sid, userID: user.id, store: store, env: env)
            }
            return true
        }
        return started ? Started(token: token, csrf: csrf, user: user) : nil
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

    /// Ends the session: its row, the refresh tokens bound to it, and a
    /// back-channel logout queued for each client it signed into.
    public func logout(_ token: String) throws {
        guard token.utf8.count <= 128 else { return }
        try store.write { try end(idHash: SessionService.hash(token)) }
    }

    /// Inside a write: ends a session, if it is still there, as `logout` does.
    private func end(idHash: String) throws {
        guard let session = try store.session(idHash: idHash) else { return }
        try store.deleteSession(idHash: idHash)
        try BackchannelLogout.sessionEnded(sid: session.sid, userID: session.userID, store: store, env: env)
    }

    /// Double-submit check: the header must be the session's CSRF token
    /// (whose hash the session holds).
    public static func csrfMatches(header: String?, session: SessionRecord) -> Bool {
        guard let header, !header.isEmpty, header.utf8.count <= 128 else { return false }
        return Digest.constantTimeEqual(Array(hash(header).utf8), Array(session.csrf.utf8))
    }
}

import Common

/// How a client presented itself at the token, introspection or revocation
/// endpoint (RFC 6749 §2.3.1).
public enum PresentedCredentials: Equatable, Sendable {
    case basic(clientID: String, secret: String)
    case post(clientID: String, secret: String)
    case publicClient(clientID: String)
    /// `client_assertion` (RFC 7523 §2.2), with `client_id` when the client sent it.
    case assertion(clientID: String?, assertion: String)
    case none

    public var usedBasic: Bool { if case .basic = self { return true } else { return false } }
    /// Whether authenticating writes (an assertion's `jti` is recorded): then
    /// it happens in a transaction of its own, never inside a read.
    public var writesOnUse: Bool { if case .assertion = self { return true } else { return false } }
}

/// Authenticates OAuth clients (SPEC 4.3).
public struct ClientAuthenticator {
    let env: Environment
    let store: any ClientStorage & CredentialStorage
    let hasher: SecretHasher
    let guards: AbuseGuards?
    /// The caller's address, for the failure limits.
    let address: String
    /// The receiving endpoint's URL (token, introspection, revocation or PAR).
    let endpoint: String?

    /// What an assertion's `aud` may name: the issuer, the token and PAR
    /// endpoints (RFC 9126 §2's list) and the endpoint receiving it (SPEC
    /// 10.2); no other URL of this server.
    var assertionAudiences: [String] {
        [env.issuer, env.issuer + "/oauth2/token", env.issuer + "/oauth2/par"] + (endpoint.map { [$0] } ?? [])
    }

    public init(env: Environment, store: any ClientStorage & CredentialStorage, hasher: SecretHasher, guards: AbuseGuards?, address: String = "",
                endpoint: String? = nil) {
        self.env = env
        self.store = store
        self.hasher = hasher
        self.guards = guards
        self.address = address
        self.endpoint = endpoint
    }

    /// Returns the authenticated client, or throws `invalid_client` (401,
    /// with a Basic challenge when Basic was used). Unknown client, wrong
    /// secret, wrong method and disabled client all look the same.
    ///
    /// SPEC 7.1: failures are counted per address and per client; past the
    /// limit a failing attempt, or one that would need a slow hash, throws
    /// `TooManyFailures`; a full slow-hash pool `SlowHashesBusy` (every
    /// surface renders them: 429 and 503 with `Retry-After`).
    public func authenticate(_ credentials: PresentedCredentials, allowPublic: Bool, enforceMethod: Bool = true) throws -> Client {
        let basic = credentials.usedBasic
        switch credentials {
        case .none:
            throw OAuthError.invalidClient("Client authentication is required.", basic: true)
        case let .publicClient(clientID):
            guard allowPublic, let client = try store.client(clientID), client.isPublic, client.enabled else {
                throw OAuthError.invalidClient(detail: "public client rejected")
            }
            return client
        case let .basic(clientID, secret), let .post(clientID, secret):
            let now = env.now()
            let found = try store.client(clientID)
            let secrets = found == nil ? [] : try store.secrets(clientID: clientID)
            // The usual case first: a generated secret proven right by its HMAC
            // never meets a limit (256 random bits are not guessed). A password
            // verified before (remembered) does meet them: past its limit, a
            // guessing address would otherwise learn its right guess from the
            // one 200 among its 429s (review, session 26).
            let cheap = found != nil && hasher.matchesGeneratedSecret(secret, against: secrets, now: now)
            // Ten failures on this client from this address (or the client's
            // overall limit, once this address failed on it too, or the
            // address's own limit): refused before any verification, the same
            // for unknown ids (no oracle).
            if !cheap { try guards?.checkAttempt(account: clientID, address: address, now: now) }
            guard let client = found else {
                // Spend comparable time on unknown ids so they cannot be told apart.
                _ = hasher.hmacHash(secret)
                try recordFailure(clientID, now: now)
                throw OAuthError.invalidClient(basic: basic, detail: "unknown client")
            }
            let ok: Bool
            do {
                ok = try cheap || hasher.verify(secret, against: secrets, now: now, guards: guards, limitKeys: [.address(address)])
            } catch let busy as SlowHashesBusy {
                // Turned away unverified counts as a failure: while the pool is kept full, wrong guesses (503)
                // would otherwise cost nothing and a remembered right one would still answer 200.
                try recordFailure(clientID, now: now)
                throw busy
            }
            guard ok, client.authMethod.usesSecret, !client.fapi2, client.enabled else {
                try recordFailure(clientID, now: now)
                throw OAuthError.invalidClient(basic: basic, detail: "bad secret or disabled client")
            }
            if enforceMethod && !env.acceptAnySecretMethod {
                let method: ClientAuthMethod = basic ? .clientSecretBasic : .clientSecretPost
                guard client.authMethod == method else {
                    throw OAuthError.invalidClient(basic: basic, detail: "client registered for \(client.authMethod.rawValue)")
                }
            }
            return client
        case let .assertion(clientID, assertion):
            return try authenticate(assertion: assertion, clientID: clientID)
        }
    }

    /// `authenticate` from outside any transaction: an assertion (its jti is
    /// written) in a transaction of its own, anything else in one read.
    public func authenticateAlone(_ credentials: PresentedCredentials, allowPublic: Bool) throws -> Client {
        credentials.writesOnUse ? try authenticate(credentials, allowPublic: allowPublic)
            : try store.read { try authenticate(credentials, allowPublic: allowPublic) }
    }

    /// private_key_jwt: the assertion verified with the client's keys, then
    /// its `jti` recorded (a replay is refused), in a write of its own.
    ///
    /// The failure limits meet only an assertion that fails, as they meet only
    /// a secret that is not a right generated one: a signature under the
    /// client's key is not guessed, and a check is one verification (under the
    /// client's registered key, not a slow hash). Checked before the
    /// signature, they made a client's right assertions 429 once others had
    /// failed on it, or on anything, from its address (a shared NAT or cloud
    /// egress: attacker review, session 28).
    func authenticate(assertion: String, clientID: String?) throws -> Client {
        let now = env.now()
        guard let (parsed, subject) = ClientAssertion.parse(assertion), clientID == nil || clientID == subject else {
            throw OAuthError.invalidClient(detail: "client_assertion malformed or naming another client")
        }
        // The client from the memo (validated once per request); the jti is written after, in a write of its own.
        guard let client = try store.read({ try store.client(subject) }), client.enabled, client.authMethod == .privateKeyJWT,
              let (jti, expiresAt) = ClientAssertion.verify(parsed, client: client,
                                                                       audiences: client.fapi2 ? [env.issuer] : assertionAudiences, now: now)
        else { throw try assertionFailed(subject, "client_assertion rejected", now: now) }
        guard try store.writeOne({ try store.useAssertion(clientID: client.clientID, jti: jti, expiresAt: expiresAt, now: now) }) else {
            throw try assertionFailed(subject, "client_assertion replayed", now: now)
        }
        return client
    }

    /// A failed assertion: 429 past the limits on `subject` from this address (or the address's own), else counted and 401.
    private func assertionFailed(_ subject: String, _ detail: String, now: Int64) throws -> Error {
        try guards?.checkAttempt(account: subject, address: address, now: now)
        try recordFailure(subject, now: now)
        return OAuthError.invalidClient(detail: detail)
    }

    /// Counts a failure on `clientID` from this address; when that puts the
    /// address past its limit, the answer is 429 instead of 401 (SPEC 7.1).
    func recordFailure(_ clientID: String, now: Int64) throws {
        guard let guards else { return }
        guards.failures.recordFailure(FailureLimiter.keys(account: clientID, address: address), now: now)
        if let wait = guards.failures.retryAfter(.address(address), now: now) { throw TooManyFailures(retryAfterSeconds: wait) }
    }
}

import Common
import Cryptography

/// A device authorization (RFC 8628 §3.2) as stored: the device code and
/// the user code both hashed, the polling pace, and the user's answer.
public struct DeviceCodeRecord: Sendable, Equatable {
    public enum Status: String, Sendable {
        /// Waiting for the user.
        case pending
        case approved
        /// The user denied it, or disconnected the client before the device redeemed it.
        case denied
        /// The device got its tokens (once).
        case redeemed
    }

    /// How long an expired code is kept, to answer `expired_token` rather than `invalid_grant`.
    public static let keptAfterExpiryMillis: Int64 = 10 * 60_000

    public var deviceCodeHash: String
    public var userCodeHash: String
    public var clientID: String
    /// What the device asked for; once approved, what the user granted.
    public var scope: [String]
    public var createdAt: Int64
    public var expiresAt: Int64
    /// Seconds the device waits between polls (§3.5: grows by 5 with each slow_down).
    public var interval: Int
    public var lastPolledAt: Int64?
    public var status: Status
    public var userID: String?
    public var authTime: Int64?
    public var familyID: String?
    /// The address (an IPv6 one by its /64) the device authorization came from.
    public var requestedFrom: String
    /// Redeemed with a DPoP proof (RFC 9449): the key its tokens are bound to.
    public var dpopJKT: String?

    public init(deviceCodeHash: String, userCodeHash: String, clientID: String, scope: [String], createdAt: Int64, expiresAt: Int64,
                interval: Int, lastPolledAt: Int64? = nil, status: Status = .pending, userID: String? = nil, authTime: Int64? = nil,
                familyID: String? = nil, requestedFrom: String = "", dpopJKT: String? = nil) {
        self.deviceCodeHash = deviceCodeHash
        self.userCodeHash = userCodeHash
        self.clientID = clientID
        self.scope = scope
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.interval = interval
        self.lastPolledAt = lastPolledAt
        self.status = status
        self.userID = userID
        self.authTime = authTime
        self.familyID = familyID
        self.requestedFrom = requestedFrom
        self.dpopJKT = dpopJKT
    }
}

/// The device authorization grant's two sides that are not the token
/// endpoint (RFC 8628): the device authorization endpoint (§3.1, §3.2),
/// and the user's side, where a signed-in user types the user code and
/// answers on the consent screen (§3.3).
///
/// User codes are 8 letters from RFC 8628 §6.1's 20 consonants (no vowels,
/// so no words; about 34.6 bits), shown as `BCDF-GHJK`, read back with case,
/// dashes and spaces ignored. Entering one is bounded by the failure limiter
/// (10 codes a minute per account and address, right or wrong) on top of
/// nginx's per-address limit; a device code is 256 random bits.
///
/// What an anonymous caller can make the server keep: a public client's id
/// is all a device authorization takes, so live codes are bounded per client
/// (10,000) and per client and address (50; IPv6 by its /64): filling a
/// client's allowance, which would stop its devices from signing in, takes
/// two hundred addresses, and nginx allows each one a second.
public struct DeviceAuthorizationService {
    public static let lifetimeSeconds = 600
    public static let intervalSeconds = 5
    /// SPEC 7.1: at most this many unexpired device codes per client, whoever asks (a public client needs no secret)...
    public var liveCodesPerClient = 10_000
    /// ...and per client and address.
    public var liveCodesPerAddress = 50
    static let alphabet = Array("BCDFGHJKLMNPQRSTVWXZ".utf8)
    static let userCodeLength = 8

    let env: Environment
    let store: Store

    public init(env: Environment, store: Store) {
        self.env = env
        self.store = store
    }

    public struct Started: Sendable, Equatable {
        public var deviceCode: String
        public var userCode: String
        public var expiresIn: Int
        public var interval: Int
    }

    /// Whether the client may use the grant now: enabled, registered for it,
    /// and not held to FAPI 2.0, which knows the code flow only (with PAR).
    static func eligible(_ client: Client) -> Bool { client.enabled && client.grantTypes.contains(.deviceCode) && !client.fapi2 }

    /// §3.1, for an authenticated client that registered the grant: the
    /// scope checked as at the authorization endpoint (RFC 6749 §3.3; only
    /// scopes the client registered, never a management scope; without one,
    /// every scope the client may ask a user for), then a new device code
    /// and user code. `address`: the caller's, which bounds its live codes.
    public func start(client: Client, scope raw: String?, address: String, hasher: SecretHasher) throws -> Started {
        guard DeviceAuthorizationService.eligible(client) else {
            throw OAuthError("unauthorized_client", status: 400, "The client may not use the device authorization grant.")
        }
        let scope: [String]
        if let raw {
            guard let parsed = Scopes.parse(raw), !parsed.isEmpty else { throw OAuthError("invalid_scope", status: 400, "scope is malformed.") }
            guard parsed.allSatisfy({ AuthorizationChecks.isRequestable($0, by: client) }) else {
                throw OAuthError("invalid_scope", status: 400, "The client may not request this scope.")
            }
            scope = parsed
        } else {
            scope = client.scope.filter { AuthorizationChecks.isRequestable($0, by: client) }
            guard !scope.isEmpty else { throw OAuthError("invalid_scope", status: 400, "scope is required: the client has no scope to ask a user for.") }
        }
        let deviceCode = env.randomToken(prefix: "lkd_", bytes: 32)
        let now = env.now()
        let from = FailureLimiter.addressKey(address)
        func checkAllowance() throws {
            let live = try store.liveDeviceCodes(clientID: client.clientID, address: from, now: now)
            guard live.client < liveCodesPerClient, live.address < liveCodesPerAddress else {
                // Until the first of this address's codes expires (or a minute when the client's allowance is what is spent).
                let wait = live.address >= liveCodesPerAddress ? live.firstExpiry.map { Int(($0 - now + 999) / 1000) } ?? 60 : 60
                throw OAuthError("rate_limited", status: 429, "Too many device authorizations of this client are in progress; retry after Retry-After seconds.",
                                 headers: [("Retry-After", String(max(1, wait)))])
            }
        }
        // Checked in a read first: callers past the allowance (a flood, once it is spent) are refused without waiting
        // for the writer or holding it up (review, session 25: the count, under the writer, stalled every write).
        // The write checks again: on SQLite (one writer) the allowance holds exactly however many race; on PostgreSQL
        // (read committed) writers in flight together may pass it by their number.
        try store.read { try checkAllowance() }
        return try store.write {
            try checkAllowance()
            // A clash with a user code still kept is rare (a few thousand kept out of 20^8): draw again.
            for _ in 0..<5 {
                let userCode = newUserCode()
                let record = DeviceCodeRecord(deviceCodeHash: AuthorizationService.hash(deviceCode),
                                              userCodeHash: hasher.userCodeHash(userCode), clientID: client.clientID, scope: scope,
                                              createdAt: now, expiresAt: now + Int64(DeviceAuthorizationService.lifetimeSeconds) * 1000,
                                              interval: DeviceAuthorizationService.intervalSeconds, requestedFrom: from)
                if try store.insertDeviceCode(record) {
                    return Started(deviceCode: deviceCode, userCode: DeviceAuthorizationService.display(userCode),
                                   expiresIn: DeviceAuthorizationService.lifetimeSeconds, interval: DeviceAuthorizationService.intervalSeconds)
                }
            }
            throw StoreError.conflict("no free user code after five draws")
        }
    }

    /// Eight letters of the alphabet, drawn without modulo bias.
    func newUserCode() -> String {
        var letters: [UInt8] = []
        while letters.count < DeviceAuthorizationService.userCodeLength {
            for byte in env.random(16) where byte < 240 && letters.count < DeviceAuthorizationService.userCodeLength {
                letters.append(DeviceAuthorizationService.alphabet[Int(byte) % 20])
            }
        }
        return String(decoding: letters, as: UTF8.self)
    }

    /// `BCDFGHJK` as the user reads it: `BCDF-GHJK`.
    static func display(_ code: String) -> String { String(code.prefix(4)) + "-" + String(code.dropFirst(4)) }

    /// What the user typed, as stored (upper case, no dashes or blanks); nil
    /// when it cannot be a user code at all (then nothing is looked up).
    public static func normalize(_ typed: String) -> String? {
        guard typed.utf8.count <= 64 else { return nil }
        let letters = typed.utf8.filter { $0 != 0x2D && $0 != 0x20 }.map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }
        guard letters.count == userCodeLength, letters.allSatisfy(alphabet.contains) else { return nil }
        return String(decoding: letters, as: UTF8.self)
    }

    // MARK: The user's side (§3.3)

    /// A signed-in user typed a user code in this browser: when it names a
    /// pending, unexpired device authorization, a request for the consent
    /// screen, bound to this browser (as /oauth2/authorize's are), and its id.
    /// Nil for anything else, alike (a wrong code and an answered one look the same).
    /// Every code entered, right or wrong, counts against the user's limit
    /// from this address (each right one stores a consent request); the
    /// address's own count, which sign-in also checks, is left alone.
    public func enter(_ typed: String, user: User, browser: String, guards: AbuseGuards, address: String, hasher: SecretHasher) throws -> String? {
        let now = env.now()
        let account = "device:" + user.id
        // Only the signed-in user enters codes for this account, so its overall limit holds from every address: a user
        // guessing from many addresses (an IPv6 /48 holds 65,536 /64s) gets no more tries (attacker review, session 17).
        if let wait = guards.failures.refusal(account: account, address: address, now: now, wholeAccount: true) {
            throw TooManyFailures(retryAfterSeconds: wait)
        }
        guards.failures.recordFailure(FailureLimiter.keys(account: account, address: address).filter {
            if case .address = $0 { return false } else { return true }
        }, now: now)
        guard let code = DeviceAuthorizationService.normalize(typed) else { return nil }
        // The code and its client in one read.
        let found = try store.read { () throws -> (DeviceCodeRecord, Client)? in
            guard let record = try store.deviceCode(userCodeHash: hasher.userCodeHash(code)),
                  let client = try store.client(record.clientID) else { return nil }
            return (record, client)
        }
        guard let (record, client) = found, record.status == .pending, record.expiresAt > now, DeviceAuthorizationService.eligible(client) else {
            return nil
        }
        var request = AuthorizationRequest(clientID: client.clientID, redirectURI: "", redirectURISent: false, scope: record.scope, state: nil,
                                           nonce: nil, codeChallenge: nil, prompt: ["consent"], maxAge: nil,
                                           browserHash: AuthorizationService.hash(browser))
        request.deviceCodeHash = record.deviceCodeHash
        let id = env.randomToken(bytes: 32)
        // The consent request lives no longer than the code it answers.
        let expiresAt = min(record.expiresAt, now + AuthorizationService.requestLifetimeMillis)
        try store.write { try store.insertAuthorizationRequest(idHash: AuthorizationService.hash(id), request: request, createdAt: now, expiresAt: expiresAt) }
        return id
    }

    /// The user's answer on the consent screen, in one transaction: the
    /// consent request answered once, the device code answered once (and
    /// still unexpired, its client still allowed the grant), and, when
    /// approved, the connection recorded (SPEC 5.2: the device's grant will
    /// exist only with it). A device's approval is for that device: it adds
    /// its scope to the connection's and changes no remembered consent. The
    /// browser goes back to the device page, which says what happened.
    func answer(_ stored: StoredAuthorizationRequest, deviceCodeHash: String, user: User, authTime: Int64, scope: [String]?) throws -> AuthorizationResponse {
        let now = env.now()
        try store.write {
            guard try store.markAuthorizationRequestAnswered(idHash: stored.idHash, at: now) else { throw ConsentError.alreadyAnswered }
            guard let client = try store.client(stored.request.clientID), DeviceAuthorizationService.eligible(client) else { throw ConsentError.notFound }
            // The client as it is now (as for a code): a scope it no longer holds is not approved for it.
            if let scope, !scope.allSatisfy(client.scope.contains) { throw ConsentError.clientChanged }
            guard try store.answerDeviceCode(hash: deviceCodeHash, status: scope == nil ? .denied : .approved, userID: user.id,
                                             scope: scope ?? stored.request.scope, authTime: authTime, now: now) else { throw ConsentError.notFound }
            if let scope {
                try AuthorizationService(env: env, store: store).recordConnection(userID: user.id, clientID: client.clientID, scope: scope,
                                                                                   consent: .keep, authTime: authTime, now: now)
            }
        }
        return AuthorizationResponse(redirectURI: env.issuer + "/device/", parameters: [("result", scope == nil ? "denied" : "approved")], mode: .query)
    }
}

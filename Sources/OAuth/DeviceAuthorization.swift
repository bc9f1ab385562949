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

    public init(deviceCodeHash: String, userCodeHash: String, clientID: String, scope: [String], createdAt: Int64, expiresAt: Int64,
                interval: Int, lastPolledAt: Int64? = nil, status: Status = .pending, userID: String? = nil, authTime: Int64? = nil,
                familyID: String? = nil) {
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
    }
}

/// The device authorization grant's two sides that are not the token
/// endpoint (RFC 8628): the device authorization endpoint (§3.1, §3.2),
/// and the user's side, where a signed-in user types the user code and
/// answers on the consent screen (§3.3).
///
/// User codes are 8 letters from RFC 8628 §6.1's 20 consonants (no vowels,
/// so no words; about 34.6 bits), shown as `BCDF-GHJK`, read back with case,
/// dashes and spaces ignored. Guessing one is bounded by the failure limiter
/// (10 wrong codes a minute per account and address) on top of nginx's
/// per-address limit; a device code is 256 random bits.
public struct DeviceAuthorizationService {
    public static let lifetimeSeconds = 600
    public static let intervalSeconds = 5
    /// SPEC 7.1: at most this many unexpired device codes per client, whoever asks (a public client needs no secret).
    public var liveCodesPerClient = 1000
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

    static func hash(_ value: String) -> String { Base64.urlEncode(Digest.sha256(value)) }

    /// §3.1, for an authenticated client that registered the grant: the
    /// scope checked as at the authorization endpoint (RFC 6749 §3.3; only
    /// scopes the client registered, never a management scope), then a new
    /// device code and user code.
    public func start(client: Client, scope raw: String?) throws -> Started {
        guard client.grantTypes.contains(.deviceCode) else { throw OAuthError.unauthorizedClient() }
        // FAPI 2.0 knows the code flow only (with PAR): a client held to it gets no device codes.
        guard !client.fapi2 else { throw OAuthError("unauthorized_client", status: 400, "A client held to FAPI 2.0 may not use the device authorization grant.") }
        guard let scope = Scopes.parse(raw ?? ""), !scope.isEmpty else { throw OAuthError("invalid_scope", status: 400, "scope is missing or malformed.") }
        guard scope.allSatisfy({ AuthorizationChecks.isRequestable($0, by: client) }) else {
            throw OAuthError("invalid_scope", status: 400, "The client may not request this scope.")
        }
        let deviceCode = env.randomToken(prefix: "lkd_", bytes: 32)
        let now = env.now()
        return try store.write {
            guard try store.liveDeviceCodeCount(clientID: client.clientID, now: now) < liveCodesPerClient else {
                throw TooManyFailures(retryAfterSeconds: 60)
            }
            // A clash with a user code still kept is rare (a few thousand kept out of 20^8): draw again.
            for _ in 0..<5 {
                let userCode = newUserCode()
                let record = DeviceCodeRecord(deviceCodeHash: DeviceAuthorizationService.hash(deviceCode),
                                              userCodeHash: DeviceAuthorizationService.hash(userCode), clientID: client.clientID, scope: scope,
                                              createdAt: now, expiresAt: now + Int64(DeviceAuthorizationService.lifetimeSeconds) * 1000,
                                              interval: DeviceAuthorizationService.intervalSeconds)
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
    /// A wrong code counts against the user's failure limit from this address.
    public func enter(_ typed: String, user: User, browser: String, guards: AbuseGuards, address: String) throws -> String? {
        let now = env.now()
        let account = "device:" + user.id
        if let wait = guards.failures.refusal(account: account, address: address, now: now) { throw TooManyFailures(retryAfterSeconds: wait) }
        guard let code = DeviceAuthorizationService.normalize(typed),
              let record = try store.read({ try store.deviceCode(userCodeHash: DeviceAuthorizationService.hash(code)) }),
              record.status == .pending, record.expiresAt > now,
              let client = try store.read({ try store.client(record.clientID) }), client.enabled else {
            guards.failures.recordFailure(FailureLimiter.keys(account: account, address: address), now: now)
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
    /// still unexpired), and, when approved, the connection recorded (SPEC
    /// 5.2: the device's grant will exist only with it). The browser goes
    /// back to the device page, which says what happened.
    func answer(_ stored: StoredAuthorizationRequest, deviceCodeHash: String, user: User, authTime: Int64, scope: [String]?,
                remember: Bool) throws -> AuthorizationResponse {
        let now = env.now()
        try store.write {
            guard try store.markAuthorizationRequestAnswered(idHash: stored.idHash, at: now) else { throw ConsentError.alreadyAnswered }
            guard try store.answerDeviceCode(hash: deviceCodeHash, status: scope == nil ? .denied : .approved, userID: user.id,
                                             scope: scope ?? stored.request.scope, authTime: authTime, now: now) else { throw ConsentError.notFound }
            if let scope {
                try AuthorizationService(env: env, store: store).recordConnection(userID: user.id, clientID: stored.request.clientID, scope: scope,
                                                                                  remember: remember, authTime: authTime, now: now)
            }
        }
        return AuthorizationResponse(redirectURI: env.issuer + "/device/", parameters: [("result", scope == nil ? "denied" : "approved")], mode: .query)
    }
}

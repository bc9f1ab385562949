import Common
import Synchronization
import Cryptography
import JOSE

/// What became of a logout token to queue.
public enum LogoutQueueing: Sendable, Equatable {
    case queued
    /// The same (client, subject, sid) waits already: one token tells it.
    case alreadyQueued
    /// Its client's or share's queue is full: dropped.
    case full
}

/// A logout token waiting to be delivered to one client (Back-Channel Logout 1.0).
public struct LogoutDelivery: Sendable, Equatable {
    public var id: String
    public var clientID: String
    /// The queue it waits in, each with its share of the POSTs in flight and
    /// its limit of waiting deliveries: its client's organization, or (for a
    /// client registered anonymously) that organization's anonymous clients
    /// (`share(of:)`), so that anonymous registrants never crowd out the
    /// clients a tenant manages.
    public var share: String
    /// The user (`sub`).
    public var subject: String
    /// The session (`sid`); nil when the client is told about the user only.
    public var sid: String?
    public var attempts: Int
    public var nextAttemptAt: Int64
    public var createdAt: Int64

    public init(id: String, clientID: String, share: String, subject: String, sid: String?, attempts: Int = 0, nextAttemptAt: Int64,
                createdAt: Int64) {
        self.id = id
        self.clientID = clientID
        self.share = share
        self.subject = subject
        self.sid = sid
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.createdAt = createdAt
    }

    /// The queue a client's deliveries wait in.
    public static func share(of client: Client) -> String {
        ClientRegistration.isAnonymous(client) ? client.organizationID + ":anonymous" : client.organizationID
    }
}

/// Back-Channel Logout 1.0 (SPEC 10.1): when a session ends (a logout, on
/// any path) each client the session signed into and that registered a
/// `backchannel_logout_uri` is sent a logout token (a client that registers
/// one learns of the sessions that sign into it from then on); when the user revokes
/// a connection, that client is. Ending a session also ends the refresh
/// tokens granted in it without `offline_access` (§2.7); those granted with
/// it outlive the session, as OIDC Core §11 intends.
///
/// Nothing is sent on the user's request: the logout queues deliveries in
/// its own transaction, and `LogoutSender` (a background thread of each
/// node) delivers them, with retries, whichever node queued them.
public enum BackchannelLogout {
    public static let event = "http://schemas.openid.net/event/backchannel-logout"
    /// Deliveries one client may have waiting: a client that lets this many
    /// pile up is not taking them, and one user's logouts must not grow the
    /// queue without bound.
    public static let pendingPerClient = 1000
    /// Deliveries one share (an organization's managed clients, or its
    /// anonymous ones) may have waiting in all, so that what a read of the
    /// due deliveries takes stays bounded (SharedSQL `dueLogouts`)...
    public static let pendingPerShare = 10_000
    /// ...except that a client with fewer than this many waiting is always
    /// queued: a share's other clients filling it cannot silence one.
    public static let reservedPerClient = 10

    /// The `sid` of a session: derived from the stored hash of its cookie
    /// value, so it names the session without revealing anything that signs in.
    public static func sid(sessionIDHash: String) -> String {
        String(Base64.urlEncode(Digest.sha256("latchkey-sid:" + sessionIDHash)).prefix(32))
    }

    /// Inside the transaction that ends session `sid` of `userID`.
    static func sessionEnded(sid: String, userID: String, store: Store, env: Environment) throws {
        let now = env.now()
        // A code issued in the session and not yet redeemed would start a grant bound to a session that is over.
        // Spent first: on PostgreSQL (read committed) this write waits for a redemption in flight to commit,
        // so the revocation after it sees the family that redemption created.
        try store.expireCodes(userID: userID, sid: sid, at: now)
        try store.revokeFamilies(sid: sid, at: now)
        for clientID in try store.takeSessionClients(sid: sid) {
            guard let client = try store.client(clientID), client.backchannelLogoutURI != nil else { continue }
            try enqueue(client: client, subject: userID, sid: sid, store: store, env: env, now: now)
        }
    }

    private static let dropped = Atomic<Int>(0)

    /// Deliveries this process dropped past their client's or share's limit
    /// (`latchkey_logout_deliveries_dropped_total`; one whose transaction was
    /// then retried may be counted twice).
    public static var droppedDeliveries: Int { dropped.load(ordering: .relaxed) }

    /// Queues one delivery to `client`, or counts it dropped.
    static func enqueue(client: Client, subject: String, sid: String?, store: Store, env: Environment, now: Int64) throws {
        let queueing = try store.enqueueLogout(LogoutDelivery(id: env.randomID(24), clientID: client.clientID, share: LogoutDelivery.share(of: client),
                                                            subject: subject, sid: sid, nextAttemptAt: now, createdAt: now),
                                             limitPerClient: pendingPerClient, limitPerShare: pendingPerShare, reservedPerClient: reservedPerClient)
        if queueing == .full { dropped.add(1, ordering: .relaxed) }
    }

    /// Inside the transaction that revokes the user's connection to `client`:
    /// one token per session that signed into it, or one naming the user
    /// alone when no session is known and the client does not require `sid`.
    static func connectionEnded(userID: String, client: Client, store: Store, env: Environment) throws {
        let sids = try store.takeSessions(userID: userID, clientID: client.clientID)
        guard client.backchannelLogoutURI != nil else { return }
        let now = env.now()
        let targets: [String?] = sids.isEmpty ? (client.backchannelLogoutSessionRequired ? [] : [nil]) : sids
        for sid in targets { try enqueue(client: client, subject: userID, sid: sid, store: store, env: env, now: now) }
    }

    /// The logout token (§2.4), signed with the client's ID token algorithm.
    static func token(_ d: LogoutDelivery, client: Client, keys: KeyRing, env: Environment) throws -> String {
        let (kid, key) = try keys.signingKey(for: client.signingAlgorithm(client.idTokenAlg))
        let now = env.nowSeconds
        var claims: [(String, JSON)] = [
            ("iss", .string(env.issuer)), ("sub", .string(d.subject)), ("aud", .string(client.clientID)), ("iat", .int(now)),
            ("exp", .int(now + 120)), ("jti", .string(env.randomToken(bytes: 16))), ("events", .object([(event, .object([]))])),
        ]
        if let sid = d.sid { claims.append(("sid", .string(sid))) }
        return try JWS.sign(payload: .object(claims), key: key, kid: kid, typ: "logout+jwt")
    }
}

/// What delivering logout tokens needs of a transport: POSTs started as
/// slots free up, each ending on its own (`FormPostQueue` in the server).
public protocol LogoutTransport: AnyObject {
    /// The most POSTs in flight at once.
    var capacity: Int { get }
    var inFlight: Int { get }
    /// Starts one POST: its tag (never given to another POST of this transport), or nil when it could not be
    /// started (nothing is sent). `operatorNetworks`: whether the operator's non-public networks may be reached for it.
    func start(uri: String, form: [UInt8], operatorNetworks: Bool) -> Int64?
    /// Waits until a POST ends, `waitMillis` at most: each ended one's tag, and whether it was delivered (a 2xx answer).
    func finished(waitMillis: Int) -> [(tag: Int64, delivered: Bool)]
}

/// Delivers queued logout tokens (§2.5): one POST each, form-encoded
/// `logout_token`, no redirects followed, a short timeout; a 2xx answer
/// ends the delivery, anything else is retried later, `backoff.count + 1`
/// attempts in all, then given up and audited. POSTs are in flight on their
/// own: a slot takes the next due delivery as soon as its POST ends, so
/// receivers that never answer hold their share's slots for a timeout each
/// and nobody else's deliveries wait for them (review, session 26: when
/// all of a batch's POSTs had to end before the next batch, such receivers
/// held every batch for their whole timeout). One thread's (it remembers
/// what it has in flight).
public final class LogoutSender {
    /// Seconds to the next attempt after attempt 1, 2, ...: longer than the
    /// POST's timeout, so an attempt in flight is never claimed again.
    public static let backoff: [Int64] = [10, 30, 120, 600, 1800]
    public static let timeoutSeconds = 5
    /// The most POSTs in flight at once (a node's).
    public static let batch = 16
    /// The most POSTs in flight for one client and for one share of clients
    /// (an organization's managed clients, or its anonymous ones): a tenant
    /// (or anonymous registrants) whose receivers never answer holds only its
    /// own share of the slots, and every share with a delivery due gets a
    /// slot before any gets a second.
    public static let perClient = 2
    public static let perShare = 4

    let env: Environment
    let store: Store
    let keys: KeyRing
    /// The deliveries whose POSTs are in flight, by the transport's tag.
    private var inFlight: [Int64: (delivery: LogoutDelivery, client: Client)] = [:]
    /// When the queue was last read for due deliveries.
    private var lastFill: Int64?

    public init(env: Environment, store: Store, keys: KeyRing) {
        self.env = env
        self.store = store
        self.keys = keys
    }

    /// Deliveries in flight.
    public var sending: Int { inFlight.count }

    /// Whether a logout token may be sent to this address: a public one, or one in the operator's networks when
    /// those may be reached for the client (`operatorNetworks`). Asked of every address actually dialled.
    public static func mayPost(to address: [UInt8], allowed: IPNetworks?, operatorNetworks: Bool) -> Bool {
        IPAddress.isPublic(address) || (operatorNetworks && allowed?.contains(address) == true)
    }

    /// Records the POSTs that ended (waiting up to `waitMillis` while any are
    /// in flight, this sender's or a predecessor's), then, when one did or
    /// `refillMillis` have passed since the queue was last read, starts due
    /// deliveries in the free slots: a receiver that keeps its POST busy
    /// without ending it does not have the queue read at every wake-up.
    /// Returns how many it started (or gave up on unsigned).
    @discardableResult
    public func pump(_ transport: LogoutTransport, waitMillis: Int, refillMillis: Int = 0) throws -> Int {
        var ended = 0
        if transport.inFlight > 0 { ended = try record(transport.finished(waitMillis: waitMillis)) }
        let now = env.now()
        if ended == 0, let last = lastFill, now - last < Int64(refillMillis), now >= last { return 0 }
        lastFill = now
        return try fill(transport)
    }

    /// Starts due deliveries in `transport`'s free slots: oldest first, within each client's and each share's
    /// part of the slots (what is in flight counted), so one backlog holds up no other's. Returns how many it
    /// started (or gave up on unsigned).
    public func fill(_ transport: LogoutTransport) throws -> Int {
        let free = transport.capacity - transport.inFlight
        guard free > 0 else { return 0 }
        var byClient: [String: Int] = [:], byShare: [String: Int] = [:]
        for (d, _) in inFlight.values {
            byClient[d.clientID, default: 0] += 1
            byShare[d.share, default: 0] += 1
        }
        let due = try store.read {
            try store.dueLogouts(now: env.now(), limit: transport.capacity + inFlight.count, perClient: LogoutSender.perClient,
                                 perShare: LogoutSender.perShare)
        }
        var started = 0
        var unsigned: [(LogoutDelivery, Client)] = []
        for d in due where started < free {
            guard byClient[d.clientID, default: 0] < LogoutSender.perClient, byShare[d.share, default: 0] < LogoutSender.perShare else { continue }
            let wait = LogoutSender.backoff[min(d.attempts, LogoutSender.backoff.count - 1)]
            let claimed = try store.write { () throws -> Client?? in
                guard try store.claimLogout(d, nextAttemptAt: env.now() + wait * 1000) else { return .none }
                return .some(try store.client(d.clientID))
            }
            guard case .some(let client) = claimed else { continue }  // another node has it
            guard let client, client.enabled, let uri = client.backchannelLogoutURI else {
                // The client is gone, disabled or no longer listening: nothing to tell.
                try store.write { try store.deleteLogout(id: d.id) }
                continue
            }
            // A token that cannot be signed (no key for the client's algorithm) is a failed attempt, not a failed pass.
            guard let token = try? BackchannelLogout.token(d, client: client, keys: keys, env: env) else {
                unsigned.append((d, client))
                continue
            }
            guard let tag = transport.start(uri: uri, form: Array("logout_token=\(PercentEncoding.encode(token))".utf8),
                                            operatorNetworks: !ClientRegistration.isAnonymous(client)) else {
                try failed(d, client)
                continue
            }
            inFlight[tag] = (d, client)
            byClient[d.clientID, default: 0] += 1
            byShare[d.share, default: 0] += 1
            started += 1
        }
        for (d, client) in unsigned { try failed(d, client) }
        return started + unsigned.count
    }

    /// What the POSTs that ended mean: delivered, or a failed attempt (a POST this sender did not start is
    /// passed over: its delivery is tried again when its claim lapses). Returns how many ended.
    @discardableResult
    public func record(_ ended: [(tag: Int64, delivered: Bool)]) throws -> Int {
        for (tag, delivered) in ended {
            guard let (d, client) = inFlight.removeValue(forKey: tag) else { continue }
            if delivered {
                try store.write { try store.deleteLogout(id: d.id) }
            } else {
                try failed(d, client)
            }
        }
        return ended.count
    }

    /// After a failed attempt: the claim already set the next one; past the last, given up and audited.
    func failed(_ d: LogoutDelivery, _ client: Client) throws {
        let attempt = d.attempts + 1
        guard attempt > LogoutSender.backoff.count else { return }
        try store.write {
            try store.deleteLogout(id: d.id)
            try store.appendAudit(AuditEvent(organizationID: client.organizationID, actor: "latchkey", action: "logout.delivery_failed",
                                             target: client.clientID, surface: "backchannel", requestID: nil,
                                             details: ["attempts": JSON(attempt)], createdAt: env.now()))
        }
    }
}

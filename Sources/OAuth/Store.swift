import Common

/// Transactions: every role's operations run inside one of these.
///
/// Every method of every storage role may throw `StoreError.busy` or
/// `StoreError.unavailable` (answer 503) or `StoreError.conflict` (a
/// uniqueness rule refused the write).
public protocol Transactional: AnyObject {
    /// Runs `body` in a write transaction, committing when it returns and
    /// rolling back when it throws. Nested calls join the outer transaction.
    func write<T>(_ body: () throws -> T) throws -> T
    /// `write` for a body whose last statement is the one whose answer it
    /// needs (after any blind writes, and touching no configuration): a
    /// single-use record's insert, whose row count is the answer. A store may
    /// send that statement with the COMMIT in one round trip (PostgreSQL);
    /// committing a transaction that inserted nothing changes nothing.
    func writeOne<T>(_ body: () throws -> T) throws -> T
    /// `write` for a transaction whose loss in a crash of the database
    /// itself (not of a node) would only undo a step the user repeats: an
    /// authorization request stored, a consent answered with its code. A
    /// store whose every commit waits for its flush (PostgreSQL) may
    /// acknowledge this one before the flush and flush it moments later, in
    /// order: any later commit that waits for its own flush (a code's
    /// redemption) flushes it first. Never for a claim, a revocation, a
    /// replay record, a sign-in or anything that takes access away; a body
    /// that finds it would take some away calls `requireFlush`, and a store
    /// that defers flushes makes any other write durable itself. What acts
    /// on a deferred row must do so through a write that waits for its own
    /// flush (a read, or a write that changed nothing, flushes nothing).
    func writeDeferringFlush<T>(_ body: () throws -> T) throws -> T
    /// Inside `writeDeferringFlush`: this transaction takes something away
    /// after all (a remembered consent narrowed) and commits with its flush.
    func requireFlush()
    /// Runs `body` in a read transaction, for a consistent snapshot.
    func read<T>(_ body: () throws -> T) throws -> T
    /// Brackets one request (the worker calls them): a store whose memo is
    /// validated against a shared database may validate it once per
    /// request, at the request's first read, instead of at every read.
    /// `abandoned`: whether nobody awaits the request's answer any more; a
    /// store may ask it before committing a write that had to wait, and roll
    /// the write back instead (`StoreError.abandoned`).
    func beginRequest(abandoned: @escaping @Sendable () -> Bool)
    func endRequest()
    /// Brackets requests that all arrived before the first of them was
    /// handled (a worker took them from its socket together): a read begun
    /// after all of them arrived orders each of them, so such a store may
    /// validate its memo once for the batch.
    func beginBatch()
    func endBatch()
}

extension Transactional {
    public func writeOne<T>(_ body: () throws -> T) throws -> T { try write(body) }
    /// SQLite in WAL mode with `synchronous=NORMAL` flushes at checkpoints, not at commits: nothing to defer.
    public func writeDeferringFlush<T>(_ body: () throws -> T) throws -> T { try write(body) }
    public func requireFlush() {}
    public func beginRequest(abandoned: @escaping @Sendable () -> Bool) {}
    /// A request whose caller is known to wait (tests, commands).
    public func beginRequest() { beginRequest(abandoned: { false }) }
    public func endRequest() {}
    public func beginBatch() {}
    public func endBatch() {}
}

/// Server settings kept in the store (the issuer, the keys' version, the sealed pepper).
public protocol MetaStorage: Transactional {
    func meta(_ key: String) throws -> String?
    func setMeta(_ key: String, _ value: String) throws
    func deleteMeta(_ key: String) throws
}

/// Organizations, their clients, and the clients' logos (SPEC 6.0, 6.1).
public protocol ClientStorage: Transactional {
    func insertOrganization(_ organization: Organization) throws
    func organization(_ id: String) throws -> Organization?
    func setPrimaryClient(organizationID: String, clientID: String) throws
    func clientCount(organizationID: String) throws -> Int

    func insertClient(_ client: Client) throws
    func client(_ id: String) throws -> Client?
    /// Inside a write: the client as last committed, held until this write
    /// commits, so a read-modify-write of it cannot lose another writer's
    /// change (SQLite's write lock already holds every row; PostgreSQL locks
    /// the row, `FOR NO KEY UPDATE`, and reads it past the memo; grants that
    /// reference the client, whose foreign keys take `KEY SHARE`, go on).
    func clientForUpdate(_ id: String) throws -> Client?
    /// Writes every mutable field of `client` (version included).
    func updateClient(_ client: Client) throws
    /// Removes the client and everything that hangs off it, and retires its
    /// id for good (SPEC 4.5).
    func deleteClient(_ id: String) throws
    /// Whether `id` belonged to a client that was deleted: never given again.
    func isClientIDRetired(_ id: String) throws -> Bool
    /// Counts one anonymous write (a registration without an initial access
    /// token, RFC 7591, or a replacement by such a client's registration
    /// access token, RFC 7592) against the organization's allowance of
    /// `limit` a window of `windowMillis`: nil when counted; when none is
    /// left, the millisecond the window ends. Deleting a client gives none
    /// back (SPEC 7.1: what an anonymous caller can make the server keep,
    /// retired ids and audit events, is bounded).
    func spendAnonymousWrite(organizationID: String, limit: Int, windowMillis: Int64, now: Int64) throws -> Int64?
    /// One page of the organization's clients that pass `filter`, oldest first, and how many pass it in all.
    func clients(organizationID: String, filter: ClientFilter, limit: Int, offset: Int) throws -> (clients: [Client], total: Int)
    func touchClient(_ id: String, lastUsedAt: Int64) throws

    /// The logo (at most 256x256) and its small preview (at most 64x64, what
    /// the public app reads inline).
    func setLogo(clientID: String, contentType: String, image: [UInt8], preview: [UInt8], etag: String, at: Int64) throws
    /// The small preview; nil when there is no logo (or it predates previews).
    func logoPreview(clientID: String) throws -> [UInt8]?
    func logo(clientID: String) throws -> (contentType: String, image: [UInt8], etag: String)?
    func deleteLogo(clientID: String) throws
    /// RFC 7592: the hash of a dynamically registered client's registration access token.
    func setRegistrationToken(clientID: String, hash: String, at: Int64) throws
    func deleteRegistrationToken(clientID: String) throws
    func registrationTokenHash(clientID: String) throws -> String?
}

/// Client secrets, signing keys and access-token revocations: what
/// authenticates a client or a token.
public protocol CredentialStorage: Transactional {
    func insertSecret(_ secret: ClientSecret) throws
    func secrets(clientID: String) throws -> [ClientSecret]
    func deleteSecret(id: Int64) throws
    func setSecretExpiry(id: Int64, expiresAt: Int64?) throws
    /// Records a client assertion's `jti` until it expires: true the first
    /// time, false for a replay (RFC 7523 §3, SPEC 10.2), however many race.
    func useAssertion(clientID: String, jti: String, expiresAt: Int64, now: Int64) throws -> Bool
    /// Records a DPoP proof's `jti` for its key until it expires: true the first time (RFC 9449 §11.1), on every node.
    func useProof(jkt: String, jti: String, expiresAt: Int64, now: Int64) throws -> Bool

    func insertSigningKey(_ key: SigningKeyRecord) throws
    func signingKeys() throws -> [SigningKeyRecord]
    /// Retires the current keys of one algorithm (they stay published).
    func retireSigningKeys(algorithm: String, at: Int64) throws
    func deleteSigningKeys(retiredBefore: Int64) throws
    /// Deletes one key, retired or not (`KeyManagement.revoke`).
    func deleteSigningKey(kid: String) throws
    /// Replaces a key's private key by its sealed form.
    func sealSigningKey(kid: String, privateKey: [UInt8]) throws

    func revokeAccessToken(jti: String, expiresAt: Int64, now: Int64) throws
    func isAccessTokenRevoked(jti: String) throws -> Bool
}

/// Local users and their browser sessions (SPEC 5.1).
extension CredentialStorage {
    /// `useProof` for a verified proof (`DPoP.verify`).
    public func useProof(_ proof: DPoPProof) throws -> Bool {
        try useProof(jkt: proof.jkt, jti: proof.jti, expiresAt: proof.expiresAt, now: proof.verifiedAt)
    }
}

public protocol UserStorage: Transactional {
    func insertUser(_ user: User) throws
    func user(username: String) throws -> User?
    func user(id: String) throws -> User?
    /// The standard claims behind the profile, phone and address scopes (nil: none set).
    func userProfile(userID: String) throws -> UserProfile?
    func setUserProfile(userID: String, profile: UserProfile) throws

    /// A new password hash (`latchkey user password`).
    func setPasswordHash(userID: String, hash: String) throws
    /// Inside a write: the user's password hash, the row held until the
    /// write commits (a sign-in's session goes in under the hash it verified).
    func holdPasswordHash(userID: String) throws -> String?

    func insertSession(_ session: SessionRecord) throws
    func session(idHash: String) throws -> SessionRecord?
    func deleteSession(idHash: String) throws
    /// Inside a write: deletes every session of the user and returns their `sid`s.
    func takeSessions(userID: String) throws -> [String]
    /// Inside a write: deletes the user's sessions beyond its `keeping` newest, the one just `started` always
    /// counted among them, and returns their `sid`s.
    func takeSessions(userID: String, beyondNewest keeping: Int, besides started: String) throws -> [String]
    /// Inside a write: whether the session is still there, held until the
    /// write commits, so a logout either comes first (and this is false) or
    /// waits and then sees what the write did (SQLite's write lock holds every
    /// row; PostgreSQL takes `KEY SHARE`, which the logout's delete waits for).
    func holdSession(idHash: String) throws -> Bool
    /// Inside a write: the transaction will ask `holdSession`. A store that
    /// can send it with its next statement does (PostgreSQL: a round trip saved).
    func prefetchSessionHold(idHash: String) throws
}

extension UserStorage {
    /// Nothing to save where a read costs no round trip.
    public func prefetchSessionHold(idHash: String) throws {}
}

/// Grants: authorization requests, codes, token families and refresh
/// tokens (SPEC 4.2, 5.1). Exactly-once rules live here.
public protocol GrantStorage: Transactional {
    func insertAuthorizationRequest(idHash: String, request: AuthorizationRequest, createdAt: Int64, expiresAt: Int64) throws
    func authorizationRequest(idHash: String) throws -> StoredAuthorizationRequest?
    /// Inside a read or write: the request will read this authorization
    /// request. A store that can send the read with its next statement does
    /// (PostgreSQL: a round trip saved); the read itself still answers as
    /// `authorizationRequest`.
    func prefetchAuthorizationRequest(idHash: String) throws
    /// Marks the request answered; false when it already was (answered once).
    func markAuthorizationRequestAnswered(idHash: String, at: Int64) throws -> Bool

    /// A pushed authorization request (RFC 9126), under the hash of its request_uri.
    func insertPushedRequest(uriHash: String, clientID: String, request: AuthorizationRequest, expiresAt: Int64, now: Int64) throws
    /// Takes a pushed request of `clientID` not yet expired: once (it is gone after), however many race.
    func takePushedRequest(uriHash: String, clientID: String, now: Int64) throws -> AuthorizationRequest?

    func insertCode(_ code: AuthorizationCodeRecord) throws
    func code(hash: String) throws -> AuthorizationCodeRecord?
    /// A code as it was, consumed by this call (for `familyID`) when it was
    /// not yet and `clientID` may redeem it (its client, with the DPoP key
    /// `jkt` when the code is bound to one): `claimed` is true for exactly
    /// one caller, however many race; a caller that may not redeem it writes
    /// nothing. A redemption refused after its claim gives it back
    /// (`unclaimCode`) in the same transaction.
    func claimCode(hash: String, clientID: String, jkt: String?, at: Int64, familyID: String) throws -> Claimed<AuthorizationCodeRecord>?
    /// Undoes this transaction's claim of a code (a redemption refused after it).
    func unclaimCode(hash: String) throws

    /// `expiresAt`: when nothing the family issued is valid any more (its creation, for a family that issues no
    /// refresh token; `insertRefreshToken` moves it on).
    func insertFamily(id: String, clientID: String, userID: String, createdAt: Int64, sid: String?, expiresAt: Int64) throws
    /// Ends the token families bound to a session that ended.
    func revokeFamilies(sid: String, at: Int64) throws
    /// Spends the codes issued in a session that ended, before any is redeemed.
    func expireCodes(userID: String, sid: String, at: Int64) throws
    func revokeFamily(id: String, at: Int64) throws
    func revokeFamilies(userID: String, clientID: String, at: Int64) throws
    /// Every grant of a client, whoever the user.
    func revokeFamilies(clientID: String, at: Int64) throws
    /// What would still become a grant of the client: its unredeemed codes go, its pending and approved
    /// device codes are denied, its pushed requests go (a client disabled: SPEC 4.5, re-enabling brings none back).
    func withdrawPendingGrants(clientID: String) throws
    func isFamilyRevoked(id: String) throws -> Bool

    func insertRefreshToken(_ token: RefreshTokenRecord) throws
    func refreshToken(hash: String) throws -> RefreshTokenRecord?
    /// A refresh token as it was, marked rotated by this call when it was
    /// not yet and `clientID` may rotate it (its client, with the DPoP key
    /// `jkt` when the token is bound to one): `claimed` is true for exactly
    /// one caller, however many race; a caller that may not rotate it writes
    /// nothing. A rotation refused after its claim gives it back
    /// (`unclaimRefreshToken`) in the same transaction.
    func claimRefreshToken(hash: String, clientID: String, jkt: String?, at: Int64) throws -> Claimed<RefreshTokenRecord>?
    /// Undoes this transaction's claim of a refresh token (a rotation refused after it).
    func unclaimRefreshToken(hash: String) throws
    /// A retry with `token`, which a rotation replaced (a FAPI 2.0 client's
    /// lost response): the token that rotation (or a retry since) issued,
    /// its child, is withdrawn (marked `withdrawn_at`) when it is unused.
    /// True for exactly one caller; retries racing take turns, each
    /// withdrawing what the one before it issued.
    func withdrawUnusedSuccessor(of token: RefreshTokenRecord, at: Int64) throws -> Bool

    /// Stores a device authorization (RFC 8628 §3.2); false when its user
    /// code is already held by another (the caller draws a new one).
    func insertDeviceCode(_ record: DeviceCodeRecord) throws -> Bool
    /// The client's device codes that have not expired, all of them and those asked for from `address`,
    /// and when the first of the latter expires (SPEC 7.1: what an anonymous caller may make the server keep).
    func liveDeviceCodes(clientID: String, address: String, now: Int64) throws -> (client: Int, address: Int, firstExpiry: Int64?)
    func deviceCode(hash: String) throws -> DeviceCodeRecord?
    func deviceCode(userCodeHash: String) throws -> DeviceCodeRecord?
    /// The user's answer to a pending, unexpired device code: true for exactly one caller, however many race.
    func answerDeviceCode(hash: String, status: DeviceCodeRecord.Status, userID: String, scope: [String], authTime: Int64, now: Int64) throws -> Bool
    /// A poll of a pending device code (§3.5): true when it came at least the
    /// code's interval after the previous one, which it then becomes; false
    /// when it came sooner, and then the interval grows by 5 seconds (up to a minute).
    func pollDeviceCode(hash: String, now: Int64) throws -> Bool
    /// Redeems an approved device code: true for exactly one caller.
    func redeemDeviceCode(hash: String, familyID: String, jkt: String?) throws -> Bool
}

/// A single-use record as a claim found it, and whether this claim took it
/// (false: it was taken before, or by a transaction that won a race).
public struct Claimed<Record: Sendable>: Sendable {
    public let record: Record
    public let claimed: Bool
    public init(record: Record, claimed: Bool) { (self.record, self.claimed) = (record, claimed) }
}

/// The apps a user has connected (SPEC 5.2).
public protocol ConnectionStorage: Transactional {
    func connection(userID: String, clientID: String) throws -> UserConnection?
    /// Inside a write: the transaction will read this connection to update
    /// it (`AuthorizationService.recordConnection`). A store whose writes
    /// run side by side (PostgreSQL) reads it locked, so that two grants to
    /// one user and client take turns instead of each writing back scopes
    /// read before the other committed, and sends the read with its next
    /// statement (a round trip saved); the read itself still answers as
    /// `connection`. A store whose writes take turns anyway (SQLite) need
    /// do nothing.
    func prefetchConnection(userID: String, clientID: String) throws
    func upsertConnection(_ connection: UserConnection) throws
    func connections(userID: String, limit: Int, offset: Int) throws -> (connections: [UserConnection], total: Int)
    /// Forgets the connection and the user's unredeemed codes for the client
    /// (SPEC 5.2: a grant exists only with its connection).
    /// False when there was none: nothing else is done.
    @discardableResult
    func deleteConnection(userID: String, clientID: String) throws -> Bool
    /// Records the use of a connection at minute precision (a use within a minute of the last is not written).
    func touchConnection(userID: String, clientID: String, accessTime: Int64) throws
    /// Forgets what every user remembered approving for the client: each one's next authorization asks again.
    func forgetRememberedConsent(clientID: String) throws
}

extension ConnectionStorage {
    /// Nothing to save where a read costs no round trip.
    public func prefetchConnection(userID: String, clientID: String) throws {}
}

extension GrantStorage {
    /// Nothing to save where a read costs no round trip.
    public func prefetchAuthorizationRequest(idHash: String) throws {}
}

/// OAuth clients Latchkey holds at upstream providers (SPEC 6.5).
public protocol UpstreamStorage: Transactional {
    func insertUpstream(_ record: UpstreamClient) throws
    /// Writes `record` if the stored one is still at `version`: false when
    /// another writer changed it meanwhile (its commit is what a racing
    /// update on another node meets: no lost update, SPEC 9).
    func updateUpstream(_ record: UpstreamClient, from version: Int) throws -> Bool
    /// sysIds are an organization's own (SPEC 6.5, 6.0): another organization's record is never found by its id.
    func upstream(organizationID: String, sysID: String) throws -> UpstreamClient?
    func upstream(organizationID: String, name: String) throws -> UpstreamClient?
    func upstreams(organizationID: String) throws -> [UpstreamClient]
    /// How many records the organization holds; inside a write, creates of
    /// the same organization wait for this one (the limit holds under races).
    func upstreamCount(organizationID: String) throws -> Int
    /// False when there was none.
    @discardableResult
    func deleteUpstream(organizationID: String, sysID: String) throws -> Bool
    /// Upstream records whose secret is not sealed (stored before a KEK was configured).
    func upstreamsStoredInClear() throws -> [UpstreamClient]
}

/// The audit log (SPEC 6.0).
public protocol AuditStorage: Transactional {
    func appendAudit(_ event: AuditEvent) throws
    /// Newest first; `before`: only events with a smaller id. `total`: every event of the organization.
    func auditEvents(organizationID: String, limit: Int, offset: Int, before: Int64?) throws -> (events: [AuditEvent], total: Int)
    /// Removes up to a batch of `organizationID`'s events (nil: the events of no organization) made before `before`.
    func purgeAudit(organizationID: String?, before: Int64) throws
}

extension AuditStorage {
    /// The newest events from `offset` on.
    public func auditEvents(organizationID: String, limit: Int, offset: Int) throws -> (events: [AuditEvent], total: Int) {
        try auditEvents(organizationID: organizationID, limit: limit, offset: offset, before: nil)
    }
}

/// Everything the domain needs from storage, split by role as fosite's
/// storage interfaces are, so that each part of the domain can name only
/// what it needs. Two implementations: `SQLiteStore` (the embedded default)
/// and `PostgresStore` (several nodes, SPEC 9); the same tests run on both.
/// Back-Channel Logout 1.0: which clients each session signed into, and
/// the queue of logout tokens still to deliver.
public protocol BackchannelStorage: Transactional {
    /// A code was issued to `clientID` in session `sid` (kept until the session's expiry).
    func recordSessionClient(sid: String, clientID: String, userID: String, at: Int64, expiresAt: Int64) throws
    /// The clients session `sid` signed into, forgotten as they are returned (a session ends once).
    func takeSessionClients(sid: String) throws -> [String]
    /// The sessions in which the user signed into the client, forgotten as they are returned.
    func takeSessions(userID: String, clientID: String) throws -> [String]
    /// Queues a delivery unless the same (client, subject, sid) is queued
    /// already, the client has `limitPerClient` waiting, or its share
    /// `limitPerShare` while the client has `reservedPerClient` or more.
    @discardableResult
    func enqueueLogout(_ delivery: LogoutDelivery, limitPerClient: Int, limitPerShare: Int, reservedPerClient: Int) throws -> LogoutQueueing
    /// Deliveries due at `now`: at most `perClient` of one client's and
    /// `perShare` of one share's, each share's oldest first, every share's
    /// first before any share's second.
    func dueLogouts(now: Int64, limit: Int, perClient: Int, perShare: Int) throws -> [LogoutDelivery]
    /// Claims a delivery for one attempt: true for exactly one caller, however many nodes race.
    func claimLogout(_ delivery: LogoutDelivery, nextAttemptAt: Int64) throws -> Bool
    func deleteLogout(id: String) throws
}

/// Failed credential checks counted for all nodes together (SPEC 9: the
/// failure limits of SPEC 7.1 hold across nodes): each node adds what it
/// counted and takes back the totals (`FailureLimiter.flush`).
public protocol FailureCountStorage: Transactional {
    /// Adds `counts` to each key's current window (a new one, `windowMillis`
    /// long from `now`, once the last has ended); each key's window start
    /// and total after.
    func addFailures(_ counts: [String: Int], now: Int64, windowMillis: Int64) throws -> [String: (start: Int64, count: Int)]
}

public protocol Store: MetaStorage, ClientStorage, CredentialStorage, UserStorage, GrantStorage, ConnectionStorage, UpstreamStorage,
    AuditStorage, BackchannelStorage, FailureCountStorage {}

/// Which clients a listing returns: filtered in the store, not in memory,
/// so a page costs a page whatever the organization's size.
public struct ClientFilter: Sendable, Equatable {
    /// Names starting with this (compared by Unicode scalars).
    public var namePrefix: String?
    public var lastUsed: LastUsed?

    public enum LastUsed: Sendable, Equatable {
        /// Never obtained a token.
        case never
        /// Last obtained a token at or before this time (milliseconds); clients that never did are not included.
        case atOrBefore(Int64)
    }

    public init(namePrefix: String? = nil, lastUsed: LastUsed? = nil) {
        self.namePrefix = namePrefix
        self.lastUsed = lastUsed
    }
}

extension ClientStorage {
    public func clients(organizationID: String, namePrefix: String?, limit: Int, offset: Int) throws -> (clients: [Client], total: Int) {
        try clients(organizationID: organizationID, filter: ClientFilter(namePrefix: namePrefix), limit: limit, offset: offset)
    }
}

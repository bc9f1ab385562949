import Common
import Cryptography
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

private func sysconfCores() -> Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

/// What an unauthenticated caller can make the server spend on password
/// hashes (SPEC 7.1). A scrypt verification costs a core for 50–200 ms: a
/// flood of wrong passwords must neither queue on every worker thread nor
/// slow down clients whose secrets are cheap to check (server-generated
/// `lks_` secrets, an HMAC each).
///
/// Three parts, shared by every worker thread of the process:
/// - `SlowHashPool`: at most `permits` slow hashes run at once; one more is
///   refused at once (503) instead of waiting, so a flood ties up at most
///   `permits` worker threads and the others keep answering.
/// - `FailureLimiter`: failed verifications counted per address, per account
///   from that address, and per account from anywhere, in fixed one-minute
///   windows; past a limit, a request that would need a slow hash (or fails
///   again) is answered 429 with `Retry-After` before any hashing. One
///   attacker guessing a client's password locks out only itself (10 a
///   minute from its address); it takes a hundred failures a minute from
///   many addresses to make the client's own correct password wait.
/// - `VerifiedSecretCache`: successful slow verifications (until rotation)
///   and failed ones (briefly) are remembered, so repeating a password costs
///   one hash, not one per request.
public final class AbuseGuards: Sendable {
    public let pool: SlowHashPool
    public let failures: FailureLimiter
    public let secrets: VerifiedSecretCache
    /// Changes signed-in users make to their own profile, each an audit row
    /// kept for good: `profileChangesPerHour` a user on each node, then 429
    /// (attacker review, session 28: two values saved in turn wrote ten rows a
    /// second at nginx's limit). Counted per user, the windows of the failure
    /// limits an hour long.
    public let profileChanges: FailureLimiter
    public static let profileChangesPerHour = 20
    /// Changes a client makes to itself with no management scope (its own
    /// secret on the native and integration surfaces, its registration by
    /// RFC 7592), each an audit row: `ownChangesPerHour` a client on each
    /// node, then 429 (review, session 34: a token with no scope at all
    /// rotated its own secret ten times a second at nginx's limit, an audit
    /// row each). Counted when asked for, after the client authenticated.
    public let ownChanges: FailureLimiter
    public static let ownChangesPerHour = 20

    public init(pool: SlowHashPool = SlowHashPool(), failures: FailureLimiter = FailureLimiter(),
                secrets: VerifiedSecretCache = VerifiedSecretCache(),
                profileChanges: FailureLimiter = FailureLimiter(limits: .init(perAddress: .max, perAccount: .max,
                                                                               perAccountAnywhere: AbuseGuards.profileChangesPerHour,
                                                                               windowMillis: 3_600_000)),
                ownChanges: FailureLimiter = FailureLimiter(limits: .init(perAddress: .max, perAccount: .max,
                                                                           perAccountAnywhere: AbuseGuards.ownChangesPerHour,
                                                                           windowMillis: 3_600_000))) {
        self.pool = pool
        self.failures = failures
        self.secrets = secrets
        self.profileChanges = profileChanges
        self.ownChanges = ownChanges
    }

    /// Spends one of the client's own changes (`ownChanges`); `TooManyFailures` (429) once they are spent.
    public func spendOwnChange(clientID: String, now: Int64) throws {
        let key = FailureLimiter.Key.accountAnywhere("client:" + clientID)
        if let wait = ownChanges.retryAfter(key, now: now) { throw TooManyFailures(retryAfterSeconds: wait, changes: true) }
        ownChanges.recordFailure([key], now: now)
    }

    /// Refuses with 429 an attempt on `account` from `address` past the
    /// account's limits there (`FailureLimiter.refusal`) or the address's own:
    /// checked before anything, a remembered password included, can answer.
    func checkAttempt(account: String, address: String, now: Int64) throws {
        if let wait = failures.refusal(account: account, address: address, now: now) ?? failures.retryAfter(.address(address), now: now) {
            throw TooManyFailures(retryAfterSeconds: wait)
        }
    }

    /// Refuses with 429 when `keys` (an address, an account) are past their
    /// failure limits: checked before a slow hash is started.
    func checkLimits(_ keys: [FailureLimiter.Key], now: Int64) throws {
        if let wait = keys.compactMap({ failures.retryAfter($0, now: now) }).max() { throw TooManyFailures(retryAfterSeconds: wait) }
    }
}

/// Past the failure limit: answer 429 with `Retry-After`.
public struct TooManyFailures: Error, Equatable {
    public let retryAfterSeconds: Int
    /// What ran out: failed attempts (false), or an allowance of changes that succeed (a client's changes to
    /// itself, a user's to their profile, caller-chosen passwords), which the answer's text names as such.
    public var changes = false
}

/// Every slow-hash permit is in use: answer 503 with `Retry-After`.
public struct SlowHashesBusy: Error, Equatable {
    public init() {}
}

private enum PoolEntry { case admitted, waiting, refused }

/// A counting gate for slow password hashes: never more than `permits` at
/// once, and a queue of at most `maxWaiters` callers who wait up to
/// `maxWaitMillis` for a permit (two people signing in at the same moment
/// both get in); anyone beyond that is refused at once. So a flood ties up
/// at most `permits + maxWaiters` worker threads, never all of them.
public final class SlowHashPool: Sendable {
    public let permits: Int
    public let maxWaiters: Int
    public let maxWaitMillis: Int
    private let state = Mutex((running: 0, waiting: 0))

    /// Default: half the cores (at least one) hashing, as many waiting.
    public init(permits: Int = max(1, SlowHashPool.cores / 2), maxWaiters: Int? = nil, maxWaitMillis: Int = 250) {
        self.permits = max(1, permits)
        self.maxWaiters = max(0, maxWaiters ?? self.permits)
        self.maxWaitMillis = maxWaitMillis
    }

    public static var cores: Int { Int(sysconfCores()) }

    /// Runs `body` on a permit, waiting briefly in the small queue if there is
    /// room in it; throws `SlowHashesBusy` otherwise.
    public func run<T>(_ body: () throws -> T) throws -> T {
        let entry = state.withLock { s -> PoolEntry in
            if s.running < permits { s.running += 1; return .admitted }
            if s.waiting < maxWaiters { s.waiting += 1; return .waiting }
            return .refused
        }
        switch entry {
        case .refused: throw SlowHashesBusy()
        case .waiting:
            var admitted = false
            var waited = 0
            while !admitted && waited < maxWaitMillis {
                usleep(2_000)
                waited += 2
                admitted = state.withLock { s in
                    guard s.running < permits else { return false }
                    s.running += 1
                    s.waiting -= 1
                    return true
                }
            }
            if !admitted {
                state.withLock { $0.waiting -= 1 }
                throw SlowHashesBusy()
            }
        case .admitted: break
        }
        defer { state.withLock { $0.running -= 1 } }
        return try body()
    }

    /// How many slow hashes run now (for tests and metrics).
    public var inUse: Int { state.withLock { $0.running } }
    /// How many wait for a permit.
    public var queued: Int { state.withLock { $0.waiting } }
}

/// Failed verifications per key in fixed windows.
public final class FailureLimiter: Sendable {
    public enum Key: Hashable, Sendable {
        /// The remote address of the caller.
        case address(String)
        /// An account (a client id, or a username at sign-in) tried from one address.
        case account(String, from: String)
        /// An account, from any address.
        case accountAnywhere(String)
    }

    /// The keys one failed attempt on `account` from `address` counts against.
    public static func keys(account: String, address: String) -> [Key] {
        let a = addressKey(address), account = accountKey(account)
        return [.address(a), .account(account, from: a), .accountAnywhere(account)]
    }

    /// An account as the limits remember it: as sent when it is no longer
    /// than any real id or username, else by its SHA-256, so an unknown id
    /// of kilobytes costs the table no more than a real one.
    public static func accountKey(_ account: String) -> String {
        account.utf8.count <= 64 ? account : "sha256:" + Hex.encode(Digest.sha256(account))
    }

    /// An address as the limits see it: IPv4 as is, IPv6 by its /64 (one
    /// host usually holds a whole /64, so single addresses would be free).
    public static func addressKey(_ address: String) -> String {
        guard address.contains(":"), !address.hasSuffix("/64") else { return address }
        if address.lowercased().hasPrefix("::ffff:"), address.contains(".") { return String(address.dropFirst(7)) }
        let halves = address.split(separator: "::", maxSplits: 1, omittingEmptySubsequences: false).map { $0.split(separator: ":").map(String.init) }
        var groups = halves[0]
        if halves.count == 2 {
            groups += Array(repeating: "0", count: max(0, 8 - halves[0].count - halves[1].count)) + halves[1]
        }
        return groups.prefix(4).map { g in String(g.lowercased().drop { $0 == "0" }).isEmpty ? "0" : String(g.lowercased().drop { $0 == "0" }) }
            .joined(separator: ":") + "::/64"
    }

    /// Seconds to wait before `account` may be tried from `address` again;
    /// nil when it may be tried now. Checked before every verification:
    /// past ten failures from this address, or past the overall limit when
    /// this address has failed on the account too. An address that never
    /// failed on the account (the account's owner, usually) is never held
    /// back by others' failures: a distributed guess gets one try a window
    /// from each address once the overall limit is reached. With `wholeAccount`
    /// (an account only its owner can try, such as the user codes a signed-in
    /// user enters), the overall limit holds for every address.
    public func refusal(account: String, address: String, now: Int64, wholeAccount: Bool = false) -> Int? {
        let a = FailureLimiter.addressKey(address), account = FailureLimiter.accountKey(account)
        return windows.withLock { w in
            func live(_ key: Key) -> (start: Int64, count: Int)? {
                guard let e = w[key], now - e.start < limits.windowMillis else { return nil }
                return e
            }
            func wait(_ e: (start: Int64, count: Int)) -> Int { Int((e.start + limits.windowMillis - now + 999) / 1000) }
            let own = live(.account(account, from: a))
            if let own, own.count >= limits.perAccount { return wait(own) }
            guard own != nil || wholeAccount else { return nil }
            if let all = live(.accountAnywhere(account)), all.count >= limits.perAccountAnywhere { return wait(all) }
            return nil
        }
    }

    public struct Limits: Sendable, Equatable {
        public var perAddress: Int
        public var perAccount: Int
        public var perAccountAnywhere: Int
        public var windowMillis: Int64

        /// 100 failures a minute from one address (a busy NAT of honest
        /// callers stays below), 10 a minute for one account from one
        /// address, 100 a minute for one account from everywhere.
        public init(perAddress: Int = 100, perAccount: Int = 10, perAccountAnywhere: Int = 100, windowMillis: Int64 = 60_000) {
            self.perAddress = perAddress
            self.perAccount = perAccount
            self.perAccountAnywhere = perAccountAnywhere
            self.windowMillis = windowMillis
        }
    }

    public let limits: Limits
    private let windows = Mutex<[Key: (start: Int64, count: Int)]>([:])
    /// How many keys are remembered (what a flood can make the table hold).
    public var rememberedKeys: Int { windows.withLock { $0.count } }
    private let capacity: Int
    /// Whether the accounts' counts are shared with other nodes through the store (`flush`).
    public let shared: Bool
    /// Failures on accounts counted here since the last `flush`, and how many keys that is (read without the lock).
    private let unsent = Mutex(Unsent())
    private let unsentKeys = Atomic<Int>(0)
    /// Whether a thread is flushing (one at a time).
    private let flushing = Atomic<Bool>(false)
    private let refusedFlushes = Atomic<Int>(0)
    /// Account keys counted here and not yet added to the store (`latchkey_failure_counts_unsent`).
    public var unsentAccountKeys: Int { unsentKeys.load(ordering: .relaxed) }
    /// Flushes the store could not take (`latchkey_failure_count_flushes_failed_total`): while it grows, each
    /// node's limits hold for what that node counted alone.
    public var failedFlushes: Int { refusedFlushes.load(ordering: .relaxed) }
    /// How an account key is named in the store.
    private let keyMAC: @Sendable (String) -> String

    /// `shared`: the store is one several nodes can share (PostgreSQL), and
    /// each node's failures on an account are added to the counts there,
    /// under `keyMAC` of each key (the server's: an HMAC keyed with the
    /// secret pepper every node holds, so the table names no username or
    /// address that a dictionary could find; SHA-256 when none is given).
    public init(limits: Limits = Limits(), capacity: Int = 100_000, shared: Bool = false,
                keyMAC: (@Sendable (String) -> String)? = nil) {
        self.limits = limits
        self.capacity = capacity
        self.shared = shared
        self.keyMAC = keyMAC ?? { Base64.urlEncode(Digest.sha256($0)) }
    }

    /// Counts not yet sent: keys that failed more than once in their window
    /// (someone guessing) apart from the rest, sent first and kept when the
    /// table is full, so a flood of made-up ids, each failing once, neither
    /// starves nor pushes out a real guess's count.
    struct Unsent {
        var repeated: [Key: Int] = [:]
        var once: [Key: Int] = [:]
        var count: Int { repeated.count + once.count }

        mutating func add(_ key: Key, repeatedInWindow: Bool, capacity: Int) {
            if let n = repeated[key] {
                repeated[key] = n + 1
            } else if repeatedInWindow {
                let n = once.removeValue(forKey: key) ?? 0
                if count >= capacity, let first = once.keys.first { once[first] = nil }
                if count < capacity { repeated[key] = n + 1 }
            } else if let n = once[key] {
                once[key] = n + 1
            } else if count < capacity {
                once[key] = 1
            }
        }

        /// Up to `limit` keys and their counts, the repeated first; they leave the table.
        mutating func take(_ limit: Int) -> [Key: Int] {
            var taken: [Key: Int] = [:]
            for (key, n) in repeated.prefix(limit) { taken[key] = n }
            for (key, n) in once.prefix(limit - taken.count) { taken[key] = n }
            for key in taken.keys {
                repeated[key] = nil
                once[key] = nil
            }
            return taken
        }

        /// Counts a flush could not send, back (repeated ones stay repeated).
        mutating func giveBack(_ batch: [Key: Int], capacity: Int) {
            for (key, n) in batch {
                if repeated[key] != nil || n > 1 { repeated[key, default: 0] += n; once[key] = nil } else if once[key] != nil || count < capacity { once[key, default: 0] += n }
            }
        }
    }

    func limit(_ key: Key) -> Int {
        switch key {
        case .address: return limits.perAddress
        case .account: return limits.perAccount
        case .accountAnywhere: return limits.perAccountAnywhere
        }
    }

    /// Seconds until `key` may try again; nil while under its limit. An
    /// `.address` key is given as the raw address.
    public func retryAfter(_ key: Key, now: Int64) -> Int? {
        var key = key
        if case let .address(raw) = key { key = .address(FailureLimiter.addressKey(raw)) }
        return windows.withLock { w -> Int? in
            guard let entry = w[key], now - entry.start < limits.windowMillis, entry.count >= limit(key) else { return nil }
            return Int((entry.start + limits.windowMillis - now + 999) / 1000)
        }
    }

    /// Counts a failure against `keys` (as `keys(account:address:)` makes
    /// them; an `.address` key alone is given as the raw address). When the
    /// table is full, expired windows go first, then those under their limit:
    /// a flood of new addresses cannot wash out a lock-out in force.
    public func recordFailure(_ keys: [Key], now: Int64) {
        let keys = keys.map { key -> Key in
            if case let .address(raw) = key, !raw.hasSuffix("/64") { return .address(FailureLimiter.addressKey(raw)) }
            return key
        }
        windows.withLock { w in
            // An address past its limit is refused before anything else: what it sends next is not remembered,
            // so a refused flood of new ids grows nothing.
            for key in keys {
                if case .address = key, let entry = w[key], now - entry.start < limits.windowMillis, entry.count >= limit(key) { return }
            }
            if w.count >= capacity { w = w.filter { now - $0.value.start < limits.windowMillis } }
            if w.count >= capacity { w = w.filter { $0.value.count >= limit($0.key) } }
            if w.count >= capacity { w.removeAll() }
            for key in keys {
                if let entry = w[key], now - entry.start < limits.windowMillis {
                    w[key] = (entry.start, entry.count + 1)
                } else {
                    w[key] = (now, 1)
                }
            }
            guard shared else { return }
            unsent.withLock { u in
                for key in keys where key.isAccount { u.add(key, repeatedInWindow: (w[key]?.count ?? 0) > 1, capacity: capacity) }
                unsentKeys.store(u.count, ordering: .relaxed)
            }
        }
    }

    /// Adds the failures on accounts counted here since the last flush to
    /// the store's counts and takes the totals back, outside any request's
    /// transaction (the server calls it as each request that failed ends;
    /// nothing to do costs one atomic load). What all nodes together counted on an
    /// account, from one address or from anywhere, then holds here too: a
    /// node learns the total when it next counts a failure itself, so with
    /// N nodes a limit holds to within N − 1 attempts. An address's own
    /// limit stays each node's (it guards that node's work).
    ///
    /// One flush at a time per node, of at most `maxKeysPerFlush` keys a
    /// transaction: a request ending while another flushes leaves its
    /// failures to a later flush, so a flood of wrong secrets from many
    /// addresses keeps one transaction of the database busy per node, not one
    /// per request. A flush goes on while there are some, for `batches`
    /// transactions at most: the server asks for one, so that a failed
    /// request waits for no more than one transaction.
    public func flush(to store: any FailureCountStorage, now: Int64, batches: Int = 8) {
        for _ in 0..<batches {
            guard unsentKeys.load(ordering: .relaxed) > 0,
                  flushing.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return }
            let sent = flushBatch(to: store, now: now)
            flushing.store(false, ordering: .releasing)
            guard sent else { return }
        }
    }

    /// Sends one batch of unsent counts; false when there was none, or the store could not take it.
    private func flushBatch(to store: any FailureCountStorage, now: Int64) -> Bool {
        let batch = unsent.withLock { u -> [Key: Int] in
            defer { unsentKeys.store(u.count, ordering: .relaxed) }
            return u.take(FailureLimiter.maxKeysPerFlush)
        }
        guard !batch.isEmpty else { return false }
        var byHash: [String: Key] = [:]
        var counts: [String: Int] = [:]
        for (key, count) in batch {
            let hash = sharedKey(key)
            byHash[hash] = key
            counts[hash] = count
        }
        let totals: [String: (start: Int64, count: Int)]
        do {
            totals = try store.writeDeferringFlush { try store.addFailures(counts, now: now, windowMillis: limits.windowMillis) }
        } catch {
            // The database away a moment: added at a later flush (this node's own counts hold meanwhile).
            refusedFlushes.add(1, ordering: .relaxed)
            unsent.withLock { u in
                u.giveBack(batch, capacity: capacity)
                unsentKeys.store(u.count, ordering: .relaxed)
            }
            return false
        }
        windows.withLock { w in
            for (hash, total) in totals {
                // A window another node began by a clock ahead of this one's begins now here (never in the future).
                let start = min(total.start, now)
                guard let key = byHash[hash], now - start < limits.windowMillis else { continue }
                if let entry = w[key], now - entry.start < limits.windowMillis, entry.count >= total.count { continue }
                if w[key] != nil || w.count < capacity { w[key] = (start, total.count) }
            }
        }
        return true
    }

    /// The most keys one flush sends (a transaction of as many upserts).
    static let maxKeysPerFlush = 128

    /// An account key as the store knows it (`keyMAC`): `f:` from one address, `a:` from anywhere.
    public func sharedKey(_ key: Key) -> String {
        switch key {
        case let .account(account, from: address): "f:" + keyMAC("failure-count\u{0}from\u{0}\(account)\u{0}\(address)")
        case let .accountAnywhere(account): "a:" + keyMAC("failure-count\u{0}any\u{0}\(account)")
        case let .address(address): "x:" + keyMAC("failure-count\u{0}address\u{0}\(address)")
        }
    }
}

extension FailureLimiter.Key {
    /// An account's key (from an address, or from anywhere): counted for all nodes when they share a store.
    var isAccount: Bool {
        if case .address = self { return false }
        return true
    }
}

/// Remembers slow-hash verifications, keyed by a keyed hash of the client,
/// the stored secret and the presented secret: successes until the secret is
/// rotated (the key changes with the stored secret, so an old entry can never
/// match again), failures for `failureMillis`. Shared by all worker threads.
public final class VerifiedSecretCache: Sendable {
    private let entries = Mutex<Set<[UInt8]>>([])
    /// Keys the users' entries (`signInKey`): random for each process, as it needs to outlive nothing.
    private let signInMAC = HMACKey(key: SecureRandom.bytes(32))
    private let failures = Mutex<[[UInt8]: Int64]>([:])
    private let capacity: Int
    public let failureMillis: Int64

    public init(capacity: Int = 10_000, failureMillis: Int64 = 60_000) {
        self.capacity = capacity
        self.failureMillis = failureMillis
    }

    func contains(_ key: [UInt8]) -> Bool { entries.withLock { $0.contains(key) } }

    /// The entry of a user's password verified against their stored hash: a
    /// new password hash (`latchkey user password`) makes every old entry
    /// unreachable, as a rotated client secret does.
    func signInKey(userID: String, passwordHash: String, password: String) -> [UInt8] {
        signInMAC.mac(Array("user\u{0}\(userID)\u{0}\(passwordHash)\u{0}\(password)".utf8))
    }

    func insert(_ key: [UInt8]) {
        entries.withLock {
            if $0.count >= capacity { $0.removeAll() }
            $0.insert(key)
        }
    }

    /// Whether this presented secret failed against this stored secret recently.
    func failedRecently(_ key: [UInt8], now: Int64) -> Bool {
        failures.withLock { f in
            guard let until = f[key] else { return false }
            if until > now { return true }
            f[key] = nil
            return false
        }
    }

    func insertFailure(_ key: [UInt8], now: Int64) {
        failures.withLock { f in
            if f.count >= capacity { f = f.filter { $0.value > now } }
            if f.count >= capacity { f.removeAll() }
            f[key] = now + failureMillis
        }
    }
}

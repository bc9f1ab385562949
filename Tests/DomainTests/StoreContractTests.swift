import Common
import Cryptography
import Foundation
import SQLiteStore
import OAuth
import Synchronization
import Postgres
import PostgresStore
import TestSupport
import Testing

/// Exactly-once rules under races between connections (SPEC 9): the
/// threads here stand for workers and nodes, each with its own connection.
/// The suite runs on SQLite and, under `LATCHKEY_TEST_STORE=postgres`, on
/// PostgreSQL (scripts/test runs both).
@Suite struct StoreContractTests {
    /// Runs `body` on `count` threads at once, each with its own connection.
    func race<T: Sendable>(_ h: StoreFixture, _ count: Int, _ body: @escaping @Sendable (any Store, Int) throws -> T) -> [Result<T, any Error>] {
        let factory = h.storeFactory
        let results = Mutex<[Result<T, any Error>]>([])
        let start = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        for i in 0..<count {
            Thread.detachNewThread {
                let store = Result { try factory() }
                start.wait()
                let outcome = store.flatMap { s in Result { try body(s, i) } }
                results.withLock { $0.append(outcome) }
                done.signal()
            }
        }
        for _ in 0..<count { start.signal() }
        for _ in 0..<count { done.wait() }
        return results.withLock { $0 }
    }

    /// Key changes racing on several connections (nodes) leave one current key per algorithm (review of the change,
    /// session 29: on PostgreSQL each rotation retired only the keys it saw, and two at once left two current keys).
    @Test func keyChangesRacingLeaveOneCurrentKeyPerAlgorithm() throws {
        let h = try StoreFixture()
        let env = h.env
        for _ in 0..<4 {
            let first = try #require(try h.store.read { try h.store.signingKeys() }.first { $0.algorithm == "ES256" && $0.retiredAt == nil }?.kid)
            let outcomes = race(h, 8) { store, i in
                if i % 4 == 3 { _ = try KeyManagement.revoke(store: store, env: env, kid: first) } else {
                    try KeyManagement.rotate(store: store, env: env, algorithm: i % 4 == 2 ? .rs256 : .es256)
                }
            }
            #expect(outcomes.filter { if case .success = $0 { true } else { false } }.count >= 7, "\(outcomes)")
            let current = try h.store.read { try h.store.signingKeys() }.filter { $0.retiredAt == nil }.map(\.algorithm)
            #expect(current.sorted() == ["ES256", "RS256"], "\(current)")
        }
    }

    /// A FAPI 2.0 client's retries with the token a rotation replaced, racing on several connections: exactly one
    /// withdraws the unused successor; once the retried token counts as rotated anew, the others find no successor.
    @Test func retriesRacingWithdrawTheUnusedSuccessorOnce() throws {
        let h = try StoreFixture()
        let user = try h.user()
        let (client, _) = try h.app(public: false)
        try h.insertRefreshToken(hash: "retried", family: "retry-family", client: client, user: user)
        let rotatedAt = h.clock.now
        try h.store.write {
            #expect(try h.store.claimRefreshToken(hash: "retried", clientID: client, jkt: nil, at: rotatedAt)?.claimed == true)
            try h.store.insertRefreshToken(RefreshTokenRecord(tokenHash: "successor", familyID: "retry-family", clientID: client, userID: user,
                                                              scope: ["openid"], authTime: rotatedAt / 1000, createdAt: rotatedAt,
                                                              expiresAt: rotatedAt + 60_000, jkt: nil, parentHash: "retried"))
        }
        let retried = try #require(try h.store.read { try h.store.refreshToken(hash: "retried") })
        let outcomes = race(h, 8) { store, i in try store.write { try store.withdrawUnusedSuccessor(of: retried, at: rotatedAt + 1_000 + Int64(i)) } }
        #expect(outcomes.filter { (try? $0.get()) == true }.count == 1, "\(outcomes)")
        #expect(try h.store.read { try h.store.refreshToken(hash: "successor") }?.withdrawnAt != nil, "marked, kept")
        #expect(try h.store.read { try h.store.refreshToken(hash: "retried") }?.rotatedAt == rotatedAt, "the retried token's rotation stays")
        // A used successor is not withdrawn, nor what it issued.
        let again = try #require(try h.store.read { try h.store.refreshToken(hash: "retried") })
        let later = (again.rotatedAt ?? 0) + 1
        try h.store.write {
            try h.store.insertRefreshToken(RefreshTokenRecord(tokenHash: "used-successor", familyID: "retry-family", clientID: client, userID: user,
                                                              scope: ["openid"], authTime: later / 1000, createdAt: later,
                                                              expiresAt: later + 60_000, jkt: nil, parentHash: "retried"))
            _ = try h.store.claimRefreshToken(hash: "used-successor", clientID: client, jkt: nil, at: later)
            try h.store.insertRefreshToken(RefreshTokenRecord(tokenHash: "current", familyID: "retry-family", clientID: client, userID: user,
                                                              scope: ["openid"], authTime: later / 1000, createdAt: later,
                                                              expiresAt: later + 60_000, jkt: nil, parentHash: "used-successor"))
        }
        #expect(try !h.store.write { try h.store.withdrawUnusedSuccessor(of: again, at: later + 1) })
        #expect(try h.store.read { try h.store.refreshToken(hash: "current") } != nil)
    }

    /// Runs `change` in a write on another connection (another node) and,
    /// while that write still holds what it changed, `body` on this one; the
    /// other write commits `seconds` later. Returns the other write's error.
    static func whileAnotherConnectionHolds(_ h: StoreFixture, for seconds: Double = 0.3, _ change: @escaping @Sendable (any Store) throws -> Void,
                                            _ body: () throws -> Void) throws -> String? {
        let factory = h.storeFactory
        let failure = Mutex<String?>(nil)
        let holding = DispatchSemaphore(value: 0), finished = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            do {
                let other = try factory()
                try other.write {
                    try change(other)
                    holding.signal()
                    Thread.sleep(forTimeInterval: seconds)
                }
            } catch {
                failure.withLock { $0 = "\(error)" }
                holding.signal()
            }
            finished.signal()
        }
        holding.wait()
        try body()
        finished.wait()
        return failure.withLock { $0 }
    }

    /// A write of client `id` as another node makes it: `change` applied to
    /// the row it holds, and a new version.
    static func changingClient(_ id: String, _ change: @escaping @Sendable (inout Client) -> Void) -> @Sendable (any Store) throws -> Void {
        { other in
            guard var client = try other.clientForUpdate(id) else { throw HarnessError("no client \(id)") }
            change(&client)
            client.version += 1
            try other.updateClient(client)
        }
    }

    /// A client being changed on another node holds back no grant of it:
    /// PostgreSQL's store locks the row `FOR NO KEY UPDATE`, which the
    /// grants' foreign keys (`KEY SHARE`) pass. Locked `FOR UPDATE`, every
    /// redemption of the client waited for the change to commit, and a
    /// disable (which waits for the code row a redemption claimed)
    /// deadlocked with one for a second, PostgreSQL's `deadlock_timeout`.
    @Test(.enabled(if: TestStore.kind == .postgres, "row locks are PostgreSQL's; SQLite has one writer"))
    func aClientBeingChangedHoldsBackNoGrantOfIt() throws {
        let h = try StoreFixture()
        let userID = try h.user()
        let (client, _) = try h.app()
        let failure = try Self.whileAnotherConnectionHolds(h, for: 3, Self.changingClient(client) { $0.description = "being changed" }) {
            try h.store.write { try h.store.insertFamily(id: "held-family", clientID: client, userID: userID, createdAt: h.clock.now, sid: nil) }
            // Written while the change was still in flight, not after it committed.
            let third = try h.anotherStore()
            #expect(try third.read { try third.client(client) }?.description != "being changed")
        }
        #expect(failure == nil)
        #expect(try h.store.read { try h.store.client(client) }?.description == "being changed")
    }

    /// An update made against version N while another node's write of the
    /// same client is in flight waits for it and sees version N+1: 412, not
    /// a lost update (SPEC 9: version conflicts are detected across nodes).
    @Test func anUpdateRacingAnotherNodesSeesItsCommit() throws {
        let h = try StoreFixture()
        let (id, _) = try h.app()
        let registry = try h.registry()
        let admin = try h.caller(scopes: Scopes.primary)
        let version = try #require(try h.store.read { try h.store.client(id) }).version
        let failure = try Self.whileAnotherConnectionHolds(h, Self.changingClient(id) { $0.enabled = false }) {
            #expect(throws: RegistryError.preconditionFailed) {
                _ = try registry.update(id, caller: admin, expected: .ifMatch(version)) { current in
                    var spec = ClientSpec(current)
                    spec.description = "changed on this node"
                    return spec
                }
            }
        }
        #expect(failure == nil)
        let final = try #require(try h.store.read { try h.store.client(id) })
        #expect(!final.enabled && final.version == version + 1 && final.description != "changed on this node")
    }

    /// `latchkey org reset-primary` while a node writes the primary: the reset
    /// waits and starts from that write (nothing of it lost, and the
    /// generation bump that ends the old tokens is not overwritten).
    @Test func aPrimaryResetRacingAnotherNodesWriteKeepsBoth() throws {
        let h = try StoreFixture()
        let id = h.primary.clientID
        let before = try #require(try h.store.read { try h.store.client(id) })
        let failure = try Self.whileAnotherConnectionHolds(h, Self.changingClient(id) { $0.description = "changed on another node" }) {
            _ = try Provisioning(env: h.env, store: h.store).resetPrimary(organizationID: h.primary.organizationID)
        }
        #expect(failure == nil)
        let final = try #require(try h.store.read { try h.store.client(id) })
        #expect(final.description == "changed on another node" && final.version == before.version + 2
                && final.tokenGeneration == before.tokenGeneration + 1)
    }

    /// SPEC 7.1 (attacker review, session 13): a caller holding providers:manage stored 0.9 MB a record, without a
    /// limit on records, and the unpaged list answered 18 MB. Lists within a record and records within an
    /// organization are bounded; the limit holds per organization.
    @Test func upstreamRecordsAreBounded() throws {
        let h = try StoreFixture()
        let upstreams = UpstreamRegistry(env: h.env, store: h.store)
        let caller = try h.caller(scopes: ["providers:manage"])
        func input(_ name: String) -> UpstreamInput {
            var input = UpstreamInput()
            (input.name, input.provider, input.clientID, input.clientSecret, input.scopes) = (name, "Google", "app-1", "s3cret", ["openid"])
            return input
        }
        let many = (0...UpstreamRegistry.maxListEntries).map { "g\($0)" }
        var groups = input("Groups"), scopes = input("Scopes"), urls = input("Cluster"), long = input("Long")
        groups.opswiseGroups = many
        scopes.scopes = many
        urls.clusterRedirectURLs = (0...UpstreamRegistry.maxClusterRedirectURLs).map { (node: "n\($0)", url: "https://n\($0).example/cb") }
        long.clusterRedirectURLs = [(node: "n", url: "https://n.example/" + String(repeating: "a", count: 2048))]
        for (refused, field) in [(groups, "opswiseGroups"), (scopes, "scopes"), (urls, "clusterRedirectUrls"), (long, "clusterRedirectUrls[0].redirectUrl")] {
            #expect { _ = try upstreams.create(refused, caller: caller) } throws: { ($0 as? UpstreamError).map {
                if case let .invalid(f, _) = $0 { return f == field } else { return false } } ?? false }
        }
        groups.opswiseGroups = Array(many.dropLast())
        _ = try upstreams.create(groups, caller: caller)
        for i in 1..<UpstreamRegistry.maxRecordsPerOrganization { _ = try upstreams.create(input("Record \(i)"), caller: caller) }
        #expect { _ = try upstreams.create(input("One too many"), caller: caller) } throws: { ($0 as? UpstreamError).map {
            if case .conflict = $0 { return true } else { return false } } ?? false }
        // Another organization has a limit of its own.
        let beta = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Beta", clientLimit: 10)
        _ = try upstreams.create(input("One too many"), caller: try h.caller(beta.clientID, scopes: ["providers:manage"]))
        #expect(try h.store.read { try h.store.upstreamCount(organizationID: caller.organizationID) } == UpstreamRegistry.maxRecordsPerOrganization)
    }

    /// The same for an upstream record (SPEC 6.5's `version`): 409, not a lost update.
    @Test func anUpstreamUpdateRacingAnotherNodesSeesItsCommit() throws {
        let h = try StoreFixture()
        let upstreams = UpstreamRegistry(env: h.env, store: h.store)
        let caller = try h.caller(scopes: ["providers:manage"])
        var input = UpstreamInput()
        (input.name, input.provider, input.clientID, input.clientSecret, input.scopes) = ("Corp AD", "Azure AD", "app-1", "s3cret", ["openid"])
        let created = try upstreams.create(input, caller: caller)
        let failure = try Self.whileAnotherConnectionHolds(h, { other in
            guard var record = try other.upstream(organizationID: created.organizationID, sysID: created.sysID) else { throw HarnessError("none") }
            record.description = "changed on another node"
            record.version += 1
            guard try other.updateUpstream(record, from: created.version) else { throw HarnessError("not updated") }
        }) {
            var change = UpstreamInput()
            (change.sysID, change.description, change.version) = (created.sysID, "changed on this node", created.version)
            #expect(throws: UpstreamError.self) { _ = try upstreams.update(change, caller: caller) }
        }
        #expect(failure == nil)
        let final = try #require(try h.store.read { try h.store.upstream(organizationID: created.organizationID, sysID: created.sysID) })
        #expect(final.description == "changed on another node" && final.version == created.version + 1)
        // Without a version, the same race is no conflict: the update starts over from the other node's record.
        let again = try Self.whileAnotherConnectionHolds(h, { other in
            guard var record = try other.upstream(organizationID: created.organizationID, sysID: created.sysID) else { throw HarnessError("none") }
            record.scopes = ["openid", "email"]
            record.version += 1
            guard try other.updateUpstream(record, from: final.version) else { throw HarnessError("not updated") }
        }) {
            var change = UpstreamInput()
            (change.sysID, change.description) = (created.sysID, "changed on this node")
            let updated = try upstreams.update(change, caller: caller)
            #expect(updated.description == "changed on this node")
        }
        #expect(again == nil)
        let last = try #require(try h.store.read { try h.store.upstream(organizationID: created.organizationID, sysID: created.sysID) })
        #expect(last.description == "changed on this node" && last.scopes == ["openid", "email"] && last.version == final.version + 2)
    }

    @Test func aCodeIsConsumedOnceHoweverManyConnectionsRace() throws {
        let h = try StoreFixture()
        let user = try h.user()
        let (client, _) = try h.app()
        let now = h.clock.now
        try h.insertCode(hash: "race-code", client: client, user: user)
        let outcomes = race(h, 8) { store, i in try store.write { try store.claimCode(hash: "race-code", clientID: client, jkt: nil, at: now, familyID: "family-\(i)")?.claimed } }
        let wins = outcomes.filter { (try? $0.get()) == true }.count
        let refused = outcomes.filter { if case .failure = $0 { return true } else { return false } }
        #expect(wins == 1, "\(outcomes)")
        // A connection may be told to retry (503) but never wins a second time.
        #expect(refused.allSatisfy { if case .failure(let e) = $0 { return (e as? StoreError)?.isTransient == true } else { return false } })
    }

    @Test func aRefreshTokenRotatesOnceHoweverManyConnectionsRace() throws {
        let h = try StoreFixture()
        let user = try h.user()
        let (client, _) = try h.app()
        let now = h.clock.now
        try h.insertRefreshToken(hash: "race-refresh", family: "fam", client: client, user: user)
        let outcomes = race(h, 8) { store, _ in try store.write { try store.claimRefreshToken(hash: "race-refresh", clientID: client, jkt: nil, at: now)?.claimed } }
        #expect(outcomes.filter { (try? $0.get()) == true }.count == 1, "\(outcomes)")
        // The winner's rotation is what stays.
        #expect(try h.store.read { try h.store.refreshToken(hash: "race-refresh")?.rotatedAt } == now)
    }

    /// A claim given back in its own transaction leaves the record as it was:
    /// the next claim takes it (a rotation or a redemption refused after its
    /// claim, e.g. for a scope the grant does not hold, spends nothing).
    @Test func aClaimGivenBackLeavesTheRecordToTheNextClaim() throws {
        let h = try StoreFixture()
        let user = try h.user()
        let (client, _) = try h.app()
        let now = h.clock.now
        try h.insertRefreshToken(hash: "given-back", family: "fam", client: client, user: user)
        try h.insertCode(hash: "given-back-code", client: client, user: user)
        for _ in 0..<2 {
            let took = try h.store.write {
                let token = try h.store.claimRefreshToken(hash: "given-back", clientID: client, jkt: nil, at: now)?.claimed
                try h.store.unclaimRefreshToken(hash: "given-back")
                let code = try h.store.claimCode(hash: "given-back-code", clientID: client, jkt: nil, at: now, familyID: "f1")?.claimed
                try h.store.unclaimCode(hash: "given-back-code")
                return [token, code]
            }
            #expect(took == [true, true])
        }
        #expect(try h.store.read { try h.store.refreshToken(hash: "given-back")?.rotatedAt } == nil)
        let code = try #require(try h.store.read { try h.store.code(hash: "given-back-code") })
        #expect(code.consumedAt == nil && code.familyID == nil)
        // Claimed for good: the next claim finds it taken, as it was.
        #expect(try h.store.write { try h.store.claimRefreshToken(hash: "given-back", clientID: client, jkt: nil, at: now + 1)?.claimed } == true)
        let again = try #require(try h.store.write { try h.store.claimRefreshToken(hash: "given-back", clientID: client, jkt: nil, at: now + 2) })
        #expect(!again.claimed && again.record.rotatedAt == now + 1)
        #expect(try h.store.write { try h.store.claimRefreshToken(hash: "unknown", clientID: client, jkt: nil, at: now) } == nil)
    }

    /// Only the record's client, with the DPoP key it is bound to, takes it:
    /// another caller's claim finds it as it is and writes nothing (so a
    /// refused request never holds or changes the owner's row).
    @Test func aClaimByAnotherClientOrWithoutTheBoundKeyTakesNothing() throws {
        let h = try StoreFixture()
        let user = try h.user()
        let (client, _) = try h.app()
        let (other, _) = try h.app()
        let now = h.clock.now
        try h.insertRefreshToken(hash: "bound", family: "fam", client: client, user: user, jkt: "key-1")
        try h.insertCode(hash: "bound-code", client: client, user: user, jkt: "key-1")
        let attempts: [(String, String?)] = [(other, "key-1"), (client, nil), (client, "key-2"), (other, nil)]
        for (caller, jkt) in attempts {
            let took = try h.store.write {
                [try h.store.claimRefreshToken(hash: "bound", clientID: caller, jkt: jkt, at: now)?.claimed,
                 try h.store.claimCode(hash: "bound-code", clientID: caller, jkt: jkt, at: now, familyID: "f")?.claimed]
            }
            #expect(took == [false, false], "\(caller) \(jkt ?? "no key")")
        }
        #expect(try h.store.read { try h.store.refreshToken(hash: "bound")?.rotatedAt } == nil)
        #expect(try h.store.read { try h.store.code(hash: "bound-code")?.consumedAt } == nil)
        let owner = try h.store.write {
            [try h.store.claimRefreshToken(hash: "bound", clientID: client, jkt: "key-1", at: now)?.claimed,
             try h.store.claimCode(hash: "bound-code", clientID: client, jkt: "key-1", at: now, familyID: "f")?.claimed]
        }
        #expect(owner == [true, true])
    }

    @Test func anAuthorizationRequestIsAnsweredOnce() throws {
        let h = try StoreFixture()
        let (client, _) = try h.app()
        let now = h.clock.now
        let request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true, scope: ["openid"], state: nil,
                                           nonce: nil, codeChallenge: StoreContractTests.challenge, prompt: [], maxAge: nil)
        try h.store.write { try h.store.insertAuthorizationRequest(idHash: "race-request", request: request, createdAt: now, expiresAt: now + 60_000) }
        let outcomes = race(h, 8) { store, _ in try store.write { try store.markAuthorizationRequestAnswered(idHash: "race-request", at: now) } }
        #expect(outcomes.filter { (try? $0.get()) == true }.count == 1, "\(outcomes)")
    }

    /// RFC 8628: a device code is answered once (approve and deny racing on two
    /// consent screens) and redeemed once (parallel polls), and a user code
    /// names one live device code at a time.
    @Test func aDeviceCodeIsAnsweredOnceAndRedeemedOnce() throws {
        let h = try StoreFixture()
        let user = try h.user()
        let (client, _) = try h.app(grantTypes: [.deviceCode])
        let now = h.clock.now
        let record = DeviceCodeRecord(deviceCodeHash: "race-device", userCodeHash: "race-user", clientID: client, scope: ["openid"], createdAt: now,
                                      expiresAt: now + 600_000, interval: 5)
        #expect(try h.store.write { try h.store.insertDeviceCode(record) })
        var clash = record
        clash.deviceCodeHash = "another-device"
        #expect(try h.store.write { try h.store.insertDeviceCode(clash) } == false, "the user code is taken")
        let answers = race(h, 8) { store, _ in
            try store.write {
                try store.answerDeviceCode(hash: "race-device", status: .approved, userID: user, scope: ["openid"], authTime: now / 1000, now: now)
            }
        }
        #expect(answers.filter { (try? $0.get()) == true }.count == 1, "\(answers)")
        #expect(try h.store.write {
            try h.store.answerDeviceCode(hash: "race-device", status: .denied, userID: user, scope: [], authTime: now / 1000, now: now)
        } == false, "an answered code is not answered again")
        let redemptions = race(h, 8) { store, i in try store.write { try store.redeemDeviceCode(hash: "race-device", familyID: "family-\(i)", jkt: nil) } }
        #expect(redemptions.filter { (try? $0.get()) == true }.count == 1, "\(redemptions)")
        #expect(try h.store.read { try h.store.deviceCode(hash: "race-device") }?.status == .redeemed)
    }

    /// What ends a user's grants to a client: the user disconnecting it
    /// (SPEC 5.2), its organization disabling the client (SPEC 4.5), or the
    /// user signing out of the session a grant without `offline_access`
    /// is bound to (Back-Channel Logout 1.0 §2.7).
    enum GrantEnding: String, CaseIterable, CustomTestStringConvertible {
        case disconnect, disable, logout
        var testDescription: String { rawValue }
    }

    /// SPEC 5.2 and 4.5 under a race: a user disconnects the client, its
    /// organization disables it, or the user signs out, while its device
    /// (or its code flow) redeems a grant on another connection. Whichever commits first, no grant
    /// outlives the ending: a family the redemption created is revoked by
    /// the ending that followed it.
    @Test(arguments: GrantEnding.allCases) func anEndingRacingARedemptionLeavesNoLiveGrant(_ ending: GrantEnding) throws {
        let h = try StoreFixture()
        let userID = try h.user()
        let (client, _) = try h.app(grantTypes: [.authorizationCode, .deviceCode, .refreshToken])
        let user = try #require(try h.store.read { try h.store.user(id: userID) })
        let env = h.env
        let setEnabled = try Self.settingEnabled(h, client)
        var familiesSeen = 0
        for round in 0..<30 {
            let now = h.clock.now
            let sessionToken = "race-session-\(round)"
            let session = SessionRecord(idHash: SessionService.hash(sessionToken), userID: userID, csrf: "c", authTime: now / 1000,
                                        createdAt: now, expiresAt: now + 3_600_000)
            try h.store.write { try h.store.insertSession(session) }
            // A device grant is bound to no session, and signing out ends only what was granted without offline_access.
            let redeem = try Self.redemption(h, client: client, user: user, device: round % 2 == 0 && ending != .logout, name: "race-\(round)",
                                             scope: ending == .logout ? ["openid"] : ["openid", "offline_access"], session: session)
            _ = race(h, 2) { store, i in
                if i == 0 { _ = try redeem(store); return }
                // The ending starts a little later each round, to land anywhere inside the redemption's transaction.
                usleep(UInt32(round % 10) * 250)
                switch ending {
                case .disconnect: _ = try ConnectionService(env: env, store: store).delete(userID: userID, clientID: client)
                case .disable: try setEnabled(store, false)
                case .logout: try SessionService(env: env, store: store).logout(sessionToken)
                }
            }
            switch ending {
            case .disconnect:
                #expect(try h.store.read { try h.store.connection(userID: userID, clientID: client) } == nil)
                #expect(try h.store.read { try h.store.connections(userID: userID, limit: 10, offset: 0).total } == 0)
            case .disable:
                // Enabled again, the client gets none of its grants back (the next round needs it enabled too).
                try setEnabled(h.store, true)
            case .logout:
                #expect(try h.store.read { try h.store.session(idHash: session.idHash) } == nil)
            }
            // Every family of the pair is revoked.
            let families = try StoreContractTests.familyIDs(h, userID: userID, clientID: client)
            familiesSeen = families.count
            for family in families {
                #expect(try h.store.read { try h.store.isFamilyRevoked(id: family) }, "round \(round): family \(family) outlived the \(ending)")
            }
        }
        // Some redemptions won their race (else the rounds proved nothing).
        #expect(familiesSeen > 0)
    }

    /// RFC 6749 §4.1.2 under a race (attacker review, session 18): the same
    /// code (or device code) redeemed on two nodes at once. One redemption
    /// wins; the other, which read it unspent and lost the race to it,
    /// revokes what the winner issued, as a replay after it does.
    @Test func aCodeRedeemedTwiceAtOnceRevokesWhatTheWinnerIssued() throws {
        let h = try StoreFixture()
        let userID = try h.user()
        let (client, _) = try h.app(grantTypes: [.authorizationCode, .deviceCode, .refreshToken])
        let user = try #require(try h.store.read { try h.store.user(id: userID) })
        for round in 0..<16 {
            let redeem = try Self.redemption(h, client: client, user: user, device: round % 2 == 0, name: "twice-\(round)",
                                             scope: ["openid", "offline_access"])
            let outcomes = race(h, 2) { store, _ in try redeem(store) }
            let issued = outcomes.compactMap { try? $0.get() }
            #expect(issued.count == 1, "round \(round): \(outcomes)")
            // What the winner issued is revoked: its refresh token's family.
            for response in issued {
                let refresh = try #require(response.refreshToken)
                let family = try #require(try h.store.read { try h.store.refreshToken(hash: Base64.urlEncode(Digest.sha256(refresh))) }?.familyID)
                #expect(try h.store.read { try h.store.isFamilyRevoked(id: family) }, "round \(round): the winner's tokens outlived the second redemption")
            }
        }
    }

    /// What an ID token says of the user is read inside the grant's
    /// transaction (attacker review, session 18): read after the commit, a
    /// failure (here the profiles' table locked past the statement's lock
    /// timeout, as a database gone a moment) answered 503 for a code already
    /// spent, and the client's retry was a replay that revoked the grant.
    @Test(.enabled(if: TestStore.kind == .postgres, "a table lock from another session is PostgreSQL's"))
    func aRedemptionThatFailsReadingTheProfileLeavesItsCodeUnspent() throws {
        let h = try StoreFixture()
        let userID = try h.user()
        let (client, _) = try h.app()
        let user = try #require(try h.store.read { try h.store.user(id: userID) })
        let scope = ["openid", "profile"]
        let request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true,
                                           scope: scope, state: nil, nonce: nil, codeChallenge: StoreContractTests.challenge, prompt: [], maxAge: nil)
        let code = try AuthorizationService(env: h.env, store: h.store).issueCode(request, user: user, authTime: h.clock.now / 1000, session: nil,
                                                                                scope: scope, consent: .forget, answering: nil)
        let parameters = ["code": code, "redirect_uri": StoreFixture.redirect]
        let locker = try PGConnection(try #require(h.postgres).url)
        try locker.run("BEGIN")
        try locker.run("LOCK TABLE user_profiles IN ACCESS EXCLUSIVE MODE")
        #expect(throws: StoreError.self) { try Self.exchange(h.env, h.store, "authorization_code", parameters, client) }
        try locker.run("ROLLBACK")
        let retried = try Self.exchange(h.env, h.store, "authorization_code", parameters, client)
        #expect(retried.idToken != nil)
    }

    /// Two grants to one user and client at once (two tabs' consents, a
    /// device approval beside a browser's consent): the connection keeps
    /// every scope either granted, whether it existed before or both create
    /// it. On PostgreSQL each read the row before the other committed, and
    /// the later write put back a list without the other's scope.
    @Test(arguments: [true, false])
    func twoGrantsAtOnceKeepEveryScopeEitherGranted(connectedBefore: Bool) throws {
        let h = try StoreFixture()
        let userID = try h.user()
        let (client, _) = try h.app()
        let user = try #require(try h.store.read { try h.store.user(id: userID) })
        let env = h.env, now = h.clock.now
        let grant: @Sendable (any Store, [String]) throws -> Void = { store, scope in
            let request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true,
                                               scope: scope, state: nil, nonce: nil, codeChallenge: StoreContractTests.challenge, prompt: [], maxAge: nil)
            _ = try AuthorizationService(env: env, store: store).issueCode(request, user: user, authTime: now / 1000, session: nil, scope: scope,
                                                                          consent: .forget, answering: nil)
        }
        if connectedBefore { try grant(h.store, ["openid"]) }
        let failure = try Self.whileAnotherConnectionHolds(h, { try grant($0, ["openid", "profile"]) }) {
            try grant(h.store, ["openid", "email"])
        }
        #expect(failure == nil)
        let connection = try #require(try h.store.read { try h.store.connection(userID: userID, clientID: client) })
        // Each once; in the order the grants committed.
        #expect(Set(connection.grantedScope) == ["openid", "profile", "email"] && connection.grantedScope.count == 3)
    }

    /// A request answered without asking because the remembered consent
    /// covered it is granted only if the consent still covers it when the
    /// grant is written (attacker review, session 24): a disconnect, or a
    /// narrowing, committed between the check and the write leaves no code
    /// and no connection brought back; the user is asked instead.
    @Test func aGrantOnRememberedConsentNeedsTheConsentStillThere() throws {
        let h = try StoreFixture()
        let userID = try h.user()
        let (client, _) = try h.app()
        let user = try #require(try h.store.read { try h.store.user(id: userID) })
        func grant(_ scope: [String], _ consent: RememberedConsent) throws -> String {
            let request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true,
                                               scope: scope, state: nil, nonce: nil, codeChallenge: StoreContractTests.challenge, prompt: [], maxAge: nil)
            return try AuthorizationService(env: h.env, store: h.store).issueCode(request, user: user, authTime: h.clock.now / 1000, session: nil,
                                                                                 scope: scope, consent: consent, answering: nil)
        }
        _ = try grant(["openid", "profile"], .replace)
        _ = try grant(["openid"], .covered)
        var codes = try Self.codeHashes(h).count
        // Wider than what is remembered: no code.
        #expect(throws: RememberedConsentWithdrawn()) { try grant(["openid", "email"], .covered) }
        #expect(try Self.codeHashes(h).count == codes)
        // Disconnected meanwhile: no code, and the connection stays gone.
        try h.store.write { try h.store.deleteConnection(userID: userID, clientID: client) }
        codes = try Self.codeHashes(h).count
        #expect(throws: RememberedConsentWithdrawn()) { try grant(["openid"], .covered) }
        #expect(try h.store.read { try h.store.connection(userID: userID, clientID: client) } == nil)
        #expect(try Self.codeHashes(h).count == codes)
        // A device's approval (`keep`) is the user's own answer: it connects the app again.
        _ = try grant(["openid"], .keep)
        #expect(try h.store.read { try h.store.connection(userID: userID, clientID: client) } != nil)
    }

    /// A user narrows what the app may take without asking while a grant
    /// that keeps the remembered consent (a device's approval) is under way
    /// on another node: the narrowing stands. Before the connection was read
    /// for update, that grant wrote back the wider list it had read.
    @Test func aNarrowedConsentIsNotUndoneByAGrantThatKeepsWhatWasRemembered() throws {
        let h = try StoreFixture()
        let userID = try h.user()
        let (client, _) = try h.app()
        let user = try #require(try h.store.read { try h.store.user(id: userID) })
        let env = h.env, now = h.clock.now
        let grant: @Sendable (any Store, [String], RememberedConsent) throws -> Void = { store, scope, consent in
            let request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true,
                                               scope: scope, state: nil, nonce: nil, codeChallenge: StoreContractTests.challenge, prompt: [], maxAge: nil)
            _ = try AuthorizationService(env: env, store: store).issueCode(request, user: user, authTime: now / 1000, session: nil, scope: scope,
                                                                          consent: consent, answering: nil)
        }
        try grant(h.store, ["openid", "profile"], .replace)
        // This node's grant has read the connection and not committed when the user's narrowing starts on another
        // node; it commits once the narrowing has, or after half a second if the narrowing waits for it (as it must).
        let factory = h.storeFactory
        let failure = Mutex<String?>(nil)
        let ready = DispatchSemaphore(value: 0), go = DispatchSemaphore(value: 0), narrowed = DispatchSemaphore(value: 0)
        // The other node connects first, so that the half second is its grant's alone.
        Thread.detachNewThread {
            do {
                let other = try factory()
                ready.signal()
                go.wait()
                try grant(other, ["openid"], .replace)
            } catch {
                failure.withLock { $0 = "\(error)" }
                ready.signal()
            }
            narrowed.signal()
        }
        ready.wait()
        try h.store.write {
            try grant(h.store, ["openid", "email"], .keep)
            go.signal()
            if narrowed.wait(timeout: .now() + 0.5) == .success { narrowed.signal() }
        }
        narrowed.wait()
        #expect(failure.withLock { $0 } == nil)
        let connection = try #require(try h.store.read { try h.store.connection(userID: userID, clientID: client) })
        #expect(connection.rememberedScope == ["openid"])
        #expect(Set(connection.grantedScope) == ["openid", "profile", "email"])
    }

    /// A consent answered while its session signs out on another node
    /// (review, session 18): the consent read the session before its write,
    /// and the logout spent the session's codes and revoked its grants
    /// before this code existed, which then outlived it. The code's write
    /// holds the session: the logout comes first and no code is issued (as
    /// here: on SQLite the write waits for it, on PostgreSQL the hold does),
    /// or it waits and then spends the code.
    @Test func noCodeIsIssuedInASessionThatSignedOutMeanwhile() throws {
        let h = try StoreFixture()
        let userID = try h.user()
        let (client, _) = try h.app()
        let user = try #require(try h.store.read { try h.store.user(id: userID) })
        let token = "session-signing-out", now = h.clock.now
        let session = SessionRecord(idHash: SessionService.hash(token), userID: userID, csrf: "c", authTime: now / 1000, createdAt: now,
                                    expiresAt: now + 3_600_000)
        try h.store.write { try h.store.insertSession(session) }
        let request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true,
                                           scope: ["openid"], state: nil, nonce: nil, codeChallenge: StoreContractTests.challenge, prompt: [], maxAge: nil)
        let env = h.env
        let failure = try Self.whileAnotherConnectionHolds(h, { try SessionService(env: env, store: $0).logout(token) }) {
            #expect(throws: ConsentError.loginRequired) {
                try AuthorizationService(env: h.env, store: h.store).issueCode(request, user: user, authTime: now / 1000, session: session,
                                                                              scope: ["openid"], consent: .forget, answering: nil)
            }
        }
        #expect(failure == nil)
        #expect(try h.store.read { try h.store.connection(userID: userID, clientID: client) } == nil, "nothing of the refused write stays")
    }

    /// The same race made certain: another node's redemption has claimed
    /// the code and not yet committed when this one reads it unspent. On
    /// PostgreSQL this one's claim waits, then takes nothing, and it revokes
    /// the family the winner committed; on SQLite it waits for the winner
    /// and finds a replay. Either way the winner's grant is revoked.
    @Test func theRedemptionThatLosesTheRaceRevokesTheWinnersFamily() throws {
        let h = try StoreFixture()
        let userID = try h.user()
        let (client, _) = try h.app()
        let user = try #require(try h.store.read { try h.store.user(id: userID) })
        let redeem = try Self.redemption(h, client: client, user: user, device: false, name: "held", scope: ["openid", "offline_access"])
        let hash = try #require(try h.store.read { try Self.codeHashes(h) }.first)
        let now = h.clock.now
        let failure = try Self.whileAnotherConnectionHolds(h, { other in
            guard try other.claimCode(hash: hash, clientID: client, jkt: nil, at: now, familyID: "winner")?.claimed == true else {
                throw HarnessError("the other node did not claim the code")
            }
            try other.insertFamily(id: "winner", clientID: client, userID: userID, createdAt: now, sid: nil)
        }) {
            do {
                _ = try redeem(h.store)
                Issue.record("a claimed code was redeemed again")
            } catch let e as OAuthError {
                #expect(e.code == "invalid_grant")
                #expect(e.detail == (TestStore.isSQLite ? "code replayed" : "code consumed concurrently"), "\(e)")
            }
        }
        #expect(failure == nil)
        #expect(try h.store.read { try h.store.isFamilyRevoked(id: "winner") })
    }

    /// The hashes of the codes in the store, as a backup sees them.
    static func codeHashes(_ h: StoreFixture) throws -> [String] { try h.texts("authorization_codes", "code_hash") }

    /// Enables or disables `client` as its organization's primary does, on the store given.
    static func settingEnabled(_ h: StoreFixture, _ client: String) throws -> @Sendable (any Store, Bool) throws -> Void {
        let env = h.env, admin = try h.caller(), hasher = try Provisioning.secretHasher(store: h.store, env: env)
        return { store, enabled in
            _ = try ClientRegistry(env: env, store: store, hasher: hasher).update(client, caller: admin, expected: nil) { current in
                var spec = ClientSpec(current)
                spec.enabled = enabled
                return spec
            }
        }
    }

    /// SPEC 4.5 under a race: a consent answered while its client is being
    /// disabled read the client enabled, and wrote its code after the
    /// disable had withdrawn the client's codes (on SQLite the write waits
    /// for the disable to commit). Enabling the client again brings no such
    /// code back: no code is issued to a disabled client, so any still there
    /// is one of those, and re-enabling withdraws it.
    @Test func aCodeIssuedAsItsClientIsDisabledIsGoneWhenItIsEnabledAgain() throws {
        let h = try StoreFixture()
        let userID = try h.user()
        let (client, _) = try h.app()
        let user = try #require(try h.store.read { try h.store.user(id: userID) })
        let setEnabled = try Self.settingEnabled(h, client)
        let request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true,
                                           scope: ["openid", "offline_access"], state: nil, nonce: nil, codeChallenge: StoreContractTests.challenge, prompt: [], maxAge: nil)
        var code: String?
        let failure = try Self.whileAnotherConnectionHolds(h, { try setEnabled($0, false) }) {
            code = try? AuthorizationService(env: h.env, store: h.store).issueCode(request, user: user, authTime: h.clock.now / 1000, session: nil,
                                                                                  scope: ["openid", "offline_access"], consent: .forget, answering: nil)
        }
        #expect(failure == nil)
        try setEnabled(h.store, true)
        // The code was issued (the request read the client enabled) and is gone.
        let issued = try #require(code)
        #expect(throws: OAuthError.self) {
            try StoreContractTests.exchange(h.env, h.store, "authorization_code", ["code": issued, "redirect_uri": StoreFixture.redirect], client)
        }
        #expect(try StoreContractTests.familyIDs(h, userID: userID, clientID: client).isEmpty)
    }

    /// A grant of `user` to `client` ready to be redeemed on any connection:
    /// a device code the user approved (`device`), or a code issued in
    /// `session`; the closure redeems it.
    static func redemption(_ h: StoreFixture, client: String, user: User, device: Bool, name: String, scope: [String],
                           session: SessionRecord? = nil) throws -> @Sendable (any Store) throws -> TokenResponse {
        let env = h.env, now = h.clock.now
        if device {
            let code = "lkd_\(name)"
            let hash = Base64.urlEncode(Digest.sha256(code))
            try h.store.write {
                _ = try h.store.insertDeviceCode(DeviceCodeRecord(deviceCodeHash: hash, userCodeHash: "user-\(name)", clientID: client, scope: scope,
                                                                  createdAt: now, expiresAt: now + 600_000, interval: 5))
                _ = try h.store.answerDeviceCode(hash: hash, status: .approved, userID: user.id, scope: scope, authTime: now / 1000, now: now)
                try h.store.upsertConnection(UserConnection(userID: user.id, clientID: client, rememberedScope: [], grantedScope: scope,
                                                            authTime: now / 1000, accessTime: now, createdAt: now))
            }
            return { store in try StoreContractTests.exchange(env, store, GrantType.deviceCode.rawValue, ["device_code": code], client) }
        }
        let request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true,
                                           scope: scope, state: nil, nonce: nil, codeChallenge: StoreContractTests.challenge, prompt: [], maxAge: nil)
        let code = try AuthorizationService(env: env, store: h.store).issueCode(request, user: user, authTime: now / 1000, session: session, scope: scope,
                                                                              consent: .forget, answering: nil)
        return { store in try StoreContractTests.exchange(env, store, "authorization_code", ["code": code, "redirect_uri": StoreFixture.redirect], client) }
    }

    /// PKCE for the public clients' codes these tests make (RFC 7636 Appendix B's pair).
    static let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    static let challenge = Base64.urlEncode(Digest.sha256(verifier))

    /// A public client's redemption; a code's comes with the verifier of `challenge`.
    static func exchange(_ env: OAuth.Environment, _ store: any Store, _ grantType: String, _ parameters: [String: String], _ client: String) throws -> TokenResponse {
        var parameters = parameters
        if grantType == "authorization_code" && parameters["code_verifier"] == nil { parameters["code_verifier"] = verifier }
        let service = TokenService(env: env, store: store, keys: KeyRing(store: store, env: env))
        let hasher = try Provisioning.secretHasher(store: store, env: env)
        return try TokenExchange(service: service, authenticator: ClientAuthenticator(env: env, store: store, hasher: hasher, guards: nil))
            .exchange(TokenRequest(grantType: grantType, parameters: parameters), credentials: .publicClient(clientID: client))
    }

    /// The token families of a user and client, as a backup sees them.
    static func familyIDs(_ h: StoreFixture, userID: String, clientID: String) throws -> [String] {
        try h.rows("token_families").filter { $0["user_id"] == .text(userID) && $0["client_id"] == .text(clientID) }
            .compactMap { if case let .text(v)? = $0["id"] { v } else { nil } }
    }

    @Test func theClientLimitHoldsUnderConcurrentCreates() throws {
        let h = try StoreFixture()
        let org = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Limited", clientLimit: 5)
        let primary = try #require(try h.store.client(org.clientID))
        let env = h.env
        let pepper = try #require(Hex.decode(String(repeating: "ab", count: 32)))
        let outcomes = race(h, 10) { store, i in
            let caller = Caller(client: primary, scopes: primary.scope, requestID: nil, surface: "test")
            return try ClientRegistry(env: env, store: store, hasher: SecretHasher(pepper: pepper))
                .create(ClientSpec(name: "racer \(i)"), caller: caller).client.clientID
        }
        let created = outcomes.compactMap { try? $0.get() }
        #expect(created.count == 4, "\(outcomes)")
        #expect(outcomes.allSatisfy {
            if case .failure(let e) = $0 { return (e as? RegistryError) == .limitReached || (e as? StoreError)?.isTransient == true } else { return true }
        })
        #expect(try h.store.clientCount(organizationID: org.organizationID) == 5)
        #expect(try h.store.clients(organizationID: org.organizationID, namePrefix: nil, limit: 50, offset: 0).clients.count == 5)
    }

    /// The anonymous registration allowance: spent by exactly `limit` of many racing writes, then refused until the
    /// window ends (when it is), and started over after it.
    @Test func theAnonymousAllowanceIsSpentExactlyUnderRaces() throws {
        let h = try StoreFixture()
        let org = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Open", clientLimit: 5).organizationID
        let outcomes = race(h, 10) { store, _ in
            try store.write { try store.spendAnonymousWrite(organizationID: org, limit: 3, windowMillis: 1_000, now: 10_000) }
        }
        let counted = outcomes.filter { if case .success(nil) = $0 { return true } else { return false } }.count
        #expect(counted == 3, "\(outcomes)")
        #expect(outcomes.allSatisfy {
            switch $0 {
            case .success(let ends): return ends == nil || ends == 11_000
            case .failure(let e): return (e as? StoreError)?.isTransient == true
            }
        })
        #expect(try h.store.write { try h.store.spendAnonymousWrite(organizationID: org, limit: 3, windowMillis: 1_000, now: 10_999) } == 11_000)
        #expect(try h.store.write { try h.store.spendAnonymousWrite(organizationID: org, limit: 3, windowMillis: 1_000, now: 11_000) } == nil)
        #expect(try h.store.write { try h.store.spendAnonymousWrite(organizationID: org, limit: 3, windowMillis: 1_000, now: 11_001) } == nil)
    }

    @Test func aRevocationOnOneConnectionIsSeenByEveryOtherAtOnce() throws {
        let h = try StoreFixture()
        let token = try h.token()
        let other = try h.anotherStore()
        let claims = try #require(try AccessTokens(env: h.env, store: other, keys: KeyRing(store: other, env: h.env)).validate(token)?.claims)
        try h.store.write { try h.store.revokeAccessToken(jti: claims.jti, expiresAt: claims.expiresAt * 1000, now: h.clock.now) }
        #expect(try other.read { try AccessTokens(env: h.env, store: other, keys: KeyRing(store: other, env: h.env)).validate(token) } == nil)
    }

    /// A blind write that fails at the COMMIT fails the whole transaction:
    /// nothing of it is stored, and the caller gets the error.
    /// Listings are filtered and paged by the store (issue 12): a page costs a page.
    @Test func clientListingsAreFilteredAndPagedInTheStore() throws {
        let h = try StoreFixture()
        let store = h.store
        try store.write {
            try store.insertOrganization(Organization(id: "org-list", name: "Listed", clientLimit: 100, primaryClientID: nil, createdAt: 1))
            for (i, used) in [nil, 1_000, 5_000, nil, 9_000].enumerated() {
                var c = Client(clientID: "list-\(i)", organizationID: "org-list", name: i < 3 ? "alpha \(i)" : "beta \(i)",
                               redirectURIs: [], grantTypes: [.clientCredentials], authMethod: .clientSecretBasic, scope: [], createdAt: Int64(10 + i))
                c.lastUsedAt = used.map(Int64.init)
                try store.insertClient(c)
            }
        }
        func ids(_ filter: ClientFilter, limit: Int = 50, offset: Int = 0) throws -> ([String], Int) {
            let page = try store.read { try store.clients(organizationID: "org-list", filter: filter, limit: limit, offset: offset) }
            return (page.clients.map(\.clientID), page.total)
        }
        #expect(try ids(ClientFilter()) == (["list-0", "list-1", "list-2", "list-3", "list-4"], 5))
        #expect(try ids(ClientFilter(lastUsed: .never)) == (["list-0", "list-3"], 2))
        #expect(try ids(ClientFilter(lastUsed: .atOrBefore(5_000))) == (["list-1", "list-2"], 2))
        #expect(try ids(ClientFilter(namePrefix: "alpha", lastUsed: .atOrBefore(9_000))) == (["list-1", "list-2"], 2))
        #expect(try ids(ClientFilter(lastUsed: .atOrBefore(9_000)), limit: 1, offset: 1) == (["list-2"], 3))
    }

    @Test func aFailingBlindWriteFailsTheWholeTransaction() throws {
        let h = try StoreFixture()
        let userID = try h.user()
        let (client, _) = try h.app()
        let store = h.store
        let now = h.clock.now
        let token = RefreshTokenRecord(tokenHash: "dup-hash", familyID: "fam-1", clientID: client, userID: userID, scope: ["openid"],
                                       authTime: now / 1000, createdAt: now, expiresAt: now + 60_000)
        try store.write {
            try store.insertFamily(id: "fam-1", clientID: client, userID: userID, createdAt: now, sid: nil)
            try store.insertRefreshToken(token)
        }
        #expect(throws: StoreError.self) {
            try store.write {
                try store.insertFamily(id: "fam-2", clientID: client, userID: userID, createdAt: now, sid: nil)
                _ = try store.claimRefreshToken(hash: "dup-hash", clientID: client, jkt: nil, at: now)
                try store.insertRefreshToken(token)  // the same hash again: refused, at the latest at the COMMIT
            }
        }
        #expect(try store.read { try store.refreshToken(hash: "dup-hash")?.rotatedAt } == nil, "the rotation was rolled back")
        // The connection goes on: the next write works.
        try store.write { try store.insertFamily(id: "fam-3", clientID: client, userID: userID, createdAt: now, sid: nil) }
    }
}

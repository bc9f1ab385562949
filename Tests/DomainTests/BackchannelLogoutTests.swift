import Common
import Cryptography
import JOSE
import OAuth
import TestSupport
import Testing

/// Back-Channel Logout 1.0 over plain values, on the store the run is on.
@Suite struct BackchannelLogoutTests {
    static let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    static let uri = "https://rp.example/backchannel"

    let g: GrantTesting
    var h: StoreFixture { g.h }

    init() throws { g = try GrantTesting() }

    /// `count` new confidential clients of the primary organization, each listening.
    func listeningClients(_ count: Int) throws -> [String] {
        try (0..<count).map { _ in
            let (id, _) = try h.app(public: false)
            try listen(id)
            return id
        }
    }

    func listen(_ clientID: String, sessionRequired: Bool = false) throws {
        try h.store.write {
            var c = try #require(try h.store.client(clientID))
            c.backchannelLogoutURI = Self.uri
            c.backchannelLogoutSessionRequired = sessionRequired
            try h.store.updateClient(c)
        }
    }

    func signIn() throws -> (token: String, sid: String, record: SessionRecord) {
        let started = try #require(try SessionService(env: h.env, store: h.store).login(username: "alice", password: "correct horse battery"))
        let record = try #require(try h.store.read { try h.store.session(idHash: SessionService.hash(started.token)) })
        #expect(record.sid == BackchannelLogout.sid(sessionIDHash: SessionService.hash(started.token)))
        return (started.token, record.sid, record)
    }

    func redeem(_ code: String, _ client: String, _ secret: String?) throws -> TokenResponse {
        try g.exchange("authorization_code", ["code": code, "redirect_uri": StoreFixture.redirect, "code_verifier": Self.verifier],
                       as: .basic(clientID: client, secret: secret ?? ""))
    }

    /// A listening client Alice signed into, then a logout: one delivery queued.
    func signedOutOfAListeningClient() throws -> String {
        let alice = try h.user()
        let (listening, secret) = try h.app(public: false)
        try listen(listening)
        let (session, _, record) = try signIn()
        _ = try redeem(try g.code(client: listening, user: alice, scope: ["openid"], session: record), listening, secret)
        try SessionService(env: h.env, store: h.store).logout(session)
        return listening
    }

    var sender: LogoutSender { LogoutSender(env: h.env, store: h.store, keys: KeyRing(store: h.store, env: h.env)) }

    /// One pass of a new sender, all at once: every due delivery it starts, then `post` answers for each
    /// whether it was delivered. Returns how many it attempted.
    func runOnce(_ post: ([(uri: String, form: [UInt8], operatorNetworks: Bool)]) -> [Bool]) throws -> Int {
        let s = sender, round = Round()
        let attempted = try s.fill(round)
        guard !round.started.isEmpty else { return attempted }
        let delivered = post(round.started.map { ($0.uri, $0.form, $0.operatorNetworks) })
        try s.record(round.started.enumerated().map { i, p in (p.tag, i < delivered.count && delivered[i]) })
        return attempted
    }
    var due: [LogoutDelivery] { get throws { try h.store.read { try h.store.dueLogouts(now: h.clock.now, limit: 50, perClient: .max, perShare: .max) } } }

    /// The client a POST's logout token is for (unverified).
    static func audience(_ form: [UInt8]) -> String? {
        let text = String(decoding: form, as: UTF8.self)
        guard text.hasPrefix("logout_token=") else { return nil }
        return JWS.parse(String(text.dropFirst("logout_token=".count)))?.payload["aud"]?.stringValue
    }

    /// The logout token a POST carried, verified with the published key.
    func logoutToken(_ form: [UInt8]) throws -> JWS.Parsed {
        let text = String(decoding: form, as: UTF8.self)
        #expect(text.hasPrefix("logout_token="))
        let parsed = try #require(JWS.parse(String(text.dropFirst("logout_token=".count))))
        let kid = try #require(parsed.kid)
        let key = try #require(try KeyRing(store: h.store, env: h.env).verificationKey(kid: kid))
        #expect(JWS.verify(parsed, key: key))
        return parsed
    }

    @Test func aLogoutQueuesATokenForEachListeningClientAndEndsTheGrantsBoundToTheSession() throws {
        let alice = try h.user()
        let (listening, secret) = try h.app(public: false)
        let (quiet, quietSecret) = try h.app(public: false)
        try listen(listening)
        let (session, sid, record) = try signIn()
        // §2.1: ID tokens carry the session's sid.
        let bound = try redeem(try g.code(client: listening, user: alice, scope: ["openid"], session: record), listening, secret)
        let boundIDToken = try #require(bound.idToken)
        let idToken = try #require(JWS.parse(boundIDToken))
        #expect(idToken.payload["sid"] == .string(sid))
        let offline = try redeem(try g.code(client: listening, user: alice, scope: ["openid", "offline_access"], session: record), listening, secret)
        _ = try redeem(try g.code(client: quiet, user: alice, scope: ["openid"], session: record), quiet, quietSecret)
        #expect(try due.isEmpty)

        try SessionService(env: h.env, store: h.store).logout(session)
        let queued = try due
        #expect(queued.count == 1, "one token, for the one client that listens, however many codes it got")
        #expect(queued.first?.clientID == listening && queued.first?.subject == alice && queued.first?.sid == sid)
        // §2.7: what was granted without offline_access ends with the session; with it, it outlives it.
        let caller = try #require(try h.store.read { try h.store.client(listening) })
        #expect(try g.service.introspect(token: bound.accessToken, caller: caller)["active"] == false)
        #expect(try g.service.introspect(token: offline.accessToken, caller: caller)["active"] == true)
        #expect(try g.service.introspect(token: try #require(offline.refreshToken), caller: caller)["active"] == true)

        var posts: [(String, [UInt8])] = []
        #expect(try runOnce { batch in posts += batch.map { ($0.uri, $0.form) }; return batch.map { _ in true } } == 1)
        #expect(posts.count == 1 && posts.first?.0 == Self.uri)
        let form = try #require(posts.first?.1)
        let token = try logoutToken(form)
        // §2.4: typ, iss, aud, sub, sid, iat, exp, jti, the event; never a nonce.
        #expect(token.typ == "logout+jwt" && token.algorithm == caller.idTokenAlg.rawValue)
        let claims = token.payload
        #expect(claims["iss"] == .string(StoreFixture.issuer) && claims["aud"] == .string(listening) && claims["sub"] == .string(alice))
        #expect(claims["sid"] == .string(sid) && claims["events"] == [BackchannelLogout.event: [:]] && claims["nonce"] == nil)
        #expect(claims["jti"]?.stringValue != nil && claims["exp"]!.intValue! - claims["iat"]!.intValue! == 120)
        #expect(try due.isEmpty, "delivered once, then forgotten")
        // A second logout of the same session tells nobody again.
        try SessionService(env: h.env, store: h.store).logout(session)
        #expect(try due.isEmpty)
    }

    @Test func signingInPastTheUsersSessionLimitEndsTheOldestAsItsLogoutWould() throws {
        let alice = try h.user()
        let (listening, secret) = try h.app(public: false)
        try listen(listening)
        let sessions = SessionService(env: h.env, store: h.store, sessionsPerUser: 3)
        func signIn() throws -> String {
            try #require(try sessions.login(username: "alice", password: "correct horse battery")).token
        }
        let oldest = try signIn()
        let oldestRecord = try #require(try h.store.read { try h.store.session(idHash: SessionService.hash(oldest)) })
        let bound = try redeem(try g.code(client: listening, user: alice, scope: ["openid"], session: oldestRecord), listening, secret)
        h.clock.advance(seconds: 1)
        // Sign-ins within one millisecond: the session just started is never the one ended.
        let kept = [try signIn(), try signIn()]
        #expect(try sessions.current(oldest) != nil && due.isEmpty, "three sessions: none ended yet")

        let newest = try signIn()
        #expect(try sessions.current(oldest) == nil, "the fourth sign-in ended the oldest")
        for token in kept + [newest] { #expect(try sessions.current(token) != nil) }
        let queued = try due
        #expect(queued.count == 1 && queued.first?.clientID == listening && queued.first?.sid == oldestRecord.sid)
        let caller = try #require(try h.store.read { try h.store.client(listening) })
        #expect(try g.service.introspect(token: bound.accessToken, caller: caller)["active"] == false, "its grants ended with it")

        // Ten more at the limit within one millisecond: the one just started always stays, and three are left.
        h.clock.advance(seconds: 1)
        let later = try (0..<10).map { _ in
            let token = try signIn()
            #expect(try sessions.current(token) != nil)
            return token
        }
        let live = try (kept + [newest] + later).filter { try sessions.current($0) != nil }
        #expect(live.count == 3 && live.allSatisfy(later.contains) && live.last == later.last)
    }

    @Test func aFailedDeliveryIsRetriedWithBackoffThenGivenUpAndAudited() throws {
        let listening = try signedOutOfAListeningClient()
        var attempts = 0
        for wait in LogoutSender.backoff {
            #expect(try runOnce { batch in attempts += batch.count; return batch.map { _ in false } } == 1)
            #expect(try runOnce { batch in attempts += batch.count; return batch.map { _ in false } } == 0, "not before its time")
            h.clock.advance(seconds: wait)
        }
        #expect(try runOnce { batch in attempts += batch.count; return batch.map { _ in false } } == 1)
        #expect(attempts == LogoutSender.backoff.count + 1)
        #expect(try due.isEmpty)
        h.clock.advance(seconds: 86_400)
        #expect(try due.isEmpty, "given up")
        let audit = try h.store.read { try h.store.auditEvents(organizationID: h.primary.organizationID, limit: 50, offset: 0) }.events
        #expect(audit.contains { $0.action == "logout.delivery_failed" && $0.target == listening && $0.details["attempts"] == 6 })
    }

    @Test func aBatchGoesOutTogetherAndOnlyTheFailuresAreRetried() throws {
        let alice = try h.user()
        let (first, firstSecret) = try h.app(public: false)
        let (second, secondSecret) = try h.app(public: false)
        try listen(first)
        try listen(second)
        let (session, _, record) = try signIn()
        _ = try redeem(try g.code(client: first, user: alice, scope: ["openid"], session: record), first, firstSecret)
        _ = try redeem(try g.code(client: second, user: alice, scope: ["openid"], session: record), second, secondSecret)
        try SessionService(env: h.env, store: h.store).logout(session)
        var batches: [Int] = []
        let failing = try #require(try due.first?.clientID)
        #expect(try runOnce { batch in batches.append(batch.count); return [false, true] } == 2)
        #expect(batches == [2], "one batch, posted together")
        h.clock.advance(seconds: LogoutSender.backoff[0])
        #expect(try due.map(\.clientID) == [failing], "the delivered one is gone, the failed one waits for its retry")
    }

    @discardableResult
    func enqueue(_ clientID: String, _ share: String, _ subject: String, limitPerShare: Int = BackchannelLogout.pendingPerShare,
                 reservedPerClient: Int = BackchannelLogout.reservedPerClient) throws -> Bool {
        try h.store.write { () throws -> Bool in
            try h.store.enqueueLogout(LogoutDelivery(id: h.env.randomID(24), clientID: clientID, share: share, subject: subject,
                                                     sid: nil, nextAttemptAt: h.clock.now, createdAt: h.clock.now),
                                      limitPerClient: BackchannelLogout.pendingPerClient, limitPerShare: limitPerShare,
                                      reservedPerClient: reservedPerClient) == .queued
        }
    }

    var round: [LogoutDelivery] {
        get throws {
            try h.store.read { try h.store.dueLogouts(now: h.clock.now, limit: LogoutSender.batch, perClient: LogoutSender.perClient,
                                                      perShare: LogoutSender.perShare) }
        }
    }

    func markAnonymous(_ clientID: String) throws {
        try h.store.write {
            var c = try #require(try h.store.client(clientID))
            c.attributes.set("registered_anonymously", .bool(true))
            try h.store.updateClient(c)
        }
    }

    /// A round shares itself out (review, session 26): however many of one
    /// organization's clients have older deliveries waiting (receivers that
    /// never answer hold a round for its whole timeout), another
    /// organization's delivery goes out in the next round, and neither one
    /// client nor one organization takes more than its share of it; each
    /// share's oldest go first.
    @Test func aRoundIsSharedBetweenOrganizationsAndClients() throws {
        let crowded = h.primary.organizationID
        let crowd = try listeningClients(8)
        for n in 0..<3 {
            for client in crowd { try enqueue(client, crowded, "user-\(n)") }
            h.clock.advance(seconds: 1)
        }
        let other = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Other", clientLimit: 10)
        try listen(other.clientID)
        try enqueue(other.clientID, other.organizationID, "bob")
        let picked = try round
        #expect(picked.contains { $0.clientID == other.clientID && $0.share == other.organizationID })
        let crowdedPicked = picked.filter { $0.share == crowded }
        #expect(crowdedPicked.count == LogoutSender.perShare)
        #expect(crowdedPicked.allSatisfy { $0.subject == "user-0" }, "the share's oldest")
        #expect(Dictionary(grouping: picked, by: \.clientID).values.allSatisfy { $0.count <= LogoutSender.perClient })
        #expect(try runOnce { batch in batch.map { _ in false } } == LogoutSender.perShare + 1)
        #expect(try due.count == 8 * 3 - LogoutSender.perShare, "the attempted ones wait for their retry")
        h.clock.advance(seconds: LogoutSender.backoff[0])
        #expect(try due.contains { $0.clientID == other.clientID })
        #expect(try due.count == 8 * 3 + 1)
    }

    /// Every share with a delivery due gets one in a round before any gets a
    /// second: five organizations with older backlogs (four each would fill
    /// the round) do not keep a sixth's one delivery out.
    @Test func everyShareGetsOneBeforeAnyGetsASecond() throws {
        let provisioning = Provisioning(env: h.env, store: h.store)
        for o in 0..<5 {
            let org = try provisioning.createOrganization(name: "Busy \(o)", clientLimit: 10)
            var clients = [org.clientID]
            for _ in 0..<2 {
                let created = try h.registry().create(ClientSpec(name: "c", redirectURIs: [StoreFixture.redirect]),
                                                      caller: try h.caller(org.clientID, scopes: ["clients:read", "clients:write"]))
                clients.append(created.client.clientID)
            }
            for client in clients { for n in 0..<2 { try enqueue(client, org.organizationID, "user-\(n)") } }
        }
        h.clock.advance(seconds: 1)
        let quiet = try provisioning.createOrganization(name: "Quiet", clientLimit: 10)
        try enqueue(quiet.clientID, quiet.organizationID, "bob")
        let picked = try round
        #expect(picked.count == LogoutSender.batch)
        #expect(picked.contains { $0.share == quiet.organizationID })
        #expect(Set(picked.map(\.share)).count == 6)
    }

    /// Anonymous registrants wait in a share of their own: their backlog
    /// neither takes the tenant's managed clients' share of a round nor
    /// fills their limit of waiting deliveries; and any client with fewer
    /// than its reserve waiting is queued whatever its share holds.
    @Test func anonymousRegistrantsWaitInAShareOfTheirOwn() throws {
        let org = h.primary.organizationID
        let anonymous = try listeningClients(4)
        for id in anonymous { try markAnonymous(id) }
        let (managed, _) = try h.app(public: false)
        try listen(managed)
        let anonymousShare = try LogoutDelivery.share(of: #require(try h.store.read { try h.store.client(anonymous[0]) }))
        #expect(anonymousShare == org + ":anonymous")
        #expect(try LogoutDelivery.share(of: #require(try h.store.read { try h.store.client(managed) })) == org)
        for client in anonymous { for n in 0..<3 { try enqueue(client, anonymousShare, "user-\(n)", limitPerShare: 12, reservedPerClient: 2) } }
        #expect(try !enqueue(anonymous[0], anonymousShare, "one more", limitPerShare: 12, reservedPerClient: 2), "the share is full")
        h.clock.advance(seconds: 1)
        #expect(try enqueue(managed, org, "bob", limitPerShare: 12, reservedPerClient: 2))
        let picked = try round
        #expect(picked.filter { $0.share == anonymousShare }.count == LogoutSender.perShare)
        #expect(picked.contains { $0.clientID == managed })
        // A fifth anonymous client, with none waiting, has its reserve although its share is full.
        let (late, _) = try h.app(public: false)
        #expect(try enqueue(late, anonymousShare, "carol", limitPerShare: 12, reservedPerClient: 2))
        #expect(try enqueue(late, anonymousShare, "dave", limitPerShare: 12, reservedPerClient: 2))
        #expect(try !enqueue(late, anonymousShare, "erin", limitPerShare: 12, reservedPerClient: 2), "past its reserve")
        // A logout queues in the client's share.
        let signedOut = try signedOutOfAnonymousClient()
        #expect(try due.first { $0.clientID == signedOut }?.share == anonymousShare)
    }

    /// A listening anonymous client Alice signed into, then a logout: the client.
    func signedOutOfAnonymousClient() throws -> String {
        let alice = try h.user()
        let (listening, secret) = try h.app(public: false)
        try listen(listening)
        try markAnonymous(listening)
        let (session, _, record) = try signIn()
        _ = try redeem(try g.code(client: listening, user: alice, scope: ["openid"], session: record), listening, secret)
        try SessionService(env: h.env, store: h.store).logout(session)
        return listening
    }

    /// POSTs in flight end on their own (review, session 26): receivers that
    /// never answer hold their share's four slots and nothing else, while
    /// another organization's deliveries are started, delivered and followed
    /// by its next ones as each slot frees up; when the silent POSTs time out,
    /// the share's next deliveries take their slots.
    @Test func receiversThatNeverAnswerHoldOnlyTheirShareOfTheSlots() throws {
        let silent = h.primary.organizationID
        let crowd = try listeningClients(4)
        for n in 0..<3 { for client in crowd { try enqueue(client, silent, "user-\(n)") } }
        let other = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Other", clientLimit: 10)
        try listen(other.clientID)
        for n in 0..<5 { try enqueue(other.clientID, other.organizationID, "bob-\(n)") }
        let transport = Slots(capacity: LogoutSender.batch) { !crowd.contains($0) }
        let s = sender
        for _ in 0..<4 {
            try s.pump(transport, waitMillis: 0)
            #expect(transport.inFlightByClient.filter { crowd.contains($0.key) }.values.reduce(0, +) == LogoutSender.perShare)
        }
        #expect(transport.delivered == 5, "every one of the other organization's tokens, past the silent ones")
        #expect(try due.filter { $0.clientID == other.clientID }.isEmpty && transport.started == 4 + 5)
        // The silent POSTs time out: failed attempts, and the share's next deliveries take the slots.
        transport.endSilent()
        try s.pump(transport, waitMillis: 0)
        #expect(transport.started == 4 + 5 + LogoutSender.perShare && s.sending == LogoutSender.perShare)
    }

    /// A sender made afresh (after a database error) while its predecessor's
    /// POSTs are still in flight drives the transport all the same: as those
    /// end, unknown to it, their slots free up and take its deliveries, and
    /// no outcome of theirs is taken for one of its own (review, session 27).
    @Test func aNewSenderFreesTheSlotsItsPredecessorLeftInFlight() throws {
        let clients = try listeningClients(3)
        for client in clients { for n in 0..<2 { try enqueue(client, h.primary.organizationID, "user-\(n)") } }
        let transport = Slots(capacity: 2) { _ in false }
        try sender.pump(transport, waitMillis: 0)
        #expect(transport.inFlight == 2 && transport.started == 2)
        let successor = sender
        #expect(try successor.pump(transport, waitMillis: 0) == 0, "every slot still taken")
        transport.endSilent()
        #expect(try successor.pump(transport, waitMillis: 0) == 2)
        #expect(successor.sending == 2 && transport.inFlight == 2 && transport.started == 4)
        #expect(try due.count == 6 - 4, "the predecessor's two wait for their claims to lapse, not counted delivered")
    }

    /// While a POST is in flight and none ends, the queue is read for the
    /// free slots once per `refillMillis`, not at every wake-up (a receiver
    /// trickling bytes woke the loop at every packet); a POST that ends has
    /// its slot refilled at once.
    @Test func theQueueIsReadForFreeSlotsOncePerIntervalUnlessAPostEnds() throws {
        let (silent, _) = try h.app(public: false)
        let (other, _) = try h.app(public: false)
        try listen(silent)
        try listen(other)
        try enqueue(silent, h.primary.organizationID, "alice")
        let transport = Slots(capacity: 4) { $0 != silent }
        let s = sender
        #expect(try s.pump(transport, waitMillis: 0, refillMillis: 1000) == 1)
        try enqueue(other, "another share", "bob")
        #expect(try s.pump(transport, waitMillis: 0, refillMillis: 1000) == 0, "due, but the queue was read just now")
        h.clock.advance(seconds: 1)
        #expect(try s.pump(transport, waitMillis: 0, refillMillis: 1000) == 1)
        try enqueue(other, "another share", "carol")
        #expect(try s.pump(transport, waitMillis: 0, refillMillis: 1000) == 1, "bob's POST ended: its slot refilled at once")
    }

    /// The operator's non-public networks (`LATCHKEY_BACKCHANNEL_ALLOW`) are
    /// for the clients it manages: a client registered anonymously chose its
    /// URI as anyone may, so its tokens go to public addresses only (review,
    /// session 26), checked for each POST of a batch on its own.
    @Test func anonymouslyRegisteredClientsNeverReachTheOperatorsNetworks() throws {
        let org = h.primary.organizationID
        let (managed, _) = try h.app(public: false)
        let (anonymous, _) = try h.app(public: false)
        try listen(managed)
        try listen(anonymous)
        try markAnonymous(anonymous)
        try enqueue(managed, org, "alice")
        try enqueue(anonymous, org + ":anonymous", "alice")
        let allowed = try #require(IPNetworks("10.0.0.0/8"))
        var reach: [String: [Bool]] = [:]
        let sent = try runOnce { batch in
            for item in batch {
                let aud = (try? logoutToken(item.form).payload["aud"]?.stringValue) ?? "?"
                reach[aud] = [[93, 184, 216, 34], [127, 0, 0, 1], [10, 1, 2, 3]].map {
                    LogoutSender.mayPost(to: $0, allowed: allowed, operatorNetworks: item.operatorNetworks)
                }
            }
            return batch.map { _ in true }
        }
        #expect(sent == 2)
        // Public: anyone; loopback: no one; the operator's network: the managed client alone.
        #expect(reach == [managed: [true, false, true], anonymous: [true, false, false]])
        #expect(!LogoutSender.mayPost(to: [10, 1, 2, 3], allowed: nil, operatorNetworks: true))
    }

    @Test func aDeliveryGoesOutOnceHoweverManyNodesPoll() throws {
        let listening = try signedOutOfAListeningClient()
        let other = try h.anotherStore()
        let delivery = try #require(try due.first)
        #expect(delivery.clientID == listening)
        #expect(try other.write { try other.claimLogout(delivery, nextAttemptAt: h.clock.now + 10_000) })
        #expect(try !h.store.write { try h.store.claimLogout(delivery, nextAttemptAt: h.clock.now + 10_000) }, "claimed by the other node")
        #expect(try runOnce { batch in Issue.record("sent twice"); return batch.map { _ in true } } == 0)
    }

    @Test func aClientThatIsGoneOrDisabledIsToldNothing() throws {
        let listening = try signedOutOfAListeningClient()
        try h.store.write {
            var c = try #require(try h.store.client(listening))
            c.enabled = false
            try h.store.updateClient(c)
        }
        #expect(try runOnce { batch in Issue.record("told a disabled client"); return batch.map { _ in true } } == 0)
        #expect(try due.isEmpty)
    }

    @Test func revokingAConnectionTellsTheClientAboutEachSessionOrTheUser() throws {
        let alice = try h.user()
        let (listening, secret) = try h.app(public: false)
        try listen(listening)
        let (_, sid, record) = try signIn()
        _ = try redeem(try g.code(client: listening, user: alice, scope: ["openid"], session: record), listening, secret)
        let connections = ConnectionService(env: h.env, store: h.store)
        #expect(try connections.delete(userID: alice, clientID: listening))
        #expect(try due.map(\.sid) == [sid])
        try h.store.write { for d in try h.store.dueLogouts(now: h.clock.now, limit: 10, perClient: .max, perShare: .max) { try h.store.deleteLogout(id: d.id) } }
        // Connected again without a session (a user's token on the app API): the user alone, unless sid is required.
        _ = try redeem(try g.code(client: listening, user: alice, scope: ["openid"]), listening, secret)
        #expect(try connections.delete(userID: alice, clientID: listening))
        #expect(try due.map(\.sid) == [nil] && due.first?.subject == alice)
        try h.store.write { for d in try h.store.dueLogouts(now: h.clock.now, limit: 10, perClient: .max, perShare: .max) { try h.store.deleteLogout(id: d.id) } }
        try listen(listening, sessionRequired: true)
        _ = try redeem(try g.code(client: listening, user: alice, scope: ["openid"]), listening, secret)
        #expect(try connections.delete(userID: alice, clientID: listening))
        #expect(try due.isEmpty, "a client requiring sid gets no token without one")
    }

    /// A token past its client's limit is dropped, and counted where an operator sees it (`/metrics`).
    @Test func aDeliveryDroppedPastItsClientsLimitIsCounted() throws {
        let alice = try h.user()
        let (listening, secret) = try h.app(public: false)
        try listen(listening)
        try h.store.write {
            for n in 0..<BackchannelLogout.pendingPerClient {
                try h.store.enqueueLogout(LogoutDelivery(id: h.env.randomID(24), clientID: listening, share: h.primary.organizationID,
                                                         subject: "user-\(n)", sid: nil, nextAttemptAt: h.clock.now, createdAt: h.clock.now),
                                          limitPerClient: .max, limitPerShare: .max, reservedPerClient: 0)
            }
        }
        _ = try redeem(try g.code(client: listening, user: alice, scope: ["openid"]), listening, secret)
        let before = BackchannelLogout.droppedDeliveries
        #expect(try ConnectionService(env: h.env, store: h.store).delete(userID: alice, clientID: listening))
        #expect(BackchannelLogout.droppedDeliveries > before)
        #expect(try due.allSatisfy { $0.subject != alice })
        // One waiting already is not a drop: the store tells the two apart.
        let delivery = LogoutDelivery(id: h.env.randomID(24), clientID: listening, share: h.primary.organizationID, subject: "user-0", sid: nil,
                                      nextAttemptAt: h.clock.now, createdAt: h.clock.now)
        #expect(try h.store.write { try h.store.enqueueLogout(delivery, limitPerClient: .max, limitPerShare: .max, reservedPerClient: 0) }
                == .alreadyQueued)
        #expect(try h.store.write { try h.store.enqueueLogout(delivery, limitPerClient: 1, limitPerShare: .max, reservedPerClient: 0) }
                == .alreadyQueued)
        var other = delivery
        other.subject = "someone else"
        #expect(try h.store.write { try h.store.enqueueLogout(other, limitPerClient: 1, limitPerShare: .max, reservedPerClient: 0) } == .full)
    }

    @Test func acrIsInTheIDTokenWhenTheClaimsParameterAsksForIt() throws {
        let alice = try h.user()
        let (client, secret) = try h.app(public: false)
        let asked = try redeem(try g.code(client: client, user: alice, scope: ["openid"], claims: ClaimsRequest(idToken: ["acr"])), client, secret)
        let plain = try redeem(try g.code(client: client, user: alice, scope: ["openid"]), client, secret)
        let askedToken = try #require(asked.idToken), plainToken = try #require(plain.idToken)
        #expect(JWS.parse(askedToken)?.payload["acr"] == "1")
        #expect(JWS.parse(plainToken)?.payload["acr"] == nil)
    }
}

/// A transport whose POSTs to the clients `answers` accepts end (delivered) at the next look, and the others only when told.
final class Slots: LogoutTransport {
    let capacity: Int
    let answers: (String) -> Bool
    private var flying: [Int64: (client: String, answers: Bool)] = [:]
    private var silentEnded = false
    private var lastTag: Int64 = 0
    private(set) var started = 0
    private(set) var delivered = 0

    init(capacity: Int, answers: @escaping (String) -> Bool) {
        self.capacity = capacity
        self.answers = answers
    }

    var inFlight: Int { flying.count }
    var inFlightByClient: [String: Int] { Dictionary(grouping: flying.values, by: \.client).mapValues(\.count) }

    func start(uri: String, form: [UInt8], operatorNetworks: Bool) -> Int64? {
        guard flying.count < capacity, let aud = BackchannelLogoutTests.audience(form) else { return nil }
        lastTag += 1
        flying[lastTag] = (aud, answers(aud))
        started += 1
        return lastTag
    }


    func endSilent() { silentEnded = true }

    func finished(waitMillis: Int) -> [(tag: Int64, delivered: Bool)] {
        let ended = flying.filter { $0.value.answers || silentEnded }
        silentEnded = false
        for tag in ended.keys { flying[tag] = nil }
        delivered += ended.values.filter(\.answers).count
        return ended.map { ($0.key, $0.value.answers) }
    }
}

/// The POSTs a fill starts, kept for the test to answer.
final class Round: LogoutTransport {
    let capacity = LogoutSender.batch
    private(set) var started: [(tag: Int64, uri: String, form: [UInt8], operatorNetworks: Bool)] = []
    var inFlight: Int { started.count }

    func start(uri: String, form: [UInt8], operatorNetworks: Bool) -> Int64? {
        started.append((Int64(started.count + 1), uri, form, operatorNetworks))
        return Int64(started.count)
    }

    func finished(waitMillis: Int) -> [(tag: Int64, delivered: Bool)] { [] }
}

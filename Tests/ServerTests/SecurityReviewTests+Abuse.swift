import Common
import Cryptography
import Foundation
import Synchronization
import HTTPCore
import Imaging
import JOSE
import OAuth
import Server
import TestSupport
import Testing

/// Items 3 to 5: slow hashes and abuse, grants and their connections, one organization per app token.
extension SecurityReviewTests {
    // 3. Slow hashes: a small pool, failures remembered and limited; cheap secrets unaffected.
    @Test func wrongPasswordsNeverQueueOnEveryWorker() throws {
        let guards = AbuseGuards(pool: SlowHashPool(permits: 1), failures: FailureLimiter(limits: .init(perAddress: 1000, perAccount: 3)))
        let h = try Harness(guards: guards)
        let token = try h.token()
        let integration = try #require(h.json("POST", "/external/v1/oauth/client", token: token,
                                              body: ["password": "the-right-one", "application": "scrypt client"]).json?["clientId"]?.stringValue)
        let generated = try #require(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "cheap"]).json)
        let cheapID = try #require(generated["client_id"]?.stringValue), cheapSecret = try #require(generated["client_secret"]?.stringValue)
        func attempt(_ id: String, _ secret: String) -> Response { h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (id, secret)) }

        #expect(attempt(integration, "wrong-1").status == 401)
        // While every slow-hash permit is taken: a new slow hash is refused at once (503),
        // a remembered failure and a cached success are answered without one, a cheap secret as usual.
        #expect(attempt(integration, "the-right-one").status == 200)
        try guards.pool.run {
            #expect(guards.pool.inUse == 1)
            #expect(attempt(integration, "the-right-one").status == 200)
            let busy = attempt(integration, "wrong-2")
            #expect(busy.status == 503)
            #expect(busy.headers[.retryAfter] == "1")
            #expect(attempt(integration, "wrong-1").status == 401)
            #expect(attempt(cheapID, cheapSecret).status == 200)
        }
        // Past the per-client failure limit (3: wrong-1 twice, and wrong-2, turned away by the full pool,
        // counts too): 429 before any hash, with Retry-After, for this address even with the remembered
        // secret (no oracle for a guesser, review session 26); from an address that never failed, the
        // remembered secret works.
        let limited = attempt(integration, "wrong-4")
        #expect(limited.status == 429)
        #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 >= 1)
        #expect(limited.json?["error"] == "rate_limited")
        #expect(attempt(integration, "the-right-one").status == 429)
        #expect(tokenAttempt(h, integration, "the-right-one", from: "198.51.100.77") == 200)
        #expect(attempt(cheapID, cheapSecret).status == 200, "a generated secret is never held back")
        // The window passes.
        h.clock.advance(seconds: 61)
        #expect(attempt(integration, "wrong-6").status == 401)
    }

    @Test func theSlowHashPoolQueuesBrieflyAndRefusesBeyondItsQueue() throws {
        let pool = SlowHashPool(permits: 1, maxWaiters: 1, maxWaitMillis: 5_000)
        let holding = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), waiterDone = DispatchSemaphore(value: 0)
        let waiterResult = Mutex<Int?>(nil)
        Thread.detachNewThread { _ = try? pool.run { holding.signal(); release.wait() } }
        holding.wait()
        Thread.detachNewThread {
            let r = try? pool.run { 42 }
            waiterResult.withLock { $0 = r }
            waiterDone.signal()
        }
        while pool.queued == 0 { usleep(1_000) }
        // The queue is full: a third caller is refused at once.
        #expect(throws: SlowHashesBusy.self) { try pool.run { 0 } }
        release.signal()
        waiterDone.wait()
        #expect(waiterResult.withLock { $0 } == 42)
        #expect(pool.inUse == 0)
        #expect(pool.queued == 0)
    }

    /// A client_credentials request with Basic `id:secret` from `address` (to `worker`, the harness's by default): its status.
    func tokenAttempt(_ h: Harness, _ id: String, _ secret: String, from address: String, worker: Worker? = nil) -> Int {
        let body = Array(FormEncoding.serialize([("grant_type", "client_credentials")]).utf8)
        return (worker ?? h.worker).handle(Request(method: .post, path: "/oauth2/token", headers: HTTPFields([
            ("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", Harness.basic(id, secret)),
        ]), body: body, remoteAddress: address)).status.code
    }

    /// SPEC 9: the failure limits hold across nodes. Two nodes (workers with
    /// guards of their own, each on its own connection to the one database)
    /// answer one guesser in turn: with the counts shared, the client's limit
    /// from that address holds to within one attempt (a node learns the total
    /// when it next counts a failure itself) and then on both nodes; each node
    /// alone allowed its own limit, twice as many. (The client's generated
    /// secret is never held back: its HMAC proves it before any limit.)
    @Test(arguments: [true, false]) func theFailureLimitsHoldAcrossNodes(_ sharedCounts: Bool) throws {
        let limits = FailureLimiter.Limits(perAddress: 1000, perAccount: 4, perAccountAnywhere: 100)
        let h = try Harness(guards: AbuseGuards(failures: FailureLimiter(limits: limits, shared: sharedCounts)))
        let other = try Worker(app: Application(env: h.env, logger: Logger(level: .off),
                                                guards: AbuseGuards(failures: FailureLimiter(limits: limits, shared: sharedCounts))),
                               store: try h.anotherStore())
        func attempt(on node: Int, _ secret: String, from address: String) -> Int {
            tokenAttempt(h, h.primary.clientID, secret, from: address, worker: node % 2 == 0 ? h.worker : other)
        }
        let answers = (0..<10).map { attempt(on: $0, "guess-\($0)", from: "203.0.113.9") }
        let allowed = answers.prefix { $0 == 401 }.count
        #expect(answers.dropFirst(allowed).allSatisfy { $0 == 429 }, "\(answers)")
        if sharedCounts {
            #expect(allowed == limits.perAccount + 1, "\(answers)")
        } else {
            #expect(allowed == 2 * limits.perAccount, "each node alone: its own limit (\(answers))")
        }
        #expect(attempt(on: 0, h.primary.clientSecret, from: "203.0.113.9") == 200)
        #expect(attempt(on: 1, h.primary.clientSecret, from: "198.51.100.7") == 200)
        // The window passes on every node.
        h.clock.advance(seconds: 61)
        #expect(attempt(on: 1, "guess-again", from: "203.0.113.9") == 401)
    }

    /// The shared counts are written by failing requests (a flood pays for its own writes): a failure counted
    /// elsewhere waits through a successful request and goes with the next one that fails.
    @Test func onlyAFailingRequestCarriesTheFailuresToTheSharedCounts() throws {
        let limiter = FailureLimiter(limits: .init(perAddress: 1000, perAccount: 10), shared: true)
        let h = try Harness(guards: AbuseGuards(failures: limiter))
        // Two other nodes, which learn the table's total for the key as they add their own failure to it.
        let low = FailureLimiter(limits: .init(perAddress: 1000, perAccount: 2), shared: true)
        let high = FailureLimiter(limits: .init(perAddress: 1000, perAccount: 3), shared: true)
        limiter.recordFailure(FailureLimiter.keys(account: "someone", address: "192.0.2.9"), now: h.clock.now)
        #expect(tokenAttempt(h, h.primary.clientID, h.primary.clientSecret, from: "198.51.100.7") == 200)
        low.recordFailure(FailureLimiter.keys(account: "someone", address: "192.0.2.9"), now: h.clock.now)
        low.flush(to: h.store, now: h.clock.now)
        #expect(low.refusal(account: "someone", address: "192.0.2.9", now: h.clock.now) == nil, "1 in the table: nothing carried yet")
        #expect(tokenAttempt(h, h.primary.clientID, "lks_wrong", from: "198.51.100.7") == 401)
        high.recordFailure(FailureLimiter.keys(account: "someone", address: "192.0.2.9"), now: h.clock.now)
        high.flush(to: h.store, now: h.clock.now)
        #expect(high.refusal(account: "someone", address: "192.0.2.9", now: h.clock.now) != nil, "3 in the table: the 401 carried it")
    }

    /// Review, session 26: a caller-chosen password remembered from the
    /// client's own use answered a guessing address's right guess past its
    /// failure limit (wrong guesses 429, the right one 200), so the limit did
    /// not limit guessing for a client in use. A remembered password now
    /// meets the limits like any other; the owner's address is never held back.
    @Test func aRememberedPasswordDoesNotLetAGuessingAddressPastItsLimit() throws {
        let guards = AbuseGuards(failures: FailureLimiter(limits: .init(perAddress: 1000, perAccount: 2, perAccountAnywhere: 100)))
        let h = try Harness(guards: guards)
        let id = try #require(h.json("POST", "/external/v1/oauth/client", token: try h.token(),
                                     body: ["password": "the-right-one", "application": "target"]).json?["clientId"]?.stringValue)
        #expect(tokenAttempt(h, id, "the-right-one", from: "198.51.100.7") == 200, "verified, and remembered")
        #expect(tokenAttempt(h, id, "guess-1", from: "203.0.113.9") == 401)
        #expect(tokenAttempt(h, id, "guess-2", from: "203.0.113.9") == 401)
        #expect(tokenAttempt(h, id, "guess-3", from: "203.0.113.9") == 429)
        #expect(tokenAttempt(h, id, "the-right-one", from: "203.0.113.9") == 429, "no oracle past the limit")
        #expect(tokenAttempt(h, id, "the-right-one", from: "198.51.100.7") == 200)
    }

    /// Review, session 26 (second pass): the other two ways past a limit to a
    /// remembered password. An address past its own limit (failures on any
    /// ids) is refused before the remembered password answers; and guesses
    /// turned away because the pool is full (503) count as failures, so
    /// keeping the pool busy does not make guessing free, for clients and
    /// for sign-ins alike.
    @Test func neitherTheAddressLimitNorABusyPoolLeavesARememberedPasswordAsAnOracle() throws {
        let guards = AbuseGuards(pool: SlowHashPool(permits: 1, maxWaiters: 0),
                                 failures: FailureLimiter(limits: .init(perAddress: 3, perAccount: 3, perAccountAnywhere: 100)))
        let h = try Harness(guards: guards)
        _ = try h.user()
        let id = try #require(h.json("POST", "/external/v1/oauth/client", token: try h.token(),
                                     body: ["password": "the-right-one", "application": "target"]).json?["clientId"]?.stringValue)
        #expect(tokenAttempt(h, id, "the-right-one", from: "198.51.100.7") == 200, "verified, and remembered")
        // Failures on unknown ids until the address is past its own limit (429), then the remembered right password.
        let unknown = (0..<6).map { tokenAttempt(h, "unknown-\($0)", "x", from: "203.0.113.9") }
        #expect(unknown.first == 401 && unknown.last == 429, "\(unknown)")
        #expect(tokenAttempt(h, id, "the-right-one", from: "203.0.113.9") == 429, "past the address's own limit")

        #expect(Browser(h).login().status == 204, "verified, and remembered")
        try guards.pool.run {
            // Turned away (503) until the failures they count reach the limit (429): never free, never an oracle.
            let guesses = (0..<6).map { tokenAttempt(h, id, "guess-\($0)", from: "192.0.2.44") }
            let signIns = (0..<6).map { Browser(h).login("alice", "guess \($0)").status.code }
            #expect(guesses.first == 503 && guesses.last == 429 && guesses.allSatisfy { $0 == 503 || $0 == 429 }, "\(guesses)")
            #expect(signIns.first == 503 && signIns.last == 429 && signIns.allSatisfy { $0 == 503 || $0 == 429 }, "\(signIns)")
            #expect(tokenAttempt(h, id, "the-right-one", from: "192.0.2.44") == 429)
            #expect(Browser(h).login().status == 429)
        }
        #expect(tokenAttempt(h, id, "the-right-one", from: "198.51.100.7") == 200, "the owner's address is not held back")
    }

    /// One attacker guessing a client's password locks out only its own
    /// address; the client's correct password from elsewhere still gets in,
    /// until failures from everywhere pass their own (higher) limit.
    @Test func aGuessingAddressLocksOutOnlyItself() throws {
        let guards = AbuseGuards(failures: FailureLimiter(limits: .init(perAddress: 1000, perAccount: 2, perAccountAnywhere: 5)),
                                 secrets: VerifiedSecretCache(capacity: 0))
        let h = try Harness(guards: guards)
        let token = try h.token()
        let id = try #require(h.json("POST", "/external/v1/oauth/client", token: token,
                                     body: ["password": "the-right-one", "application": "target"]).json?["clientId"]?.stringValue)
        func attempt(_ secret: String, from address: String) -> Int { tokenAttempt(h, id, secret, from: address) }
        #expect(attempt("guess-1", from: "203.0.113.9") == 401)
        #expect(attempt("guess-2", from: "203.0.113.9") == 401)
        #expect(attempt("guess-3", from: "203.0.113.9") == 429)
        #expect(attempt("the-right-one", from: "198.51.100.7") == 200)
        // Many addresses together: past the account's overall limit, an address
        // that failed on the account waits; a fresh one gets a single try.
        #expect(attempt("guess-4", from: "203.0.113.10") == 401)
        #expect(attempt("guess-5", from: "203.0.113.11") == 401)
        #expect(attempt("guess-6", from: "203.0.113.12") == 401)
        #expect(attempt("guess-7", from: "203.0.113.10") == 429)
        #expect(attempt("guess-8", from: "203.0.113.13") == 401)
        #expect(attempt("guess-9", from: "203.0.113.13") == 429)
        // The owner, from an address that never failed, still gets in (the hash runs).
        #expect(attempt("the-right-one", from: "192.0.2.1") == 200)
        // IPv6: one /64 is one address (a fresh /64 gets its single try, the next host in it waits).
        #expect(attempt("guess-a", from: "2001:db8:1:2::10") == 401)
        #expect(attempt("guess-b", from: "2001:0db8:0001:0002:ffff::1") == 429)
        #expect(FailureLimiter.addressKey("2001:db8:1:2::10") == "2001:db8:1:2::/64")
        #expect(FailureLimiter.addressKey("::ffff:192.0.2.7") == "192.0.2.7")
        #expect(FailureLimiter.addressKey("::1") == "0:0:0:0::/64")
    }

    /// Attacker review, session 9: unknown client ids of kilobytes, one per request, each remembered under its own
    /// key, grew a worker by 120 MiB. Now a long id is remembered by its hash, and an address past its limit adds nothing.
    @Test func aFloodOfLongUnknownIDsGrowsTheFailureTableByNothingPastTheAddressLimit() throws {
        let failures = FailureLimiter(limits: .init(perAddress: 20, perAccount: 10))
        let h = try Harness(guards: AbuseGuards(failures: failures))
        func attempt(_ id: String) -> Int {
            let body = Array(FormEncoding.serialize([("grant_type", "client_credentials"), ("client_id", id), ("client_secret", "x")]).utf8)
            return h.worker.handle(Request(method: .post, path: "/oauth2/token", headers: HTTPFields([
                ("Content-Type", "application/x-www-form-urlencoded")]), body: body, remoteAddress: "203.0.113.50")).status.code
        }
        var answers: [Int] = []
        for _ in 0..<200 { answers.append(attempt(String(repeating: "a", count: 7000) + UUID().uuidString)) }
        #expect(answers.prefix(19).allSatisfy { $0 == 401 } && answers.dropFirst(20).allSatisfy { $0 == 429 }, "\(answers.prefix(25))")
        // The address and, for each of its 20 failures, the id from it and from anywhere: 41 keys, none of them 7 KB.
        #expect(failures.rememberedKeys == 41)
        #expect(FailureLimiter.accountKey(String(repeating: "b", count: 7000)).utf8.count == 71)
        #expect(FailureLimiter.accountKey("a-real-client-id") == "a-real-client-id")
    }

    /// Setting a caller-chosen password is a slow hash too: on the pool (503
    /// when full) and at most ten a minute per calling client (429).
    @Test func settingPasswordsGoesThroughThePoolAndIsLimited() throws {
        let guards = AbuseGuards(pool: SlowHashPool(permits: 1, maxWaiters: 0))
        let h = try Harness(guards: guards)
        let created = try #require(h.json("POST", "/api/v1/clients", token: try h.token(), body: ["client_name": "machine"]).json)
        let token = try h.token(clientID: try #require(created["client_id"]?.stringValue), secret: try #require(created["client_secret"]?.stringValue))
        try guards.pool.run {
            let busy = h.json("PUT", "/external/v1/oauth/password", token: token, body: ["password": "new-password-0"])
            #expect(busy.status == 503)
            #expect(busy.headers[.retryAfter] == "1")
        }
        for i in 1...10 { #expect(h.json("PUT", "/external/v1/oauth/password", token: token, body: ["password": .string("new-password-\(i)")]).status == 204) }
        let limited = h.json("PUT", "/external/v1/oauth/password", token: token, body: ["password": "new-password-11"])
        #expect(limited.status == 429)
        #expect(limited.headers[.retryAfter] != nil)
    }

    /// A password for a client that has no secret (public, or private_key_jwt) is refused before the slow hash
    /// (attacker review, session 24: it was hashed first): 409 while every permit of the pool is taken, never 503.
    @Test func aPasswordForAClientWithoutSecretsCostsNoSlowHash() throws {
        let guards = AbuseGuards(pool: SlowHashPool(permits: 1, maxWaiters: 0))
        let h = try Harness(guards: guards)
        let primary = try h.token()
        let (app, _) = try h.app()
        try guards.pool.run {
            let refused = h.json("PUT", "/external/v1/oauth/client/password-reset", token: primary, body: ["clientId": .string(app), "password": "new-password-0"])
            #expect(refused.status == 409, "\(refused.status)")
        }
        // Bytes bound a password too: one character of 1 MB of combining marks is not 8..72 characters of anything.
        let marks = "e" + String(repeating: "\u{0301}", count: 100_000) + "1234567"
        #expect(h.json("PUT", "/external/v1/oauth/password", token: primary, body: ["password": .string(marks)]).status == 400)
    }

    /// Attacker review, session 13: the integration surface's create hashed the caller's password (a slow hash, ten a
    /// minute per caller) before it found the organization full. A create that cannot succeed now costs none: twelve
    /// in a row are each told the organization is full, none is 429, and a password set afterwards is still allowed.
    @Test func aCreateThatCannotSucceedCostsNoSlowHash() throws {
        let h = try Harness(guards: AbuseGuards())
        let org = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Full", clientLimit: 1)
        let token = try h.token(clientID: org.clientID, secret: org.clientSecret)
        let answers = (0..<12).map { i in
            h.json("POST", "/external/v1/oauth/client", token: token, body: ["password": .string("long-enough-\(i)"), "application": .string("App \(i)")]).status.code
        }
        #expect(answers.allSatisfy { $0 != 429 && $0 >= 400 && $0 < 500 }, "\(answers)")
        #expect(h.json("PUT", "/external/v1/oauth/password", token: token, body: ["password": "a-new-password"]).status == 204)
    }

    /// A full failure table drops expired windows, then those under their
    /// limit, never a lock-out in force.
    @Test func aFloodOfAddressesCannotWashOutALockOut() {
        let limiter = FailureLimiter(limits: .init(perAddress: 100, perAccount: 2), capacity: 50)
        limiter.recordFailure(FailureLimiter.keys(account: "victim", address: "198.51.100.1"), now: 1_000)
        limiter.recordFailure(FailureLimiter.keys(account: "victim", address: "198.51.100.1"), now: 1_000)
        #expect(limiter.refusal(account: "victim", address: "198.51.100.1", now: 1_000) != nil)
        for i in 0..<500 { limiter.recordFailure([.address("203.0.113.\(i % 250)-\(i)")], now: 2_000) }
        #expect(limiter.refusal(account: "victim", address: "198.51.100.1", now: 2_000) != nil)
        #expect(limiter.refusal(account: "victim", address: "198.51.100.1", now: 62_000) == nil)
    }

    /// Attacker review, session 28: a private_key_jwt client's right assertion was refused 429 once others had sent
    /// forged ones naming it, or failed on anything, from its address (a shared NAT): the limits were checked before
    /// the signature. A right signature now passes them, as a right generated secret does; failures still meet them.
    @Test func othersFailuresNeverRefuseAClientsRightAssertion() throws {
        let guards = AbuseGuards(failures: FailureLimiter(limits: .init(perAddress: 12, perAccount: 3, perAccountAnywhere: 6)))
        let h = try Harness(guards: guards)
        let key = try SigningKey.generate(.es256), forger = try SigningKey.generate(.es256)
        let created = h.json("POST", "/api/v1/clients", token: try h.token(), body: [
            "client_name": "Signed", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
            "jwks": ["keys": [try JWK.publicJWK(key, kid: "k1")]]])
        let id = try #require(created.json?["client_id"]?.stringValue, "\(created.bodyText)")
        func attempt(signedBy signer: SigningKey, naming subject: String? = nil, from address: String) throws -> Int {
            let now = h.clock.now / 1000, subject = subject ?? id
            let claims: JSON = ["iss": .string(subject), "sub": .string(subject), "aud": .string(Harness.issuer + "/oauth2/token"),
                                "exp": .int(now + 60), "jti": .string(h.env.randomToken(bytes: 12))]
            let body = Array(FormEncoding.serialize([
                ("grant_type", "client_credentials"), ("client_assertion", try JWS.sign(payload: claims, key: signer, kid: "k1", typ: "JWT")),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")]).utf8)
            return h.worker.handle(Request(method: .post, path: "/oauth2/token", headers: HTTPFields([
                ("Content-Type", "application/x-www-form-urlencoded")]), body: body, remoteAddress: address)).status.code
        }
        let shared = "203.0.113.70"
        // Forged assertions naming the client, from the address it shares: 401, then 429 past its limit there.
        #expect(try (0..<3).map { _ in try attempt(signedBy: forger, from: shared) } == [401, 401, 401])
        #expect(try attempt(signedBy: forger, from: shared) == 429)
        #expect(try attempt(signedBy: key, from: shared) == 200, "the client's own signature")
        // Past the client's overall limit too, from other addresses: its signature still passes, everywhere.
        for address in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] { _ = try attempt(signedBy: forger, from: address) }
        #expect(try attempt(signedBy: forger, from: "198.51.100.1") == 429)
        #expect(try attempt(signedBy: key, from: "198.51.100.1") == 200)
        // Failures on made-up ids past the address's own limit: the same.
        for i in 0..<12 { _ = try attempt(signedBy: forger, naming: "nobody-\(i)", from: shared) }
        #expect(try attempt(signedBy: forger, naming: "nobody-x", from: shared) == 429)
        #expect(try attempt(signedBy: key, from: shared) == 200)
    }

    @Test func anAddressPastItsFailureLimitGets429ButCorrectCheapSecretsPass() throws {
        let guards = AbuseGuards(failures: FailureLimiter(limits: .init(perAddress: 5, perAccount: 100)))
        let h = try Harness(guards: guards)
        for i in 0..<4 { #expect(h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: ("nobody-\(i)", "x")).status == 401) }
        let r = h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: ("nobody-5", "x"))
        #expect(r.status == 429)
        #expect(r.headers[.retryAfter] != nil)
        #expect(try h.token().isEmpty == false)
    }

    @Test func signInHashesGoThroughThePoolAndTheLimits() throws {
        let guards = AbuseGuards(pool: SlowHashPool(permits: 1), failures: FailureLimiter(limits: .init(perAddress: 1000, perAccount: 2)))
        let h = try Harness(guards: guards)
        _ = try h.user()
        // Turned away by the full pool: 503, and counted as a failure (review, session 26).
        try guards.pool.run { #expect(Browser(h).login().status == 503) }
        #expect(Browser(h).login("alice", "wrong password 1").status == 401)
        let limited = Browser(h).login("alice", "wrong password 2")
        #expect(limited.status == 429)
        #expect(limited.headers[.retryAfter] != nil)
    }

    /// Review, session 26: correct sign-ins were never remembered, so one
    /// account signing in again and again from two addresses kept the pool
    /// full and everyone else's sign-in got 503. A password verified for the
    /// user is remembered: signing in with it again costs no hash (it gets
    /// in while every permit is taken), a wrong one still needs one (503),
    /// and after `latchkey user password` the old one is a hash again (and
    /// fails), the new one too until it is remembered.
    @Test func aRepeatedCorrectSignInCostsNoSlowHash() throws {
        let guards = AbuseGuards(pool: SlowHashPool(permits: 1, maxWaiters: 0))
        let h = try Harness(guards: guards)
        _ = try h.user()
        #expect(Browser(h).login().status == 204)
        try guards.pool.run {
            #expect(Browser(h).login().status == 204)
            #expect(Browser(h).login("alice", "a wrong password").status == 503)
            #expect(Browser(h).login("bob", "correct horse battery").status == 503, "an unknown user is hashed (the decoy) as before")
        }
        try Provisioning(env: h.env, store: h.store).setPassword(username: "alice", password: "a new horse battery", keepSessions: false)
        try guards.pool.run { #expect(Browser(h).login().status == 503) }
        #expect(Browser(h).login().status == 401)
        #expect(Browser(h).login("alice", "a new horse battery").status == 204)
        try guards.pool.run { #expect(Browser(h).login("alice", "a new horse battery").status == 204) }
    }

    // 4. A grant exists only with its connection.
    @Test func aCodeIssuedBeforeADisconnectCannotBeRedeemed() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let b = Browser(h)
        let pkce = PKCE()
        let code = try flow.code(h, b, client: client, pkce: pkce)
        #expect(b.send("DELETE", "/api/v1/me/connections/\(client)").status == 204)
        let r = flow.exchange(h, client: client, code: code, verifier: pkce.verifier)
        #expect(r.status == 400)
        #expect(r.json?["error"] == "invalid_grant")
        #expect(b.send("GET", "/api/v1/me/connections").json?["connections"] == [])
    }

    // 5. /api/oauth/auth/code with a user token serves only its own organization; 23. a missing client_id is 400.
    @Test func authCodeWithAUserTokenStaysInItsOrganization() throws {
        let h = try Harness()
        _ = try h.user()
        let token = try h.token()
        let created = try #require(h.json("POST", "/api/oauth/app", token: token, body: ["name": "Org A app", "redirect_uri": "https://a.example/cb"]).json)
        let orgAApp = try #require(created["client_id"]?.stringValue)
        // Organization B: an app of its own whose user token carries gov.user.oauth.authorize.
        let orgB = try Provisioning(env: h.env, store: h.store).createOrganization(name: "B", clientLimit: 10)
        let bToken = try h.token(clientID: orgB.clientID, secret: orgB.clientSecret)
        let bApp = try #require(h.json("POST", "/api/v1/clients", token: bToken, body: [
            "client_name": "B app", "redirect_uris": .array([.string(Harness.redirect)]), "grant_types": ["authorization_code"],
            "scope": "openid gov.user.oauth.authorize",
        ]).json)
        let bID = try #require(bApp["client_id"]?.stringValue), bSecret = try #require(bApp["client_secret"]?.stringValue)
        let pkce = PKCE()
        let code = try flow.code(h, Browser(h), client: bID, pkce: pkce, scope: "openid gov.user.oauth.authorize")
        let userToken = try #require(flow.exchange(h, client: bID, secret: bSecret, code: code, verifier: pkce.verifier).json?["access_token"]?.stringValue)
        let foreign = h.json("POST", "/api/oauth/auth/code", token: userToken, body: ["client_id": .string(orgAApp), "scope": "openid"])
        #expect(foreign.status == 404)
        #expect(try h.store.connection(userID: h.store.user(username: "alice")!.id, clientID: orgAApp) == nil)
        let own = try #require(h.json("POST", "/api/oauth/app", token: bToken, body: ["name": "B second", "redirect_uri": "https://b.example/cb"]).json?["client_id"]?.stringValue)
        #expect(h.json("POST", "/api/oauth/auth/code", token: userToken, body: ["client_id": .string(own), "scope": "openid"]).status == 200)
        let missing = h.json("POST", "/api/oauth/auth/code", token: userToken, body: ["scope": "openid"])
        #expect(missing.status == 400)
    }
}

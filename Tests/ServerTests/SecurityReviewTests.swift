import Common
import Cryptography
import Foundation
import Synchronization
import HTTPCore
import Imaging
import OAuth
import Server
import TestSupport
import Testing

/// The findings of the outside security review (issue 10), one test per
/// rule, each at the place the rule lives. Each failed on the code before.
@Suite struct SecurityReviewTests {
    let flow = UserFlowTests()

    /// A confidential client that holds client_credentials, the code flow and
    /// management scopes, plus a user token issued to it through the code flow.
    func userTokenOfAManagingClient(_ h: Harness) throws -> (client: String, secret: String, userToken: String) {
        _ = try h.user()
        let created = try #require(h.json("POST", "/api/v1/clients", token: try h.token(), body: [
            "client_name": "Dual use", "redirect_uris": .array([.string(Harness.redirect)]),
            "grant_types": ["authorization_code", "client_credentials"],
            "scope": "openid clients:read clients:write manageExternalClients sp:oauth-client:manage gov.user.oauth.app:write",
        ]).json)
        let id = try #require(created["client_id"]?.stringValue)
        let secret = try #require(created["client_secret"]?.stringValue)
        let pkce = PKCE()
        let code = try flow.code(h, Browser(h), client: id, pkce: pkce, scope: "openid")
        let tokens = flow.exchange(h, client: id, secret: secret, code: code, verifier: pkce.verifier)
        let userToken = try #require(tokens.json?["access_token"]?.stringValue)
        return (id, secret, userToken)
    }

    // 1. A user's token is never a management caller.
    @Test func aUsersTokenCannotTakeOverItsClient() throws {
        let h = try Harness()
        let (id, secret, userToken) = try userTokenOfAManagingClient(h)
        let calls: [(String, String, JSON?)] = [
            ("POST", "/api/v1/clients/current/secret", nil),
            ("GET", "/api/v1/clients/current", nil),
            ("GET", "/api/v1/clients", nil),
            ("PUT", "/external/v1/oauth/password", ["password": "attacker-chosen-1"]),
            ("GET", "/external/v1/oauth/client/current", nil),
            ("GET", "/v3/oauth-clients", nil),
            ("POST", "/api/oauth/app", ["name": "x", "redirect_uri": "https://x.example/cb"]),
            ("PUT", "/api/oauth/app/id/\(id)/rotate", nil),
        ]
        for (method, path, body) in calls {
            let r = h.json(method, path, token: userToken, body: body)
            #expect(r.status == 401, "\(method) \(path) answered \(r.status)")
        }
        // The secret still works: nothing was rotated.
        #expect(try h.token(clientID: id, secret: secret, scope: "clients:read").isEmpty == false)
        // And the client's own token is a management caller.
        let own = try h.token(clientID: id, secret: secret)
        #expect(h.json("GET", "/api/v1/clients/current", token: own).status == 200)
    }

    /// Every bearer-protected management route (SPEC 6.1–6.4), with a body
    /// that would be valid for the primary, and the scope the route needs.
    static func managementRoutes(target: String) -> [(method: String, path: String, body: JSON?, scope: String?)] {
        [
            ("GET", "/api/v1/organization", nil, "clients:read"), ("GET", "/api/v1/audit", nil, "audit:read"),
            ("POST", "/api/v1/clients", ["client_name": "m"], "clients:write"), ("GET", "/api/v1/clients", nil, "clients:read"),
            ("GET", "/api/v1/clients/current", nil, nil), ("POST", "/api/v1/clients/current/secret", nil, nil),
            ("GET", "/api/v1/clients/\(target)", nil, "clients:read"), ("PATCH", "/api/v1/clients/\(target)", ["description": "d"], "clients:write"),
            ("PUT", "/api/v1/clients/\(target)", ["client_name": "m"], "clients:write"), ("POST", "/api/v1/clients/\(target)/secret", nil, "clients:write"),
            ("DELETE", "/api/v1/clients/\(target)/logo", nil, "clients:write"), ("DELETE", "/api/v1/clients/\(target)", nil, "clients:write"),
            ("POST", "/external/v1/oauth/client", ["password": "long-enough", "application": "m"], "manageExternalClients"),
            ("PUT", "/external/v1/oauth/client", ["clientId": .string(target), "application": "m"], "manageExternalClients"),
            ("GET", "/external/v1/oauth/client", nil, "manageExternalClients"),
            ("PUT", "/external/v1/oauth/client/password-reset", ["clientId": .string(target), "password": "long-enough"], "manageExternalClients"),
            ("GET", "/external/v1/oauth/client/current", nil, nil), ("PUT", "/external/v1/oauth/password", ["password": "long-enough"], nil),
            ("DELETE", "/external/v1/oauth/client/\(target)", nil, "manageExternalClients"),
            ("POST", "/v3/oauth-clients", IdentitySurfaceTests.createBody, "sp:oauth-client:manage"),
            ("GET", "/v3/oauth-clients", nil, "sp:oauth-client:read"), ("GET", "/v3/oauth-clients/\(target)", nil, "sp:oauth-client:read"),
            ("DELETE", "/v3/oauth-clients/\(target)", nil, "sp:oauth-client:manage"),
            ("GET", "/api/oauth/app", nil, "gov.user.oauth.app:read"),
            ("POST", "/api/oauth/app", ["name": "m", "redirect_uri": "https://m.example/cb"], "gov.user.oauth.app:write"),
            ("PUT", "/api/oauth/app/id/\(target)", ["name": "m", "redirect_uri": "https://m.example/cb"], "gov.user.oauth.app:write"),
            ("PUT", "/api/oauth/app/id/\(target)/rotate", nil, "gov.user.oauth.app:write"),
            ("DELETE", "/api/oauth/app/id/\(target)", nil, "gov.user.oauth.app:write"),
        ]
    }

    /// Every management route, with every kind of token that must not pass:
    /// a user's (401), a deleted client's (401; AU0006 404 on the integration
    /// surface, as its source says), another organization's (404 for the
    /// target, nothing changed), a narrowed one without the route's scope (403).
    @Test func everyManagementRouteRefusesEveryWrongKindOfToken() throws {
        let h = try Harness()
        let (_, _, userToken) = try userTokenOfAManagingClient(h)
        let primary = try h.token()
        let target = try #require(h.json("POST", "/api/oauth/app", token: primary, body: ["name": "target", "redirect_uri": "https://t.example/cb"]).json?["client_id"]?.stringValue)
        let doomed = try #require(h.json("POST", "/api/v1/clients", token: primary, body: ["client_name": "doomed", "scope": .string(Scopes.join(Scopes.primary.filter { $0 != "keys:manage" }))]).json)
        let doomedID = try #require(doomed["client_id"]?.stringValue)
        let deletedToken = try h.token(clientID: doomedID, secret: try #require(doomed["client_secret"]?.stringValue))
        #expect(h.json("DELETE", "/api/v1/clients/\(doomedID)", token: primary).status == 204)
        let orgB = try Provisioning(env: h.env, store: h.store).createOrganization(name: "B", clientLimit: 10)
        let foreign = try h.token(clientID: orgB.clientID, secret: orgB.clientSecret)
        let before = try h.store.client(target)
        for route in SecurityReviewTests.managementRoutes(target: target) {
            let label = "\(route.method) \(route.path)"
            #expect(h.json(route.method, route.path, token: userToken, body: route.body).status == 401, "user token: \(label)")
            let deleted = h.json(route.method, route.path, token: deletedToken, body: route.body)
            #expect(deleted.status == (route.path.hasPrefix("/external/") ? 404 : 401), "deleted client's token: \(label)")
            if route.path.contains(target) {
                let r = h.json(route.method, route.path, token: foreign, body: route.body)
                #expect(r.status == (route.path.hasPrefix("/external/") ? 403 : 404), "another organization: \(label) answered \(r.status)")
            }
            if let scope = route.scope {
                let other = ["clients:read", "manageExternalClients"].first { $0 != scope && !(scope == "clients:write" && $0 == "clients:read") } ?? "keys:manage"
                let narrow = try h.token(scope: other)
                #expect(h.json(route.method, route.path, token: narrow, body: route.body).status == 403, "narrowed to \(other): \(label)")
            }
        }
        #expect(try h.store.client(target) == before)
    }

    // 2. What a caller may grant is its token's scope claim.
    @Test func aNarrowedTokenGivesNoMoreThanItCarries() throws {
        let h = try Harness()
        let narrow = try h.token(scope: "clients:write")
        let native = h.json("POST", "/api/v1/clients", token: narrow, body: ["client_name": "x", "scope": "audit:read"])
        #expect(native.status == 403)
        #expect(h.json("POST", "/api/v1/clients", token: narrow, body: ["client_name": "x", "scope": "clients:write openid"]).status == 201)
        let integrationToken = try h.token(scope: "manageExternalClients")
        let integration = h.json("POST", "/external/v1/oauth/client", token: integrationToken,
                                 body: ["password": "long-enough", "application": "x", "accessScopes": ["keys:manage"]])
        #expect(integration.status == 403)
        #expect(integration.json?["code"] == "AU0002")
        let v3Token = try h.token(scope: "sp:oauth-client:manage")
        let v3 = h.json("POST", "/v3/oauth-clients", token: v3Token, body: IdentitySurfaceTests.createBody)
        #expect(v3.status == 200)
        #expect(v3.json?["scope"] == ["sp:oauth-client:manage"])
    }

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
            let busy = attempt(integration, "wrong-2")
            #expect(busy.status == 503)
            #expect(busy.headers[.retryAfter] == "1")
            #expect(attempt(integration, "wrong-1").status == 401)
            #expect(attempt(integration, "the-right-one").status == 200)
            #expect(attempt(cheapID, cheapSecret).status == 200)
        }
        // Past the per-client failure limit (3: wrong-1 twice, wrong-3): 429 before any hash,
        // with Retry-After; the cached secret still works.
        #expect(attempt(integration, "wrong-3").status == 401)
        let limited = attempt(integration, "wrong-4")
        #expect(limited.status == 429)
        #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 >= 1)
        #expect(limited.json?["error"] == "rate_limited")
        #expect(attempt(integration, "the-right-one").status == 200)
        #expect(attempt(cheapID, cheapSecret).status == 200)
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
        func attempt(_ secret: String, from address: String) -> Int {
            let body = Array(FormEncoding.serialize([("grant_type", "client_credentials")]).utf8)
            return h.worker.handle(Request(method: .post, path: "/oauth2/token", headers: HTTPFields([
                ("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", Harness.basic(id, secret)),
            ]), body: body, remoteAddress: address)).status.code
        }
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
        try guards.pool.run { #expect(Browser(h).login().status == 503) }
        #expect(Browser(h).login("alice", "wrong password 1").status == 401)
        #expect(Browser(h).login("alice", "wrong password 2").status == 401)
        let limited = Browser(h).login("alice", "wrong password 3")
        #expect(limited.status == 429)
        #expect(limited.headers[.retryAfter] != nil)
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

    // 6. A token lives no longer than its client; ids are never reused.
    @Test func aDeletedClientsIDIsRetiredAndItsTokensStayDead() throws {
        let h = try Harness()
        let token = try h.token()
        let x = try #require(h.json("POST", "/api/v1/clients", token: token, body: ["client_id": "client-x-1", "client_name": "X", "scope": "clients:write"]).json)
        let xToken = try h.token(clientID: "client-x-1", secret: try #require(x["client_secret"]?.stringValue))
        #expect(h.json("DELETE", "/api/v1/clients/client-x-1", token: token).status == 204)
        let orgB = try Provisioning(env: h.env, store: h.store).createOrganization(name: "B", clientLimit: 10)
        let bToken = try h.token(clientID: orgB.clientID, secret: orgB.clientSecret)
        #expect(h.json("POST", "/api/v1/clients", token: bToken, body: ["client_id": "client-x-1", "client_name": "X again"]).status == 409)
        #expect(h.json("POST", "/api/v1/clients", token: token, body: ["client_id": "client-x-1", "client_name": "X again"]).status == 409)
        #expect(h.json("GET", "/api/v1/clients/current", token: xToken).status == 401)
        #expect(h.json("POST", "/api/v1/clients", token: xToken, body: ["client_name": "y"]).status == 401)
        // The store itself refuses the id, whatever path tries.
        #expect(throws: (any Error).self) {
            try h.store.write { try h.store.insertClient(Client(clientID: "client-x-1", organizationID: orgB.organizationID, name: "z", createdAt: 1)) }
        }
    }

    /// Disabling a client ends its tokens for good (re-enabling brings none
    /// back, refresh tokens included); an operator's reset ends the primary's.
    @Test func disablingOrResettingAClientEndsItsTokensForGood() throws {
        let h = try Harness()
        _ = try h.user()
        let primary = try h.token()
        let created = try #require(h.json("POST", "/api/v1/clients", token: primary, body: [
            "client_name": "c", "scope": "openid offline_access clients:read", "redirect_uris": .array([.string(Harness.redirect)]),
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        ]).json)
        let id = try #require(created["client_id"]?.stringValue), secret = try #require(created["client_secret"]?.stringValue)
        let own = try h.token(clientID: id, secret: secret)
        let pkce = PKCE()
        let code = try flow.code(h, Browser(h), client: id, pkce: pkce, scope: "openid offline_access")
        let tokens = try #require(flow.exchange(h, client: id, secret: secret, code: code, verifier: pkce.verifier).json)
        let refresh = try #require(tokens["refresh_token"]?.stringValue)
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: primary, body: ["enabled": false]).status == 200)
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: primary, body: ["enabled": true]).status == 200)
        #expect(h.json("GET", "/api/v1/clients/current", token: own).status == 401)
        #expect(h.form("/oauth2/introspect", [("token", own)], basic: (h.primary.clientID, h.primary.clientSecret)).json == ["active": false])
        #expect(h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh)], basic: (id, secret)).status == 400)
        let again = try h.token(clientID: id, secret: secret)
        #expect(h.json("GET", "/api/v1/clients/current", token: again).status == 200)
        // The operator's reset ends the primary's outstanding tokens too.
        _ = try Provisioning(env: h.env, store: h.store).resetPrimary(organizationID: h.primary.organizationID)
        #expect(h.json("GET", "/api/v1/clients", token: primary).status == 401)
    }

    // 7. Reserved prefixes: a client can never carry a user's subject.
    @Test func clientIDsCannotTakeUserOrOrganizationForms() throws {
        let h = try Harness()
        let token = try h.token()
        let user = try h.user()
        for id in [user, "usr-abcdef", "USR-abcdef", "org-abcdef", "Org-12345"] {
            #expect(h.json("POST", "/api/v1/clients", token: token, body: ["client_id": .string(id), "client_name": "x"]).status == 400, "\(id)")
        }
        #expect(!ClientSpec.isValidClientID(user))
    }

    // 8. Parsers are linear: a tag with many attributes costs work in proportion to its size.
    @Test func xmlAttributesAreParsedInLinearWork() throws {
        for count in [1_000, 20_000] {
            var doc = "<oauthClient"
            for i in 0..<count { doc += " a\(i)=\"v\"" }
            doc += "/>"
            let bytes = Array(doc.utf8)
            var work = 0
            let root = try XMLElement.parse(bytes, work: &work)
            #expect(root.attributes.count == count)
            #expect(work <= 4 * bytes.count, "\(count) attributes: \(work) steps for \(bytes.count) bytes")
        }
        var duplicate = "<r"
        for i in 0..<5_000 { duplicate += " a\(i)=\"v\"" }
        duplicate += " a0=\"again\"/>"
        var work = 0
        #expect(throws: XMLParseError.self) { _ = try XMLElement.parse(Array(duplicate.utf8), work: &work) }
        #expect(work <= 4 * duplicate.utf8.count)
    }

    @Test func mergePatchesWithManyMembersMergeCorrectly() throws {
        var target: [(String, JSON)] = []
        var patch: [(String, JSON)] = []
        for i in 0..<50_000 {
            target.append(("k\(i)", .int(Int64(i))))
            patch.append(("k\(i)", i % 2 == 0 ? .null : .int(-Int64(i))))
            patch.append(("n\(i)", .int(1)))
        }
        let merged = JSON.object(target).mergePatched(with: .object(patch))
        let members = try #require(merged.objectValue)
        #expect(members.count == 25_000 + 50_000)
        #expect(merged["k1"] == .int(-1))
        #expect(merged["k2"] == nil)
        #expect(merged["n49999"] == .int(1))
    }

    // 11. The public batch read takes at most 20 ids and carries small previews; 25. only consent-capable clients.
    @Test func publicAppReadsAreBoundedAndOnlyForConsentCapableClients() throws {
        let h = try Harness()
        let token = try h.token()
        let app = try #require(h.json("POST", "/api/oauth/app", token: token, body: ["name": "Photos", "redirect_uri": "https://p.example/cb"]).json?["client_id"]?.stringValue)
        let upload = h.call("PUT", "/api/oauth/app/id/\(app)/image", headers: [
            ("Authorization", "Bearer \(token)"), ("Content-Type", "multipart/form-data; boundary=XyZ-boundary-42"),
        ], body: Fixtures.multipart(contentType: "image/png", body: Fixtures.png300x120))
        #expect(upload.status == 204)
        let logo = try #require(h.call("GET", "/api/oauth/app/id/\(app)").json?["logo"]?.stringValue)
        let png = try #require(Base64.decode(String(logo.dropFirst("data:image/png;base64,".count))))
        let header = try #require(Imaging.header(png))
        #expect(max(header.width, header.height) <= 64)
        let ids = (0..<21).map { "id\($0)x" }.joined(separator: ",")
        #expect(h.call("GET", "/api/oauth/app/ids", query: "ids=\(ids)").status == 400)
        #expect(h.call("GET", "/api/oauth/app/ids", query: "ids=\(app),\(h.primary.clientID)").json?["apps"]?.arrayValue?.count == 1)
        let machine = try #require(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "machine"]).json?["client_id"]?.stringValue)
        for id in [h.primary.clientID, machine] {
            #expect(h.call("GET", "/api/oauth/app/id/\(id)").status == 404)
            #expect(h.call("GET", "/api/oauth/app/id/\(id)/image").status == 404)
        }
    }

    // 13. Dimensions are judged from the header, before any decoding.
    @Test func imagesOverFourMegapixelsAreRefusedFromTheirHeader() throws {
        func png(_ w: UInt32, _ h: UInt32) -> [UInt8] {
            var b = Fixtures.png300x120
            let be: (UInt32) -> [UInt8] = { [UInt8($0 >> 24), UInt8($0 >> 16 & 0xFF), UInt8($0 >> 8 & 0xFF), UInt8($0 & 0xFF)] }
            b.replaceSubrange(16..<24, with: be(w) + be(h))
            return b
        }
        #expect(!Imaging.acceptable(try #require(Imaging.header(png(4096, 4096)))))
        #expect(!Imaging.acceptable(try #require(Imaging.header(png(4097, 1)))))
        #expect(Imaging.acceptable(try #require(Imaging.header(png(2048, 2048)))))
        #expect(throws: ImagingError.self) { _ = try Imaging.reencodePNG(png(4096, 4096), format: .png, maxSide: 256) }
        let h = try Harness()
        let token = try h.token()
        let id = try #require(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "x"]).json?["client_id"]?.stringValue)
        let r = h.call("PUT", "/api/v1/clients/\(id)/logo", headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "image/png")], body: png(4096, 4096))
        #expect(r.status == 400)
        // A JPEG with more than 64 scans (a decoding CPU bomb) is refused from its markers.
        var jpeg = Fixtures.jpeg64x48
        let eoi = jpeg.count - 2
        jpeg.insert(contentsOf: Array(repeating: [0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x00], count: 80).flatMap { $0 }, at: eoi)
        let jpegHeader = try #require(Imaging.header(jpeg))
        #expect(jpegHeader.scans > 64)
        #expect(!Imaging.acceptable(jpegHeader))
        #expect(Imaging.header(Fixtures.jpeg64x48)?.scans == 1)
        // A GIF whose first frame is larger than its logical screen is judged by the frame.
        var gif = Fixtures.gif20x10
        let frame = try #require(gif.firstIndex(of: 0x2C))
        gif.replaceSubrange(frame + 5..<frame + 9, with: [0x00, 0x10, 0x00, 0x10])
        #expect(Imaging.header(gif)?.width == 4096)
        #expect(!Imaging.acceptable(try #require(Imaging.header(gif))))
    }

    /// The child process's answer is framed; anything short, long or
    /// miscounted is refused (a killed or confused decoder is a 400).
    @Test func reencodedImagesRoundTripThroughTheChildFrame() throws {
        let images: [[UInt8]] = [Array(repeating: 1, count: 300), [], [9, 8, 7]]
        let framed = ImageReencoder.frame(images)
        #expect(ImageReencoder.unframe(framed, count: 3) == images)
        #expect(ImageReencoder.unframe(framed, count: 2) == nil)
        #expect(ImageReencoder.unframe(Array(framed.dropLast()), count: 3) == nil)
        #expect(ImageReencoder.unframe(framed + [0], count: 3) == nil)
        #expect(ImageReencoder.unframe([0xFF, 0xFF, 0xFF, 0xFF], count: 1) == nil)
        // A reencoder that fails is a 400 at the endpoint, never a 500.
        let failing = ImageReencoder { _, _, _ in throw ImagingError(description: "killed") }
        let h = try Harness(images: failing)
        let token = try h.token()
        let id = try #require(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "x"]).json?["client_id"]?.stringValue)
        let r = h.call("PUT", "/api/v1/clients/\(id)/logo", headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "image/png")], body: Fixtures.png300x120)
        #expect(r.status == 400)
        #expect(try h.store.logo(clientID: id) == nil)
    }

    // 14. A primary client cannot lock its organization out; the operator resets it.
    @Test func thePrimaryKeepsItsGrantAndScopesAndTheOperatorCanResetIt() throws {
        let h = try Harness()
        let token = try h.token()
        let id = h.primary.clientID
        let noGrant = h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: ["grant_types": ["authorization_code"], "redirect_uris": ["https://x.example/cb"]])
        #expect(noGrant.status == 409)
        let fewerScopes = h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: ["scope": "clients:read clients:write"])
        #expect(fewerScopes.status == 409)
        #expect(h.json("PUT", "/external/v1/oauth/client", token: token, body: ["clientId": .string(id), "application": "p", "accessScopes": ["clients:read"]]).status == 409)
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: ["scope": .string(Scopes.join(Scopes.primary + ["openid"]))]).status == 200)
        // An older version could lose them: the operator's way back in.
        try h.store.write {
            var p = try #require(try h.store.client(id))
            p.grantTypes = ["authorization_code"]
            p.scope = ["openid"]
            try h.store.updateClient(p)
        }
        let reset = try Provisioning(env: h.env, store: h.store).resetPrimary(organizationID: h.primary.organizationID)
        #expect(reset.clientID == id)
        #expect(h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (id, h.primary.clientSecret)).status == 401)
        let fresh = try h.token(clientID: id, secret: reset.clientSecret)
        #expect(h.json("GET", "/api/v1/clients", token: fresh).status == 200)
        #expect(try h.store.client(id)?.scope.contains("gov.user.oauth.app:write") == true)
        #expect(throws: ProvisioningError.self) { _ = try Provisioning(env: h.env, store: h.store).resetPrimary(organizationID: "org-nope") }
    }

    // 15. Secrets at rest: the pepper is sealed with the KEK; CSRF tokens are stored as hashes.
    @Test func thePepperIsSealedAndCSRFTokensAreHashed() throws {
        let h = try Harness(kek: Array(repeating: 7, count: 32))
        #expect(try h.store.meta("secret_pepper") == nil)
        let sealed = try #require(try h.store.meta("secret_pepper_sealed"))
        #expect(!sealed.isEmpty)
        #expect(try h.token().isEmpty == false)
        // A pepper stored in clear before a KEK was configured is sealed on first use, and keeps verifying.
        let plain = try Harness()
        let clear = try #require(try plain.store.meta("secret_pepper"))
        let withKEK = OAuth.Environment(issuer: Harness.issuer, now: { 1 }, kek: Array(repeating: 9, count: 32))
        let hasher = try Provisioning.secretHasher(store: plain.store, env: withKEK)
        #expect(try plain.store.meta("secret_pepper") == nil)
        #expect(try plain.store.meta("secret_pepper_sealed") != nil)
        #expect(hasher.hmacHash("x") == SecretHasher(pepper: try #require(Hex.decode(clear))).hmacHash("x"))
        // CSRF.
        _ = try h.user()
        let b = Browser(h)
        #expect(b.login().status == 204)
        let csrf = try #require(b.cookies["lk_csrf"])
        let sessionCookie = try #require(b.cookies["lk_session"])
        let session = try #require(try h.store.session(idHash: SessionService.hash(sessionCookie)))
        #expect(session.csrf != csrf)
        #expect(session.csrf == SessionService.hash(csrf))
        #expect(b.send("DELETE", "/api/v1/session").status == 204)
    }

    /// Keys and upstream secrets stored before a KEK was configured are sealed
    /// when one is; tokens signed before keep verifying, and new ones are signed.
    @Test func whatWasStoredInClearIsSealedWhenAKEKIsConfigured() throws {
        let h = try Harness()
        let token = try h.token()
        let created = h.call("POST", "/uc/resources/oauthclient", headers: [
            ("Authorization", Harness.basic(h.primary.clientID, h.primary.clientSecret)), ("Content-Type", "application/json"),
        ], body: Array(#"{"name": "G", "provider": "Google", "clientId": "x.apps", "clientSecret": "upstream-secret", "scopes": ["openid"]}"#.utf8))
        #expect(created.status == 200)
        #expect(try h.store.signingKeys().allSatisfy { !$0.encrypted })
        let clock = h.clock
        let kek = OAuth.Environment(issuer: Harness.issuer, now: { clock.now }, kek: Array(repeating: 3, count: 32))
        #expect(try Provisioning.sealAtRest(store: h.store, env: kek) == 2)
        #expect(try h.store.signingKeys().allSatisfy(\.encrypted))
        #expect(try h.store.upstreamsStoredInClear().isEmpty)
        #expect(try h.store.meta("secret_pepper") == nil)
        #expect(try Provisioning.sealAtRest(store: h.store, env: kek) == 0)
        let worker = try Worker(app: Application(env: kek, logger: Logger(level: .off)), store: h.store)
        let call = { (method: String, path: String, headers: [(String, String)], body: [UInt8]) in
            worker.handle(Request(method: HTTPRequest.Method(method)!, path: path, headers: HTTPFields(headers), body: body))
        }
        #expect(call("GET", "/api/v1/clients/current", [("Authorization", "Bearer \(token)")], []).status == 200)
        let fresh = call("POST", "/oauth2/token", [("Content-Type", "application/x-www-form-urlencoded"),
                                                  ("Authorization", Harness.basic(h.primary.clientID, h.primary.clientSecret))],
                         Array("grant_type=client_credentials".utf8))
        #expect(fresh.status == 200)
        #expect(try h.store.upstreams(organizationID: h.primary.organizationID).first.map { try SealedBox.open($0.secret, key: Array(repeating: 3, count: 32)) }
                == Array("upstream-secret".utf8))
    }

    // 17. Loopback ports are plain digits.
    @Test func loopbackPortsArePlainDigits() {
        let registered = ["http://127.0.0.1/cb", "http://[::1]/cb"]
        for port in ["+80", "0080", "065535", "65536", "0", "-1", " 80", "8_0", "٨٠"] {
            #expect(!AuthorizationService.redirectURIMatches("http://127.0.0.1:\(port)/cb", registered: registered), "\(port)")
            #expect(!AuthorizationService.redirectURIMatches("http://[::1]:\(port)/cb", registered: registered), "\(port)")
        }
        for port in ["1", "80", "8080", "65535"] {
            #expect(AuthorizationService.redirectURIMatches("http://127.0.0.1:\(port)/cb", registered: registered), "\(port)")
        }
        #expect(URIRules.parse("https://example.com:+443/") == nil)
        #expect(URIRules.parse("https://example.com:0443/") == nil)
    }

    // 18. A pending request belongs to the browser that started it.
    @Test func anotherBrowserCannotReadOrAnswerAPendingRequest() throws {
        let h = try Harness()
        _ = try h.user()
        _ = try h.user("mallory")
        let (client, _) = try h.app()
        let victim = Browser(h)
        let first = victim.authorize(flow.authorizeParams(client, PKCE()))
        let firstLocation = try #require(first.headers[.location])
        let request = try #require(queryItems(firstLocation)["request"])
        #expect(victim.cookies["lk_browser"] != nil)
        let attacker = Browser(h)
        #expect(attacker.login("mallory").status == 204)
        #expect(attacker.send("GET", "/api/v1/authorization-requests/\(request)").status == 404)
        #expect(attacker.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid"]]).status == 404)
        #expect(attacker.json("POST", "/api/v1/authorization-requests/\(request)/reject", [:]).status == 404)
        #expect(attacker.send("GET", "/oauth2/authorize/continue", query: "request=\(request)").status == 400)
        // The browser that started it still can.
        #expect(victim.login().status == 204)
        #expect(victim.send("GET", "/api/v1/authorization-requests/\(request)").status == 200)
    }

    // 19. Names shown to people refuse control and bidi characters; the consent names the organization.
    @Test func displayedNamesAreSafeAndTheConsentNamesTheOrganization() throws {
        let h = try Harness()
        let token = try h.token()
        for name in ["Pay\u{202E}lapyaP", "a\u{200F}b", "x\u{0085}y", "tab\tname", "\u{2066}iso", "line\u{2028}sep", "par\u{2029}a",
                     "soft\u{00AD}hyphen", "mongolian\u{180E}", "arabic\u{0600}", "cgj\u{034F}", "emoji\u{FE0F}", "music\u{1D173}",
                     "tag\u{E0041}", "\u{115F}filler", "han\u{3164}", "private\u{E000}", "unassigned\u{0378}"] {
            #expect(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": .string(name)]).status == 400, "\(name.unicodeScalars.map(\.value))")
            #expect(h.json("POST", "/api/oauth/app", token: token, body: ["name": .string(name), "redirect_uri": "https://x.example/cb"]).status == 400)
        }
        #expect(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "Ünïcødé 名前 ok"]).status == 201)
        _ = try h.user()
        let (client, _) = try h.app()
        let b = Browser(h)
        b.login()
        let location = try #require(b.authorize(flow.authorizeParams(client, PKCE())).headers[.location])
        let pending = try #require(queryItems(location)["request"])
        let details = b.send("GET", "/api/v1/authorization-requests/\(pending)")
        #expect(details.json?["organization"]?["name"] == "Acme")
        #expect(details.json?["organization"]?["organization_id"] == .string(h.primary.organizationID))
    }

    // 10. An anonymous authorize stores nothing that outlives its 10 minutes.
    @Test func expiredAuthorizationRequestsAreSweptByTheNextOne() throws {
        let h = try Harness()
        let (client, _) = try h.app()
        let first = Browser(h).authorize(flow.authorizeParams(client, PKCE()))
        let firstLocation = try #require(first.headers[.location])
        let id = try #require(queryItems(firstLocation)["request"])
        #expect(try h.store.authorizationRequest(idHash: SessionService.hash(id)) != nil)
        h.clock.advance(seconds: 601)
        _ = Browser(h).authorize(flow.authorizeParams(client, PKCE()))
        #expect(try h.store.authorizationRequest(idHash: SessionService.hash(id)) == nil)
    }

    // 21. redirect_uri is required, even with one registered URI.
    @Test func anAuthorizationRequestWithoutRedirectURIIsAnErrorPage() throws {
        let h = try Harness()
        let (client, _) = try h.app()
        let r = Browser(h).authorize([("response_type", "code"), ("client_id", client), ("scope", "openid"),
                                       ("code_challenge", PKCE().challenge), ("code_challenge_method", "S256")])
        #expect(r.status == 400)
        #expect(r.headers[.location] == nil)
        #expect(r.bodyText.contains("no redirect_uri"))
    }

    // 22. A rotation is a write: the app's time moves.
    @Test func rotatingAnAppsKeyUpdatesItsTime() throws {
        let h = try Harness()
        let token = try h.token()
        let app = try #require(h.json("POST", "/api/oauth/app", token: token, body: ["name": "Photos", "redirect_uri": "https://p.example/cb"]).json?["client_id"]?.stringValue)
        let before = try #require(h.call("GET", "/api/oauth/app/id/\(app)").json?["time"]?.intValue)
        h.clock.advance(seconds: 10)
        #expect(h.json("PUT", "/api/oauth/app/id/\(app)/rotate", token: token).status == 200)
        #expect(h.call("GET", "/api/oauth/app/id/\(app)").json?["time"]?.intValue == before + 10)
        #expect(h.json("GET", "/api/v1/clients/\(app)", token: token).json?["version"] == 2)
    }

    // 24. The upstream surface: 401 only without an Authorization header.
    @Test func upstreamRecordsAnswer403ToBearerTokensAndWrongCredentials() throws {
        let h = try Harness()
        let token = try h.token()
        let path = "/uc/resources/oauthclient/list"
        #expect(h.call("GET", path).status == 401)
        #expect(h.call("GET", path).headers[.wwwAuthenticate] != nil)
        for header in ["Bearer \(token)", Harness.basic(h.primary.clientID, "wrong"), "Basic !!!", "Digest x"] {
            let r = h.call("GET", path, headers: [("Authorization", header)])
            #expect(r.status == 403, "\(header.prefix(8))")
            #expect(r.headers[.wwwAuthenticate] == nil)
        }
        #expect(h.call("GET", path, headers: [("Authorization", Harness.basic(h.primary.clientID, h.primary.clientSecret))]).status == 200)
    }
}

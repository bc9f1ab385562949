import Common
import Cryptography
import HTTPCore
import JOSE
import OAuth
import SQLiteStore
import TestSupport
import Testing

/// The device authorization grant (RFC 8628) through the handlers: the
/// device's requests, the user's page API and the consent screen, each
/// test named after the section it enforces.
@Suite struct DeviceAuthorizationTests {
    static let grant = "urn:ietf:params:oauth:grant-type:device_code"
    static let deviceGrants: [GrantType] = [.deviceCode, .refreshToken]

    /// A device client (public unless `public: false`) and a signed-in browser.
    func setUp(public isPublic: Bool = true) throws -> (Harness, String, String?, Browser) {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: isPublic, redirectURIs: [], grantTypes: DeviceAuthorizationTests.deviceGrants)
        let b = Browser(h)
        b.login()
        return (h, client, secret, b)
    }

    func start(_ h: Harness, _ client: String, _ secret: String?, scope: String = "openid profile offline_access") -> Response {
        var items = [("scope", scope)]
        if secret == nil { items.append(("client_id", client)) }
        return h.form("/oauth2/device_authorization", items, basic: secret.map { (client, $0) })
    }

    func poll(_ h: Harness, _ client: String, _ secret: String?, _ deviceCode: String) -> Response {
        var items = [("grant_type", DeviceAuthorizationTests.grant), ("device_code", deviceCode)]
        if secret == nil { items.append(("client_id", client)) }
        return h.form("/oauth2/token", items, basic: secret.map { (client, $0) })
    }

    /// The user types `userCode` on the device page; the consent request's id.
    func enter(_ b: Browser, _ userCode: String) throws -> String {
        let r = b.json("POST", "/api/v1/device", ["user_code": .string(userCode)])
        #expect(r.status == 200, "\(r.bodyText)")
        let id = try #require(r.json?["request_id"]?.stringValue)
        #expect(r.json?["redirect_to"]?.stringValue == "/consent/?request=\(id)")
        return id
    }

    /// SPEC 4.5 (attacker review, session 17): a device code approved before its client was disabled came back as
    /// tokens once the client was enabled again; disabling denies it, and one still waiting for the user too.
    @Test func disablingTheClientDeniesItsApprovedAndWaitingDeviceCodes() throws {
        let (h, client, _, b) = try setUp()
        let approved = try #require(start(h, client, nil).json)
        let waiting = try #require(start(h, client, nil).json)
        let id = try enter(b, try #require(approved["user_code"]?.stringValue))
        #expect(b.json("POST", "/api/v1/authorization-requests/\(id)/accept", ["scope": ["openid"], "remember": false]).status == 200)
        let token = try h.token()
        #expect(h.json("PATCH", "/api/v1/clients/\(client)", token: token, body: ["enabled": false]).status == 200)
        #expect(h.json("PATCH", "/api/v1/clients/\(client)", token: token, body: ["enabled": true]).status == 200)
        h.clock.advance(seconds: 5)
        for code in [approved, waiting] {
            let r = poll(h, client, nil, try #require(code["device_code"]?.stringValue))
            #expect(r.status == 400 && r.json?["error"] == "access_denied", "\(r.bodyText)")
        }
        // The user's page no longer takes the waiting one's code.
        #expect(b.json("POST", "/api/v1/device", ["user_code": .string(try #require(waiting["user_code"]?.stringValue))]).status != 200)
    }

    @Test func rfc8628Section3Point2TheDeviceGetsItsCodesAndTheUserApprovesOnTheConsentScreen() throws {
        let (h, client, _, b) = try setUp()
        let started = start(h, client, nil)
        #expect(started.status == 200, "\(started.bodyText)")
        #expect(started.headers[.cacheControl] == "no-store")
        let body = try #require(started.json)
        let deviceCode = try #require(body["device_code"]?.stringValue)
        let userCode = try #require(body["user_code"]?.stringValue)
        #expect(userCode.utf8.count == 9 && userCode.utf8.allSatisfy { "BCDFGHJKLMNPQRSTVWXZ-".utf8.contains($0) })
        #expect(body["verification_uri"]?.stringValue == Harness.issuer + "/device/")
        #expect(body["verification_uri_complete"]?.stringValue == Harness.issuer + "/device/?user_code=" + userCode)
        #expect(body["expires_in"] == 600 && body["interval"] == 5)
        // §5.1: stored keyed under the pepper; a plain SHA-256 of one of 20^8 codes is undone from a copy of the database.
        let typed = userCode.replacingOccurrences(of: "-", with: "")
        #expect(try h.store.read { try h.store.deviceCode(userCodeHash: Base64.urlEncode(Digest.sha256(typed))) } == nil)
        let keyed = try Provisioning.secretHasher(store: h.store, env: h.env).userCodeHash(typed)
        #expect(try h.store.read { try h.store.deviceCode(userCodeHash: keyed) }?.clientID == client)

        #expect(poll(h, client, nil, deviceCode).json?["error"] == "authorization_pending")
        // §6.1: case, dashes and blanks do not matter to the user.
        let id = try enter(b, " " + userCode.lowercased().replacingOccurrences(of: "-", with: " ") + " ")
        let details = try #require(b.send("GET", "/api/v1/authorization-requests/\(id)").json)
        #expect(details["device"] == true && details["redirect_uri"] == .null)
        #expect((details["scopes"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue } == ["openid", "profile", "offline_access"])
        let accepted = b.json("POST", "/api/v1/authorization-requests/\(id)/accept", ["scope": ["openid", "offline_access"], "remember": false])
        #expect(accepted.json?["redirect_to"]?.stringValue == Harness.issuer + "/device/?result=approved", "\(accepted.bodyText)")

        h.clock.advance(seconds: 5)
        let tokens = poll(h, client, nil, deviceCode)
        #expect(tokens.status == 200, "\(tokens.bodyText)")
        let t = try #require(tokens.json)
        #expect(t["scope"] == "openid offline_access" && t["token_type"] == "Bearer")
        #expect(t["refresh_token"]?.stringValue != nil)
        let idTokenText = try #require(t["id_token"]?.stringValue)
        let idToken = try #require(JWS.parse(idTokenText))
        #expect(idToken.payload["aud"]?.stringValue == client && idToken.payload["nonce"] == nil && idToken.payload["sid"] == nil)
        // The connection is on the user's account page.
        let connections = b.send("GET", "/api/v1/me/connections").json?["connections"]?.arrayValue ?? []
        #expect(connections.contains { $0["client_id"]?.stringValue == client })
        // The refresh token works like any other.
        let refreshed = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", try #require(t["refresh_token"]?.stringValue)),
                                                 ("client_id", client)])
        #expect(refreshed.status == 200, "\(refreshed.bodyText)")
        // Redeemed once: the same device code again (even after the interval) is invalid_grant, and (RFC 6749 §4.1.2,
        // as for a code) it revokes what the first redemption issued, the rotated refresh token included.
        h.clock.advance(seconds: 5)
        #expect(poll(h, client, nil, deviceCode).json?["error"] == "invalid_grant")
        let afterReplay = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("client_id", client),
                                                   ("refresh_token", try #require(refreshed.json?["refresh_token"]?.stringValue))])
        #expect(afterReplay.status == 400 && afterReplay.json?["error"] == "invalid_grant", "\(afterReplay.bodyText)")
        // The user code is spent too.
        #expect(b.json("POST", "/api/v1/device", ["user_code": .string(userCode)]).status == 404)
    }

    @Test func rfc8628Section3Point5PollingFasterThanTheIntervalIsSlowDownAndTheIntervalGrows() throws {
        let (h, client, secret, _) = try setUp(public: false)
        let deviceCode = try #require(start(h, client, secret).json?["device_code"]?.stringValue)
        #expect(poll(h, client, secret, deviceCode).json?["error"] == "authorization_pending")
        h.clock.advance(seconds: 4)
        let fast = poll(h, client, secret, deviceCode)
        #expect(fast.status == 400 && fast.json?["error"] == "slow_down", "\(fast.bodyText)")
        // The interval is now 10 seconds, counted from the last poll.
        h.clock.advance(seconds: 9)
        #expect(poll(h, client, secret, deviceCode).json?["error"] == "slow_down")
        h.clock.advance(seconds: 15)
        #expect(poll(h, client, secret, deviceCode).json?["error"] == "authorization_pending")
        let stored = try #require(try h.store.read { try h.store.deviceCode(hash: Base64.urlEncode(Digest.sha256(deviceCode))) })
        #expect(stored.interval == 15)
    }

    @Test func rfc8628Section3Point5ADeniedCodeIsAccessDeniedAndAnExpiredOneExpiredToken() throws {
        let (h, client, _, b) = try setUp()
        let first = try #require(start(h, client, nil).json)
        let id = try enter(b, try #require(first["user_code"]?.stringValue))
        let denied = b.json("POST", "/api/v1/authorization-requests/\(id)/reject", [:])
        #expect(denied.json?["redirect_to"]?.stringValue == Harness.issuer + "/device/?result=denied", "\(denied.bodyText)")
        #expect(poll(h, client, nil, try #require(first["device_code"]?.stringValue)).json?["error"] == "access_denied")

        let second = try #require(start(h, client, nil).json)
        h.clock.advance(seconds: 601)
        #expect(poll(h, client, nil, try #require(second["device_code"]?.stringValue)).json?["error"] == "expired_token")
        #expect(b.json("POST", "/api/v1/device", ["user_code": second["user_code"] ?? .null]).status == 404, "an expired code cannot be entered")
    }

    /// A device code of the public client `client` that the signed-in `b`
    /// approved for openid and offline_access and the device redeemed: the
    /// code and the refresh token it got.
    func redeemed(_ h: Harness, _ client: String, _ b: Browser) throws -> (deviceCode: String, refresh: String) {
        let started = try #require(start(h, client, nil).json)
        let id = try enter(b, try #require(started["user_code"]?.stringValue))
        _ = b.json("POST", "/api/v1/authorization-requests/\(id)/accept", ["scope": ["openid", "offline_access"], "remember": false])
        let deviceCode = try #require(started["device_code"]?.stringValue)
        return (deviceCode, try #require(poll(h, client, nil, deviceCode).json?["refresh_token"]?.stringValue))
    }

    /// A redeemed device code presented again after its expiry is reuse all
    /// the same, as an authorization code's replay is (review of time
    /// handling, session 32: it was expired_token and ended nothing).
    @Test func aRedeemedDeviceCodePresentedAgainPastItsExpiryRevokesTheGrant() throws {
        let (h, client, _, b) = try setUp()
        let (deviceCode, refresh) = try redeemed(h, client, b)
        h.clock.advance(seconds: 601)
        let replay = poll(h, client, nil, deviceCode)
        #expect(replay.status == 400 && replay.json?["error"] == "invalid_grant", "\(replay.bodyText)")
        let refreshed = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)])
        #expect(refreshed.json?["error"] == "invalid_grant", "the grant was revoked: \(refreshed.bodyText)")
    }

    /// For as long as such rows are kept, not longer: a row left over past
    /// that (rows go when the next device authorization purges them) does
    /// not let a stale code end a device's grant days later.
    @Test func aRedeemedDeviceCodeLeftOverPastItsKeepingRevokesNothing() throws {
        let (h, client, _, b) = try setUp()
        let (deviceCode, refresh) = try redeemed(h, client, b)
        h.clock.advance(seconds: 600 + DeviceCodeRecord.keptAfterExpiryMillis / 1000)
        #expect(poll(h, client, nil, deviceCode).json?["error"] == "expired_token")
        let refreshed = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)])
        #expect(refreshed.status == 200, "the device's grant lives on: \(refreshed.bodyText)")
    }

    @Test func rfc8628Section3Point4ADeviceCodeIsItsClientsOnly() throws {
        let (h, client, _, b) = try setUp()
        let (other, _) = try h.app(public: true, redirectURIs: [], grantTypes: DeviceAuthorizationTests.deviceGrants)
        let body = try #require(start(h, client, nil).json)
        let deviceCode = try #require(body["device_code"]?.stringValue)
        let id = try enter(b, try #require(body["user_code"]?.stringValue))
        _ = b.json("POST", "/api/v1/authorization-requests/\(id)/accept", ["scope": ["openid"], "remember": true])
        #expect(poll(h, other, nil, deviceCode).json?["error"] == "invalid_grant")
        #expect(poll(h, client, nil, "lkd_guess").json?["error"] == "invalid_grant")
        // The refusals spent nothing: the client still redeems it.
        #expect(poll(h, client, nil, deviceCode).status == 200)
    }

    @Test func spec5Point2ADisconnectBeforeTheDevicePollsEndsTheApproval() throws {
        let (h, client, _, b) = try setUp()
        let body = try #require(start(h, client, nil).json)
        let id = try enter(b, try #require(body["user_code"]?.stringValue))
        _ = b.json("POST", "/api/v1/authorization-requests/\(id)/accept", ["scope": ["openid", "profile"], "remember": true])
        #expect(b.send("DELETE", "/api/v1/me/connections/\(client)").status == 204)
        #expect(poll(h, client, nil, try #require(body["device_code"]?.stringValue)).json?["error"] == "access_denied")
    }

    @Test func rfc8628Section5Point4ADeviceRequestIsAlwaysAnsweredOnTheConsentScreenOnce() throws {
        let (h, client, _, b) = try setUp()
        // Remembered consent for the client does not approve a device on its own.
        let first = try #require(start(h, client, nil).json)
        let firstID = try enter(b, try #require(first["user_code"]?.stringValue))
        _ = b.json("POST", "/api/v1/authorization-requests/\(firstID)/accept", ["scope": ["openid", "profile", "offline_access"], "remember": true])
        let second = try #require(start(h, client, nil).json)
        let id = try enter(b, try #require(second["user_code"]?.stringValue))
        let continued = b.send("GET", "/oauth2/authorize/continue", query: "request=\(id)")
        #expect(continued.headers[.location] == "/consent/?request=\(id)")
        // Another browser, even signed in as the same user, cannot see or answer it.
        let other = Browser(h)
        other.login()
        #expect(other.send("GET", "/api/v1/authorization-requests/\(id)").status == 404)
        #expect(other.json("POST", "/api/v1/authorization-requests/\(id)/accept", ["scope": ["openid"], "remember": false]).status == 404)
        // Answered once: approve, then deny again, is refused; the code stays approved.
        #expect(b.json("POST", "/api/v1/authorization-requests/\(id)/accept", ["scope": ["openid"], "remember": false]).status == 200)
        #expect(b.json("POST", "/api/v1/authorization-requests/\(id)/reject", [:]).status == 409)
        // A code entered twice makes two consent requests; the first answer wins, the second finds the code answered.
        let third = try #require(start(h, client, nil).json)
        let code = try #require(third["user_code"]?.stringValue)
        let (a, c) = (try enter(b, code), try enter(b, code))
        #expect(b.json("POST", "/api/v1/authorization-requests/\(a)/reject", [:]).status == 200)
        #expect(b.json("POST", "/api/v1/authorization-requests/\(c)/accept", ["scope": ["openid"], "remember": false]).status == 404)
        #expect(poll(h, client, nil, try #require(third["device_code"]?.stringValue)).json?["error"] == "access_denied")
    }

    @Test(arguments: [
        ("a scope the client did not register", [("scope", "openid phone")], 400, "invalid_scope"),
        ("a management scope", [("scope", "clients:write")], 400, "invalid_scope"),
        ("a malformed scope", [("scope", "openid \"x\"")], 400, "invalid_scope"),
    ] as [(String, [(String, String)], Int, String)])
    func rfc8628Section3Point2TheScopeIsCheckedAsAtTheAuthorizationEndpoint(_ name: String, _ items: [(String, String)], _ status: Int, _ error: String) throws {
        let (h, client, _, _) = try setUp()
        let r = h.form("/oauth2/device_authorization", items + [("client_id", client)])
        #expect(r.status.code == status && r.json?["error"]?.stringValue == error, "\(name): \(r.bodyText)")
        #expect(try h.store.read { try h.store.liveDeviceCodes(clientID: client, address: "", now: h.clock.now) }.client == 0)
    }

    @Test func rfc8628Section3Point1TheClientAuthenticatesAndMustHaveRegisteredTheGrant() throws {
        let (h, client, secret, _) = try setUp(public: false)
        let s = try #require(secret)
        #expect(start(h, client, s + "x").status == 401, "a wrong secret")
        #expect(start(h, client, nil).status == 401, "a confidential client without its secret")
        #expect(h.form("/oauth2/device_authorization", [("client_id", "unknown-client"), ("scope", "openid")]).status == 401)
        let (codeOnly, _) = try h.app(public: true)
        #expect(start(h, codeOnly, nil).json?["error"] == "unauthorized_client")
        // Not a form: 400, nothing stored.
        let json = h.call("POST", "/oauth2/device_authorization", headers: [("Content-Type", "application/json")], body: Array("{}".utf8))
        #expect(json.status == 400 && json.json?["error"] == "invalid_request")
        #expect(try h.store.read { try h.store.liveDeviceCodes(clientID: client, address: "", now: h.clock.now) }.client == 0)
        // The token endpoint refuses the grant to a client that did not register it.
        #expect(poll(h, codeOnly, nil, "lkd_x").json?["error"] == "unauthorized_client")
    }

    @Test func spec7Point1UserCodesEnteredAreLimitedPerAccountAndAddress() throws {
        let (h, client, _, b) = try setUp()
        let body = try #require(start(h, client, nil).json)
        for guess in 0..<9 {
            let r = b.json("POST", "/api/v1/device", ["user_code": .string(guess % 2 == 0 ? "BCDF-GHJK" : "not a code")])
            #expect(r.status == 404, "\(r.bodyText)")
        }
        // A right code counts too (it stores a consent request).
        _ = try enter(b, try #require(body["user_code"]?.stringValue))
        // The eleventh try within the minute is refused before any lookup, even with the right code.
        let limited = b.json("POST", "/api/v1/device", ["user_code": body["user_code"] ?? .null])
        #expect(limited.status == 429 && limited.headers[.retryAfter] != nil, "\(limited.bodyText)")
        h.clock.advance(seconds: 61)
        _ = try enter(b, try #require(body["user_code"]?.stringValue))
    }

    /// Attacker review, session 17: past the account's overall limit, each address that had not failed on it yet still
    /// got its tries, so one user guessing from many addresses (an IPv6 /48 is 65,536 /64s) was barely slowed. Only the
    /// signed-in user enters codes for the account: its overall limit holds from every address.
    @Test func spec7Point1TheAccountsOverallLimitHoldsFromEveryAddress() throws {
        let (h, client, _, _) = try setUp()
        let body = try #require(start(h, client, nil).json)
        let user = try #require(try h.store.read { try h.store.user(username: "alice") })
        let service = DeviceAuthorizationService(env: h.env, store: h.store)
        let guards = AbuseGuards()
        func enter(_ code: String, from address: String) throws -> String? {
            try service.enter(code, user: user, browser: "browser-cookie", guards: guards, address: address,
                              hasher: try Provisioning.secretHasher(store: h.store, env: h.env))
        }
        for i in 0..<100 {
            #expect(try enter("BCDF-GHJK", from: "2001:db8:\(String(i, radix: 16))::1") == nil)
        }
        #expect(throws: TooManyFailures.self) { _ = try enter(try #require(body["user_code"]?.stringValue), from: "2001:db8:ffff::1") }
        #expect(throws: TooManyFailures.self) { _ = try enter(try #require(body["user_code"]?.stringValue), from: "198.51.100.7") }
        h.clock.advance(seconds: 61)
        #expect(try enter(try #require(body["user_code"]?.stringValue), from: "198.51.100.7") != nil)
    }

    @Test func theDevicePageAPIWantsASessionItsCSRFTokenAndAOneMemberBody() throws {
        let (h, client, _, b) = try setUp()
        let code = try #require(start(h, client, nil).json?["user_code"])
        #expect(Browser(h).json("POST", "/api/v1/device", ["user_code": code]).status == 401, "no session")
        #expect(b.json("POST", "/api/v1/device", ["user_code": code], csrf: false).status == 403, "no CSRF token")
        #expect(b.json("POST", "/api/v1/device", ["user_code": code, "extra": true]).status == 400)
        #expect(b.json("POST", "/api/v1/device", ["user_code": 12345678]).status == 400)
        #expect(b.send("POST", "/api/v1/device", headers: [("Content-Type", "application/json")], body: Array("{".utf8)).status == 400)
        // A user's bearer token is not a browser: the page API takes sessions only.
        #expect(h.json("POST", "/api/v1/device", token: try h.token(), body: ["user_code": code]).status == 401)
    }

    @Test func spec7Point1LiveDeviceCodesAreBoundedPerAddressAndPerClient() throws {
        let (h, client, _, _) = try setUp()
        let clientRecord = try #require(try h.store.read { try h.store.client(client) })
        var service = DeviceAuthorizationService(env: h.env, store: h.store)
        (service.liveCodesPerAddress, service.liveCodesPerClient) = (2, 5)
        func refusal(_ address: String) -> OAuthError? {
            do {
                _ = try service.start(client: clientRecord, scope: "openid", address: address, hasher: try Provisioning.secretHasher(store: h.store, env: h.env))
                return nil
            } catch { return error as? OAuthError }
        }
        #expect(refusal("192.0.2.1") == nil)
        h.clock.advance(seconds: 100)
        #expect(refusal("192.0.2.1") == nil)
        // The address's third: 429 until its first code expires (500 s from now). Refused before any write begins
        // (review, session 25: counted under the writer, a flood past the allowance held up every write).
        let writesBefore = (h.store as? SQLiteStore)?.writesBegun
        let limited = try #require(refusal("192.0.2.1"))
        #expect((h.store as? SQLiteStore)?.writesBegun == writesBefore)
        #expect(limited.status == 429 && limited.code == "rate_limited" && limited.headers.contains { $0 == ("Retry-After", "500") })
        // An IPv6 address counts by its /64.
        #expect(refusal("2001:db8:1:2::1") == nil && refusal("2001:db8:1:2:ffff::9") == nil)
        #expect(refusal("2001:db8:1:2::77")?.status == 429)
        // Other addresses until the client's allowance is spent.
        #expect(refusal("198.51.100.7") == nil)
        #expect(refusal("198.51.100.8")?.status == 429, "five live codes for the client")
        h.clock.advance(seconds: 501)
        #expect(refusal("192.0.2.1") == nil, "the first code expired")
    }

    @Test func rfc8628Section3Point1WithoutAScopeTheDeviceAsksForEveryScopeTheClientMayAskAUserFor() throws {
        let (h, client, _, _) = try setUp()
        let started = h.form("/oauth2/device_authorization", [("client_id", client)])
        #expect(started.status == 200, "\(started.bodyText)")
        let code = try #require(started.json?["device_code"]?.stringValue)
        let stored = try #require(try h.store.read { try h.store.deviceCode(hash: Base64.urlEncode(Digest.sha256(code))) })
        #expect(stored.scope == ["openid", "profile", "email", "offline_access", "connections:read", "connections:write"])
    }

    @Test func aDeviceApprovalAddsToTheConnectionAndRemembersNothing() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app(public: true, grantTypes: [.authorizationCode, .deviceCode, .refreshToken])
        let b = Browser(h)
        b.login()
        // The code flow first, remembered for openid profile.
        let pkce = PKCE()
        let first = b.authorize([("response_type", "code"), ("client_id", client), ("redirect_uri", Harness.redirect), ("scope", "openid profile"),
                                 ("code_challenge", pkce.challenge), ("code_challenge_method", "S256")])
        let location = try #require(first.headers[.location])
        let consent = try #require(queryItems(location)["request"])
        let remembered = b.json("POST", "/api/v1/authorization-requests/\(consent)/accept", ["scope": ["openid", "profile"], "remember": true])
        #expect(remembered.status == 200, "\(location) \(remembered.bodyText)")
        // A device asks for openid email; the user approves with remember: true (the page never offers it).
        let started = try #require(start(h, client, nil, scope: "openid email").json)
        let id = try enter(b, try #require(started["user_code"]?.stringValue))
        #expect(b.json("POST", "/api/v1/authorization-requests/\(id)/accept", ["scope": ["openid", "email"], "remember": true]).status == 200)
        let alice = try #require(try h.store.read { try h.store.user(username: "alice") })
        let connection = try #require(try h.store.read { try h.store.connection(userID: alice.id, clientID: client) })
        #expect(connection.rememberedScope == ["openid", "profile"], "the code flow's remembered consent is kept, nothing added")
        #expect(connection.grantedScope == ["openid", "profile", "email"])
        // So the code flow still asks before granting email.
        let again = b.authorize([("response_type", "code"), ("client_id", client), ("redirect_uri", Harness.redirect), ("scope", "openid email"),
                                 ("code_challenge", pkce.challenge), ("code_challenge_method", "S256")])
        #expect(again.headers[.location]?.hasPrefix("/consent/") == true)
    }

    @Test func aClientThatLostTheGrantCannotHaveItsCodesEnteredOrAnswered() throws {
        let (h, client, _, b) = try setUp()
        let first = try #require(start(h, client, nil).json)
        let second = try #require(start(h, client, nil).json)
        let id = try enter(b, try #require(first["user_code"]?.stringValue))
        try h.store.write {
            guard var record = try h.store.client(client) else { return }
            record.grantTypes = [.authorizationCode]
            record.redirectURIs = [Harness.redirect]
            try h.store.updateClient(record)
        }
        #expect(b.json("POST", "/api/v1/device", ["user_code": second["user_code"] ?? .null]).status == 404)
        #expect(b.json("POST", "/api/v1/authorization-requests/\(id)/accept", ["scope": ["openid"], "remember": false]).status == 404)
        let user = try #require(try h.store.read { try h.store.user(username: "alice") })
        #expect(try h.store.read { try h.store.connection(userID: user.id, clientID: client) } == nil, "nothing recorded")
    }

    /// As for a code (attacker review, session 10): a scope taken off the client after the user entered the
    /// code is not approved for it.
    @Test func aScopeTheClientLostIsNotApproved() throws {
        let (h, client, _, b) = try setUp()
        let started = try #require(start(h, client, nil).json)
        let id = try enter(b, try #require(started["user_code"]?.stringValue))
        try h.store.write {
            guard var record = try h.store.client(client) else { return }
            record.scope = ["openid"]
            try h.store.updateClient(record)
        }
        let accepted = b.json("POST", "/api/v1/authorization-requests/\(id)/accept", ["scope": ["openid", "profile"], "remember": false])
        #expect(accepted.status == 409 && accepted.json?["code"] == "client_changed", "\(accepted.bodyText)")
        let polled = poll(h, client, nil, try #require(started["device_code"]?.stringValue))
        #expect(polled.json?["error"] == "authorization_pending", "\(polled.bodyText)")
    }

    @Test func withoutOfflineAccessADevicesRefreshTokenLivesASessionFromItsRedemption() throws {
        let (h, client, _, b) = try setUp()
        try h.store.write {
            guard var record = try h.store.client(client) else { return }
            RefreshTokenPolicy.always.store(in: &record.attributes)
            try h.store.updateClient(record)
        }
        // The browser signed in almost a session's length ago.
        h.clock.advance(seconds: SessionService.lifetimeMillis / 1000 - 30)
        let started = try #require(start(h, client, nil, scope: "openid profile").json)
        let id = try enter(b, try #require(started["user_code"]?.stringValue))
        _ = b.json("POST", "/api/v1/authorization-requests/\(id)/accept", ["scope": ["openid", "profile"], "remember": false])
        let deviceCode = try #require(started["device_code"]?.stringValue)
        let tokens = try #require(poll(h, client, nil, deviceCode).json)
        let refresh = try #require(tokens["refresh_token"]?.stringValue)
        h.clock.advance(seconds: 3600)
        func rotate(_ token: String) -> Response {
            h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", token), ("client_id", client)])
        }
        let refreshed = rotate(refresh)
        #expect(refreshed.status == 200, "\(refreshed.bodyText)")
        // Every rotation keeps the redemption's bound (review of time handling, session 32: a rotation fell back to
        // the browser's sign-in, answering 200 with a refresh token already expired, and the grant was lost).
        h.clock.advance(seconds: SessionService.lifetimeMillis / 1000 - 3600 - 60)
        let again = rotate(try #require(refreshed.json?["refresh_token"]?.stringValue))
        #expect(again.status == 200, "\(again.bodyText)")
        let last = try #require(again.json?["refresh_token"]?.stringValue)
        let introspected = h.form("/oauth2/introspect", [("token", last)], basic: (h.primary.clientID, h.primary.clientSecret))
        #expect(introspected.json?["active"] == true, "\(introspected.bodyText)")
        h.clock.advance(seconds: 61)
        #expect(rotate(last).json?["error"] == "invalid_grant", "the redemption's session has ended")
    }

    /// A rotation that could only issue a token already expired is refused,
    /// the token left as it was: here a grant with offline_access whose
    /// client no longer holds that scope, so the grant is bound by the
    /// sign-in it came from, which ended (it answered 200 with a dead token).
    @Test func aRotationPastTheGrantsSessionIsRefusedNotAnsweredWithADeadToken() throws {
        let (h, client, _, b) = try setUp()
        h.clock.advance(seconds: SessionService.lifetimeMillis / 1000 - 30)
        let refresh = try redeemed(h, client, b).refresh
        try h.store.write {
            guard var record = try h.store.client(client) else { return }
            record.scope.removeAll { $0 == "offline_access" }
            try h.store.updateClient(record)
        }
        h.clock.advance(seconds: 60)
        let refused = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)])
        #expect(refused.status == 400 && refused.json?["error"] == "invalid_grant", "\(refused.bodyText)")
        #expect(h.form("/oauth2/introspect", [("token", refresh)], basic: (h.primary.clientID, h.primary.clientSecret)).json?["active"] == true, "not rotated")
    }

    @Test func registrationAcceptsADeviceClientWithoutRedirectURIsButNotForFAPI() throws {
        let h = try Harness()
        let token = try h.token()
        let created = h.json("POST", "/api/v1/clients", token: token, body: [
            "client_name": "TV app", "grant_types": [.string(DeviceAuthorizationTests.grant), "refresh_token"], "token_endpoint_auth_method": "none",
            "scope": "openid offline_access",
        ])
        #expect(created.status == 201, "\(created.bodyText)")
        let discovery = try #require(h.call("GET", "/.well-known/openid-configuration").json)
        #expect(discovery["device_authorization_endpoint"]?.stringValue == Harness.issuer + "/oauth2/device_authorization")
        #expect(discovery["grant_types_supported"]?.arrayValue?.contains(.string(DeviceAuthorizationTests.grant)) == true)
        let spec = ClientSpec(name: "FAPI TV", redirectURIs: [], grantTypes: [DeviceAuthorizationTests.grant], authMethod: "private_key_jwt",
                              fapi2: true)
        #expect(spec.problems().contains { $0.field == "grant_types" })
    }

    /// RFC 9449 with RFC 8628 (review, session 25): a device code redeemed with a DPoP proof is bound to that key
    /// for its replay too. Presented again without a proof of the key (the device code alone, from a device's log),
    /// it ends nothing; with one, what it issued is revoked as for any code presented again.
    @Test func aDeviceCodeRedeemedWithAKeyIsReplayedToEffectOnlyWithThatKey() throws {
        let (h, client, _, b) = try setUp()
        let started = try #require(start(h, client, nil).json)
        let deviceCode = try #require(started["device_code"]?.stringValue)
        let id = try enter(b, try #require(started["user_code"]?.stringValue))
        #expect(b.json("POST", "/api/v1/authorization-requests/\(id)/accept", ["scope": ["openid", "offline_access"], "remember": false]).status == 200)
        h.clock.advance(seconds: 5)
        let key = try SigningKey.generate(.es256), stranger = try SigningKey.generate(.es256)
        func redeem(_ signer: SigningKey?) throws -> Response {
            let proof = try signer.map { try DPoPTestProof.make($0, claims: ["htm": "POST", "htu": .string(Harness.issuer + "/oauth2/token"),
                                                                               "iat": .int(h.clock.now / 1000)]) }
            return h.form("/oauth2/token", [("grant_type", DeviceAuthorizationTests.grant), ("device_code", deviceCode), ("client_id", client)],
                          headers: proof.map { [("DPoP", $0)] } ?? [])
        }
        let tokens = try redeem(key)
        #expect(tokens.status == 200 && tokens.json?["token_type"] == "DPoP", "\(tokens.bodyText)")
        let refresh = try #require(tokens.json?["refresh_token"]?.stringValue)
        func active() -> Bool {
            h.form("/oauth2/introspect", [("token", refresh)], basic: (h.primary.clientID, h.primary.clientSecret)).json?["active"] == true
        }
        for signer in [nil, stranger] {
            let replay = try redeem(signer)
            #expect(replay.status == 400 && replay.json?["error"] == "invalid_dpop_proof", "\(replay.bodyText)")
            #expect(active(), "a replay without the key revoked the grant")
        }
        let replay = try redeem(key)
        #expect(replay.status == 400 && replay.json?["error"] == "invalid_grant", "\(replay.bodyText)")
        #expect(!active())
    }
}

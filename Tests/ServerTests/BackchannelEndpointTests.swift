import Common
import HTTPCore
import JOSE
import OAuth
import TestSupport
import Testing

/// Back-Channel Logout and the claims parameter at the HTTP surfaces: the
/// client metadata on the native API and on registration, discovery, and a
/// browser's logout queueing the token.
@Suite struct BackchannelEndpointTests {
    @Test func theNativeAPIAcceptsReturnsAndValidatesTheMetadata() throws {
        let h = try Harness()
        let token = try h.token()
        let body: JSON = ["client_name": "RP", "redirect_uris": ["https://rp.example/cb"], "backchannel_logout_uri": "https://rp.example/bcl",
                          "backchannel_logout_session_required": true]
        let created = h.json("POST", "/api/v1/clients", token: token, body: body)
        #expect(created.status == 201, "\(created.bodyText)")
        let id = try #require(created.json?["client_id"]?.stringValue)
        let read = try #require(h.json("GET", "/api/v1/clients/\(id)", token: token).json)
        #expect(read["backchannel_logout_uri"] == "https://rp.example/bcl" && read["backchannel_logout_session_required"] == true)
        let patched = h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: ["backchannel_logout_uri": nil, "backchannel_logout_session_required": false],
                             contentType: "application/merge-patch+json")
        #expect(patched.status == 200 && patched.json?["backchannel_logout_uri"] == nil, "unset: left out, \(patched.bodyText)")
        for (bad, field) in [(["backchannel_logout_uri": "http://rp.example/bcl"], "backchannel_logout_uri"),
                             (["backchannel_logout_uri": "https://rp.example/bcl#f"], "backchannel_logout_uri"),
                             (["backchannel_logout_uri": 7], "backchannel_logout_uri"),
                             (["backchannel_logout_session_required": true], "backchannel_logout_session_required")] as [(JSON, String)] {
            var b = body.objectValue!.filter { !$0.0.hasPrefix("backchannel") }
            b += bad.objectValue!
            let r = h.json("POST", "/api/v1/clients", token: token, body: .object(b))
            #expect(r.status == 400 && r.json?["errors"]?.arrayValue?.first?["field"] == .string(field), "\(bad.text): \(r.bodyText)")
        }
    }

    @Test func registrationTakesTheMetadataAndKeepsAnonymousRegistrantsOffInternalAddresses() throws {
        let h = try Harness()
        let withToken = h.json("POST", "/oauth2/register", token: try h.token(),
                               body: ["redirect_uris": ["https://rp.example/cb"], "backchannel_logout_uri": "http://127.0.0.1:9/bcl",
                                      "backchannel_logout_session_required": true])
        #expect(withToken.status == 201 && withToken.json?["backchannel_logout_uri"] == "http://127.0.0.1:9/bcl", "\(withToken.bodyText)")
        #expect(withToken.json?["backchannel_logout_session_required"] == true)
        // Its registration access token may move it as the initial access token could place it (review, session 18:
        // a replacement held it to the anonymous rule).
        let registered = try #require(withToken.json)
        let registeredID = try #require(registered["client_id"]?.stringValue)
        let replaced = h.json("PUT", "/oauth2/register/\(registeredID)", token: try #require(registered["registration_access_token"]?.stringValue),
                              body: ["client_id": .string(registeredID), "redirect_uris": ["https://rp.example/cb"],
                                     "backchannel_logout_uri": "http://127.0.0.1:9/other"])
        #expect(replaced.status == 200 && replaced.json?["backchannel_logout_uri"] == "http://127.0.0.1:9/other", "\(replaced.bodyText)")
        try h.store.write { try h.store.setMeta(ClientRegistration.openOrganizationMeta, h.primary.organizationID) }
        // Attacker review, session 10: IPv4 in the other spellings a resolver takes, and localhost names.
        for uri in ["http://127.0.0.1:9/bcl", "https://localhost/bcl", "https://10.0.0.5/bcl", "https://[::1]/bcl",
                    "https://0x7f.0.0.1:9/bcl", "https://0x7f000001/bcl", "https://2130706433/bcl", "https://127.1/bcl", "https://0177.0.0.1/bcl",
                    "https://foo.localhost/bcl", "https://LOCALHOST./bcl", "https://rp.example.0x0a/bcl", "https://vm/bcl", "https://ip6-localhost/bcl"] {
            let r = h.json("POST", "/oauth2/register", token: nil, body: ["redirect_uris": ["https://rp.example/cb"], "backchannel_logout_uri": .string(uri)])
            #expect(r.status == 400 && r.json?["error"] == "invalid_client_metadata", "\(uri): \(r.bodyText)")
        }
        for name in ["https://x0a.example/bcl", "https://1password.example/bcl"] {
            let r = h.json("POST", "/oauth2/register", token: nil, body: ["redirect_uris": ["https://rp.example/cb"], "backchannel_logout_uri": .string(name)])
            #expect(r.status == 201, "\(name): \(r.bodyText)")
        }
        let open = h.json("POST", "/oauth2/register", token: nil, body: ["redirect_uris": ["https://rp.example/cb"], "backchannel_logout_uri": "https://rp.example/bcl"])
        #expect(open.status == 201, "\(open.bodyText)")
        // The registered client cannot move it inside later either.
        let id = try #require(open.json?["client_id"]?.stringValue), rat = try #require(open.json?["registration_access_token"]?.stringValue)
        let moved = h.json("PUT", "/oauth2/register/\(id)", token: rat, body: ["client_id": .string(id), "redirect_uris": ["https://rp.example/cb"],
                                                                              "backchannel_logout_uri": "http://127.0.0.1:8080/admin"])
        #expect(moved.status == 400 && moved.json?["error"] == "invalid_client_metadata")
    }

    @Test func discoveryNamesWhatIsSupported() throws {
        let h = try Harness()
        let d = try #require(h.call("GET", "/.well-known/openid-configuration").json)
        #expect(d["backchannel_logout_supported"] == true && d["backchannel_logout_session_supported"] == true)
        #expect(d["claims_parameter_supported"] == true && d["acr_values_supported"] == ["1"])
        #expect(d["claims_supported"]?.arrayValue?.contains("sid") == true && d["claims_supported"]?.arrayValue?.contains("acr") == true)
    }

    @Test func aBrowsersLogoutQueuesTheTokenAndTheIDTokenCarriedTheSession() throws {
        let h = try Harness()
        _ = try h.user()
        let token = try h.token()
        let body: JSON = ["client_name": "RP", "redirect_uris": [.string(Harness.redirect)], "grant_types": ["authorization_code"],
                          "scope": "openid profile email", "backchannel_logout_uri": "https://rp.example/bcl"]
        let client = try #require(h.json("POST", "/api/v1/clients", token: token, body: body).json)
        let id = try #require(client["client_id"]?.stringValue), secret = try #require(client["client_secret"]?.stringValue)
        let b = Browser(h), pkce = PKCE(), flows = UserFlowTests()
        // The claims parameter: email asked for one by one joins the consent; acr goes into the ID token.
        let code = try flows.code(h, b, client: id, pkce: pkce, scope: "openid",
                                  extra: [("claims", #"{"id_token": {"acr": null}, "userinfo": {"email": {"essential": true}}}"#)])
        let tokens = try #require(flows.exchange(h, client: id, secret: secret, code: code, verifier: pkce.verifier).json)
        #expect(tokens["scope"] == "openid email")
        let idToken = try #require(tokens["id_token"]?.stringValue)
        let claims = try #require(JWS.parse(idToken)?.payload)
        #expect(claims["acr"] == "1")
        let sid = try #require(claims["sid"]?.stringValue)
        let access = try #require(tokens["access_token"]?.stringValue)
        #expect(h.call("GET", "/oauth2/userinfo", headers: [("Authorization", "Bearer \(access)")]).json?["email"] == "alice@example.com")
        // Signing out of Latchkey queues one logout token for the client, with the ID token's sid.
        #expect(b.send("DELETE", "/api/v1/session").status == 204)
        let queued = try h.store.read { try h.store.dueLogouts(now: h.clock.now, limit: 10, perClient: .max, perShare: .max) }
        #expect(queued.map(\.clientID) == [id] && queued.first?.sid == sid)
    }

    /// Attacker review, session 17: signing in again in the same browser (another user at a shared computer, or the
    /// same one) left the session the cookie named alive, cookie-less: its clients heard nothing at the next logout.
    /// A new sign-in ends it as a logout does.
    @Test func aNewSignInEndsTheSessionTheBrowserHad() throws {
        let h = try Harness()
        _ = try h.user()
        _ = try h.user("bob")
        let token = try h.token()
        let client = try #require(h.json("POST", "/api/v1/clients", token: token, body: [
            "client_name": "RP", "redirect_uris": [.string(Harness.redirect)], "grant_types": ["authorization_code"], "scope": "openid",
            "backchannel_logout_uri": "https://rp.example/bcl"]).json)
        let id = try #require(client["client_id"]?.stringValue), secret = try #require(client["client_secret"]?.stringValue)
        let b = Browser(h), pkce = PKCE(), flows = UserFlowTests()
        let code = try flows.code(h, b, client: id, pkce: pkce, scope: "openid")
        let idToken = try #require(flows.exchange(h, client: id, secret: secret, code: code, verifier: pkce.verifier).json?["id_token"]?.stringValue)
        let sid = try #require(JWS.parse(idToken)?.payload["sid"]?.stringValue)
        let alicesCookie = try #require(b.cookies["__Host-lk_session"])
        // A wrong password changes nothing.
        #expect(b.login("bob", "wrong").status == 401)
        #expect(try h.store.read { try h.store.dueLogouts(now: h.clock.now, limit: 10, perClient: .max, perShare: .max) }.isEmpty)
        #expect(b.login("bob").status == 204, "bob signs in on the same browser")
        let queued = try h.store.read { try h.store.dueLogouts(now: h.clock.now, limit: 10, perClient: .max, perShare: .max) }
        #expect(queued.map(\.clientID) == [id] && queued.first?.sid == sid)
        // Alice's old cookie names no session any more.
        let old = Browser(h)
        old.cookies["__Host-lk_session"] = alicesCookie
        #expect(old.send("GET", "/api/v1/session").status == 401)
        #expect(b.send("GET", "/api/v1/session").json?["username"] == "bob")
    }
}

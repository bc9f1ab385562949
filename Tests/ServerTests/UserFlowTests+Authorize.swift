import Common
import Cryptography
import HTTPCore
import JOSE
import OAuth
import TestSupport
import Testing

/// The authorization endpoint's redirect and error rules, and what the user sees.
extension UserFlowTests {
    @Test func loopbackRedirectsMatchAnyPort() throws {
        let h = try Harness()
        let (client, _) = try h.app(redirectURIs: ["http://127.0.0.1/callback"])
        let pkce = PKCE()
        let r = Browser(h).authorize([("response_type", "code"), ("client_id", client), ("redirect_uri", "http://127.0.0.1:53124/callback"),
                                      ("scope", "openid"), ("code_challenge", pkce.challenge), ("code_challenge_method", "S256")])
        #expect(r.status == 303)
        #expect(r.headers[.location]?.hasPrefix("/login/") == true)
        let wrongPath = Browser(h).authorize([("response_type", "code"), ("client_id", client), ("redirect_uri", "http://127.0.0.1:53124/other"),
                                              ("scope", "openid"), ("code_challenge", pkce.challenge), ("code_challenge_method", "S256")])
        #expect(wrongPath.status == 400)
    }

    /// OIDC Core §3.1.2.1: a usable `login_hint` goes to the sign-in page to prefill the username; one unfit to show
    /// (control, bidirectional-override or invisible characters, more than 256 bytes, blank) is dropped, the request kept.
    @Test(arguments: [
        ("alice", "alice"), ("buffy@example.com", "buffy@example.com"), ("Zoë Q", "Zoë Q"), (String(repeating: "a", count: 256), String(repeating: "a", count: 256)),
        ("a&then=device#x", "a&then=device#x"), (String(repeating: "a", count: 257), nil), ("ali\u{202E}ce", nil), ("al\u{7}ice", nil), ("ali\u{200B}ce", nil), ("   ", nil), ("\u{2800}", nil), ("\u{00A0}", nil),
    ] as [(String, String?)])
    func loginHintPrefillsTheSignInPage(_ hint: String, _ shown: String?) throws {
        let h = try Harness()
        let (client, _) = try h.app()
        let r = Browser(h).authorize(authorizeParams(client, PKCE(), extra: [("login_hint", hint)]))
        #expect(r.status == 303)
        let location = try #require(r.headers[.location])
        #expect(location.hasPrefix("/login/?request="))
        #expect(queryItems(location)["login_hint"] == shown)
        #expect(queryItems(location)["request"] != nil && queryItems(location)["then"] == nil, "the hint is one parameter's value")
    }

    @Test func unknownClientsGetAnErrorPage() throws {
        let h = try Harness()
        let r = Browser(h).authorize([("response_type", "code"), ("client_id", "nope"), ("redirect_uri", Harness.redirect), ("scope", "openid")])
        #expect(r.status == 400 && r.headers[.location] == nil)
        #expect(r.bodyText.contains("unknown"))
    }

    @Test(arguments: [
        ([("response_type", "token")], "unsupported_response_type"),
        ([("code_challenge_method", "plain")], "invalid_request"),
        ([("scope", "openid clients:write")], "invalid_scope"),
        ([("scope", "openid nonsense")], "invalid_scope"),
        ([("prompt", "none login")], "invalid_request"),
        ([("max_age", "-1")], "invalid_request"),
    ] as [([(String, String)], String)])
    func laterErrorsRedirectWithStateAndIssuer(_ overrides: [(String, String)], _ error: String) throws {
        let h = try Harness()
        let (client, _) = try h.app()
        let pkce = PKCE()
        var params = Dictionary(authorizeParams(client, pkce), uniquingKeysWith: { a, _ in a })
        for (k, v) in overrides { params[k] = v }
        let r = Browser(h).authorize(params.map { ($0.key, $0.value) })
        #expect(r.status == 303)
        let location = try #require(r.headers[.location])
        #expect(location.hasPrefix(Harness.redirect + "?"))
        let items = queryItems(location)
        #expect(items["error"] == error)
        #expect(items["state"] == "st-1")
        #expect(items["iss"] == Harness.issuer)
    }

    @Test func publicClientsMustUsePKCE() throws {
        let h = try Harness()
        let (client, _) = try h.app()
        let r = Browser(h).authorize([("response_type", "code"), ("client_id", client), ("redirect_uri", Harness.redirect), ("scope", "openid"), ("state", "s")])
        #expect(queryItems(r.headers[.location] ?? "")["error"] == "invalid_request")
    }

    @Test func promptNoneAnswersWithoutAPage() throws {
        let (h, _, client, pkce, b) = try started()
        let noSession = b.authorize(authorizeParams(client, pkce, extra: [("prompt", "none")]))
        #expect(queryItems(noSession.headers[.location] ?? "")["error"] == "login_required")
        b.login()
        let noConsent = b.authorize(authorizeParams(client, pkce, extra: [("prompt", "none")]))
        #expect(queryItems(noConsent.headers[.location] ?? "")["error"] == "consent_required")
        _ = try code(h, b, client: client, pkce: pkce)
        let silent = b.authorize(authorizeParams(client, pkce, extra: [("prompt", "none")]))
        #expect(queryItems(silent.headers[.location] ?? "")["code"] != nil)
        // prompt=consent asks again even though consent is remembered.
        let again = b.authorize(authorizeParams(client, pkce, extra: [("prompt", "consent")]))
        #expect(again.headers[.location]?.hasPrefix("/consent/") == true)
        // prompt=login asks to sign in again.
        h.clock.advance(seconds: 1)
        let relogin = b.authorize(authorizeParams(client, pkce, extra: [("prompt", "login")]))
        #expect(relogin.headers[.location]?.hasPrefix("/login/") == true)
    }

    @Test func rememberFalseAsksAgainNextTime() throws {
        let (h, _, client, pkce, b) = try started()
        _ = try code(h, b, client: client, pkce: pkce, remember: false)
        let next = b.authorize(authorizeParams(client, pkce))
        #expect(next.headers[.location]?.hasPrefix("/consent/") == true)
    }

    /// SPEC audit, session 9: a silent answer to a request for fewer scopes forgot the others (SPEC 5.1: straight back
    /// with a code when the user already granted every requested scope), and the account page lost them too.
    @Test func aSilentAnswerToFewerScopesForgetsNothing() throws {
        let (h, user, client, pkce, b) = try started()
        _ = try code(h, b, client: client, pkce: pkce)
        let narrower = b.authorize(authorizeParams(client, pkce, scope: "openid profile"))
        #expect(queryItems(narrower.headers[.location] ?? "")["code"] != nil)
        let again = b.authorize(authorizeParams(client, pkce))
        #expect(queryItems(again.headers[.location] ?? "")["code"] != nil, "\(again.headers[.location] ?? "")")
        let connection = try h.store.read { try h.store.connection(userID: user, clientID: client) }
        #expect(Set(connection?.rememberedScope ?? []) == ["openid", "profile", "email", "offline_access"])
        #expect(Set(connection?.grantedScope ?? []) == ["openid", "profile", "email", "offline_access"])
        // Answered on the consent screen, what the user approves there is what is remembered.
        _ = try code(h, b, client: client, pkce: pkce, grant: ["openid"], extra: [("prompt", "consent")])
        #expect(try h.store.read { try h.store.connection(userID: user, clientID: client) }?.rememberedScope == ["openid"])
    }

    @Test func consentRules() throws {
        let (h, _, client, pkce, b) = try started()
        b.login()
        let location = try #require(b.authorize(authorizeParams(client, pkce, scope: "openid profile")).headers[.location])
        let request = try #require(queryItems(location)["request"])
        let details = try #require(b.send("GET", "/api/v1/authorization-requests/\(request)").json)
        #expect(details["client"]?["client_name"] == "Photo <b>Book</b>")
        #expect(details["redirect_uri"] == .string(Harness.redirect))
        #expect(details["scopes"]?.arrayValue?.first?["description"]?.stringValue?.isEmpty == false)
        // More than asked: refused.
        #expect(b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid", "email"]]).status == 400)
        // Without the CSRF header: refused, no code.
        let noCSRF = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid"]], csrf: false)
        #expect(noCSRF.status == 403)
        #expect(noCSRF.json?["redirect_to"] == nil)
        // Fewer is fine; the code carries only what was granted.
        let ok = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid"], "remember": false])
        let redirectTo = try #require(ok.json?["redirect_to"]?.stringValue)
        let code = try #require(queryItems(redirectTo)["code"])
        #expect(exchange(h, client: client, code: code, verifier: pkce.verifier).json?["scope"] == "openid")
        // Answered once (a conflict for the browser that started it: aSecondAnswerIsAConflictWhicheverCameFirst).
        #expect(b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid"]]).status == 409)
        #expect(b.json("POST", "/api/v1/authorization-requests/\(request)/reject", [:]).status == 409)
        // Reject sends access_denied.
        let l2 = try #require(b.authorize(authorizeParams(client, pkce)).headers[.location])
        let r2 = try #require(queryItems(l2)["request"])
        let rejected = b.json("POST", "/api/v1/authorization-requests/\(r2)/reject", [:])
        let target = try #require(rejected.json?["redirect_to"]?.stringValue)
        #expect(queryItems(target)["error"] == "access_denied")
        #expect(queryItems(target)["state"] == "st-1")
        // Requests expire after 10 minutes.
        let l3 = try #require(b.authorize(authorizeParams(client, pkce)).headers[.location])
        h.clock.advance(seconds: 601)
        let r3 = try #require(queryItems(l3)["request"])
        #expect(b.send("GET", "/api/v1/authorization-requests/\(r3)").status == 404)
    }

    @Test func loginFailuresLookTheSame() throws {
        let h = try Harness()
        _ = try h.user()
        let b = Browser(h)
        let wrongPassword = b.login("alice", "wrong password")
        let unknownUser = b.login("mallory", "wrong password")
        #expect(wrongPassword.status == 401 && unknownUser.status == 401)
        #expect(wrongPassword.json?["detail"] == unknownUser.json?["detail"])
        #expect(wrongPassword.json?["code"] == unknownUser.json?["code"])
        #expect(b.cookies.isEmpty)
        #expect(b.send("GET", "/api/v1/session").status == 401)
        let ok = b.login()
        #expect(ok.status == 204)
        let setCookies = ok.headers[values: .setCookie]
        #expect(setCookies.contains { $0.hasPrefix("__Host-lk_session=") && $0.contains("HttpOnly") && $0.contains("SameSite=Lax") && $0.contains("Secure") })
        #expect(setCookies.contains { $0.hasPrefix("__Host-lk_csrf=") && !$0.contains("HttpOnly") })
        // RFC 6265bis §4.1.3.2: a browser takes a __Host- cookie only when Secure, with Path=/ and no Domain.
        #expect(setCookies.allSatisfy { $0.contains("; Path=/;") && $0.contains("; Secure") && !$0.lowercased().contains("domain=") })
        // SPEC 5.1's names are set too, for clients that read them (lk_csrf) ...
        #expect(setCookies.contains { $0.hasPrefix("lk_session=") && $0.contains("HttpOnly") && $0.contains("Secure") })
        #expect(setCookies.contains { $0.hasPrefix("lk_csrf=") && !$0.contains("HttpOnly") && $0.contains("Secure") })
        // ... but over https only the __Host- ones are read (review, session 25). A plain-named copy (what a sibling
        // subdomain, or a network attacker on a first plain-http visit, can plant) is no session, however valid
        // its value: a planted session signed the victim in as the attacker.
        let token = try #require(b.cookies["__Host-lk_session"])
        #expect(h.call("GET", "/api/v1/session", headers: [("Cookie", "lk_session=\(token)")]).status == 401)
        #expect(h.call("GET", "/api/v1/session", headers: [("Cookie", "__Host-lk_session=\(token)")]).status == 200)
        #expect(b.send("GET", "/api/v1/session").json?["username"] == "alice")
        #expect(b.send("DELETE", "/api/v1/session", csrf: false).status == 403)
        #expect(b.send("DELETE", "/api/v1/session").status == 204)
        #expect(b.send("GET", "/api/v1/session").status == 401)
    }

    @Test func connectionsListAndRevoke() throws {
        let (h, _, client, pkce, b) = try started()
        let tokens = exchange(h, client: client, code: try code(h, b, client: client, pkce: pkce), verifier: pkce.verifier).json!
        let access = try #require(tokens["access_token"]?.stringValue)
        let list = b.send("GET", "/api/v1/me/connections")
        let connections = try #require(list.json?["connections"]?.arrayValue)
        #expect(connections.count == 1)
        #expect(connections[0]["client_id"] == .string(client))
        #expect(connections[0]["client_name"] == "Photo <b>Book</b>")
        #expect(connections[0]["scope"] == "openid profile email offline_access")
        // A user's token with connections:read works too... but this one lacks it.
        #expect(h.call("GET", "/api/v1/me/connections", headers: [("Authorization", "Bearer \(access)")]).status == 403)
        #expect(b.send("GET", "/api/v1/me/connections/\(client)").json?["client_id"] == .string(client))
        #expect(b.send("GET", "/api/v1/me/connections/unknown-app").status == 404)
        #expect(b.send("DELETE", "/api/v1/me/connections/\(client)", csrf: false).status == 403)
        #expect(b.send("DELETE", "/api/v1/me/connections/\(client)").status == 204)
        #expect(h.form("/oauth2/introspect", [("token", access)], basic: (h.primary.clientID, h.primary.clientSecret)).json == ["active": false])
        #expect(h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"]!.stringValue!), ("client_id", client)]).status == 400)
        // The consent is forgotten: the next authorization asks again.
        #expect(b.authorize(authorizeParams(client, pkce)).headers[.location]?.hasPrefix("/consent/") == true)
        #expect(b.send("GET", "/api/v1/me/connections").json?["connections"] == [])
    }

    /// SPEC 2's lists: `limit` 1..250 (50 by default), `offset`, the total in `X-Total-Count`.
    @Test func connectionsArePagedAsEveryList() throws {
        let h = try Harness()
        let alice = try h.user()
        let apps = try (0..<3).map { _ in try h.app().0 }
        try h.store.write {
            for (i, app) in apps.enumerated() {
                try h.store.upsertConnection(UserConnection(userID: alice, clientID: app, rememberedScope: [], grantedScope: ["openid"],
                                                            authTime: 0, accessTime: 0, createdAt: h.fixture.clock.now + Int64(i)))
            }
        }
        let b = Browser(h)
        #expect(b.login().status == 204)
        func page(_ query: String) -> (ids: [String], total: String?) {
            let r = b.send("GET", "/api/v1/me/connections", query: query)
            return ((r.json?["connections"]?.arrayValue ?? []).compactMap { $0["client_id"]?.stringValue }, r.headers[.xTotalCount])
        }
        #expect(page("") == (apps, "3"))
        #expect(page("limit=2") == (Array(apps.prefix(2)), "3"))
        #expect(page("limit=2&offset=2") == ([apps[2]], "3"))
        #expect(page("offset=3") == ([], "3"))
        for bad in ["limit=0", "limit=251", "limit=x", "offset=-1"] {
            #expect(b.send("GET", "/api/v1/me/connections", query: bad).status == 400, "\(bad)")
        }
    }

    @Test func userTokensWithConnectionScopesManageConnections() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let pkce = PKCE()
        let tokens = exchange(h, client: client, code: try code(h, Browser(h), client: client, pkce: pkce,
                                                                 scope: "openid connections:read connections:write"), verifier: pkce.verifier).json!
        let access = try #require(tokens["access_token"]?.stringValue)
        let list = h.call("GET", "/api/v1/me/connections", headers: [("Authorization", "Bearer \(access)")])
        #expect(list.status == 200)
        #expect(list.json?["connections"]?.arrayValue?.count == 1)
        #expect(h.call("DELETE", "/api/v1/me/connections/\(client)", headers: [("Authorization", "Bearer \(access)")]).status == 204)
        #expect(h.call("GET", "/api/v1/me/connections", headers: [("Authorization", "Bearer \(access)")]).status == 401)
    }

    @Test func refreshTokensIntrospectAndRevokeTheirFamily() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: false)
        let pkce = PKCE()
        let tokens = exchange(h, client: client, secret: secret, code: try code(h, Browser(h), client: client, pkce: pkce), verifier: pkce.verifier).json!
        let refresh = try #require(tokens["refresh_token"]?.stringValue)
        let access = try #require(tokens["access_token"]?.stringValue)
        let info = h.form("/oauth2/introspect", [("token", refresh)], basic: (client, secret!)).json
        #expect(info?["active"] == true)
        #expect(info?["token_type"] == "refresh_token")
        #expect(h.form("/oauth2/revoke", [("token", refresh), ("token_type_hint", "refresh_token")], basic: (client, secret!)).status == 200)
        #expect(h.form("/oauth2/introspect", [("token", refresh)], basic: (client, secret!)).json == ["active": false])
        #expect(h.form("/oauth2/introspect", [("token", access)], basic: (client, secret!)).json == ["active": false])
    }

    /// A public client revokes its own tokens with its client_id alone (RFC 7009 §2.1), and discovery says so
    /// (attacker review, session 19: "none" was missing from revocation_endpoint_auth_methods_supported).
    @Test func aPublicClientRevokesWithItsIDAndDiscoveryNamesIt() throws {
        let h = try Harness()
        let (client, tokens) = try publicAppWithTokens(h)
        let refresh = try #require(tokens["refresh_token"]?.stringValue)
        #expect(h.form("/oauth2/revoke", [("token", refresh), ("client_id", client)]).status == 200)
        #expect(h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)]).status == 400)
        let discovery = try #require(h.call("GET", "/.well-known/openid-configuration").json)
        #expect(discovery["revocation_endpoint_auth_methods_supported"]?.arrayValue?.contains("none") == true)
        #expect(discovery["introspection_endpoint_auth_methods_supported"]?.arrayValue?.contains("none") == false)
    }
}

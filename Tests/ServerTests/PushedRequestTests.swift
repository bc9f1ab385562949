import Common
import HTTPCore
import OAuth
import TestSupport
import Testing

/// Pushed authorization requests (RFC 9126) at the HTTP surface, each
/// test named after the section it enforces.
@Suite struct PushedRequestTests {
    let flow = UserFlowTests()

    func push(_ h: Harness, _ client: String, _ secret: String?, _ items: [(String, String)]) -> Response {
        var all = items
        if secret == nil { all.append(("client_id", client)) }
        return h.form("/oauth2/par", all, basic: secret.map { (client, $0) })
    }

    func pushedParams(_ pkce: PKCE, scope: String = "openid profile", state: String = "st-par") -> [(String, String)] {
        [("response_type", "code"), ("redirect_uri", Harness.redirect), ("scope", scope), ("state", state), ("nonce", "n-par"),
         ("code_challenge", pkce.challenge), ("code_challenge_method", "S256")]
    }

    /// The authorize redirect after sign-in and consent, for a browser already asked to go to `first`.
    func finish(_ b: Browser, _ first: Response) throws -> [String: String] {
        var location = try #require(first.headers[.location])
        if location.hasPrefix("/login/") {
            let request = try #require(queryItems(location)["request"])
            b.login()
            location = try #require(b.send("GET", "/oauth2/authorize/continue", query: "request=\(PercentEncoding.encode(request))").headers[.location])
        }
        if location.hasPrefix("/consent/") {
            let request = try #require(queryItems(location)["request"])
            let details = try #require(b.send("GET", "/api/v1/authorization-requests/\(request)").json)
            let scopes = (details["scopes"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
            let accepted = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": JSON(scopes), "remember": true])
            location = try #require(accepted.json?["redirect_to"]?.stringValue)
        }
        return queryItems(location)
    }

    @Test func rfc9126Section2And4APushedRequestIsUsedOnceByItsClient() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: false)
        let pkce = PKCE()
        let pushed = push(h, client, secret, pushedParams(pkce))
        #expect(pushed.status == 201, "\(pushed.bodyText)")
        #expect(pushed.headers[.cacheControl] == "no-store")
        let uri = try #require(pushed.json?["request_uri"]?.stringValue)
        #expect(uri.hasPrefix("urn:ietf:params:oauth:request_uri:") && pushed.json?["expires_in"] == 60)
        // §4: client_id and request_uri; anything else sent along is ignored (here a scope the push did not ask for).
        let b = Browser(h)
        let items = try finish(b, b.authorize([("client_id", client), ("request_uri", uri), ("scope", "openid email")]))
        #expect(items["state"] == "st-par" && items["code"] != nil)
        let code = try #require(items["code"])
        let tokens = try #require(flow.exchange(h, client: client, secret: secret, code: code, verifier: pkce.verifier).json)
        #expect(tokens["scope"] == "openid profile")
        // Used once: the same request_uri again is a page, never a redirect.
        let again = b.authorize([("client_id", client), ("request_uri", uri)])
        #expect(again.status == 400 && again.headers[.location] == nil)
    }

    /// SPEC 4.5: a request pushed before its client was disabled is gone after it is enabled again.
    @Test func disablingTheClientWithdrawsItsPushedRequests() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: false)
        let uri = try #require(push(h, client, secret, pushedParams(PKCE())).json?["request_uri"]?.stringValue)
        let token = try h.token()
        #expect(h.json("PATCH", "/api/v1/clients/\(client)", token: token, body: ["enabled": false]).status == 200)
        #expect(h.json("PATCH", "/api/v1/clients/\(client)", token: token, body: ["enabled": true]).status == 200)
        let b = Browser(h)
        b.login()
        let late = b.authorize([("client_id", client), ("request_uri", uri)])
        #expect(late.status == 400 && late.headers[.location] == nil, "\(late.status) \(late.headers)")
    }

    /// A pushed `login_hint` reaches the sign-in page as a sent one does (OIDC Core §3.1.2.1); one sent beside the
    /// `request_uri` is ignored with every other parameter there (RFC 9126 §4).
    @Test func rfc9126Section4APushedLoginHintPrefillsTheSignInPage() throws {
        let h = try Harness()
        let (client, secret) = try h.app(public: false)
        let uri = try #require(push(h, client, secret, pushedParams(PKCE()) + [("login_hint", "alice")]).json?["request_uri"]?.stringValue)
        let r = Browser(h).authorize([("client_id", client), ("request_uri", uri), ("login_hint", "mallory")])
        let location = try #require(r.headers[.location])
        #expect(location.hasPrefix("/login/") && queryItems(location)["login_hint"] == "alice")
    }

    @Test func rfc9126Section4ARequestURIExpiresAndBelongsToItsClient() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: false)
        let (other, _) = try h.app(public: false)
        let first = try #require(push(h, client, secret, pushedParams(PKCE())).json?["request_uri"]?.stringValue)
        #expect(Browser(h).authorize([("client_id", other), ("request_uri", first)]).status == 400, "another client's")
        let second = try #require(push(h, client, secret, pushedParams(PKCE())).json?["request_uri"]?.stringValue)
        h.clock.advance(seconds: 61)
        #expect(Browser(h).authorize([("client_id", client), ("request_uri", second)]).status == 400, "expired")
        #expect(Browser(h).authorize([("client_id", client), ("request_uri", AuthorizationService.requestURIPrefix + "guess")]).status == 400)
    }

    @Test func rfc9126Section2Point1And2Point3ThePushIsCheckedInFullAndAnsweredToTheClient() throws {
        let h = try Harness()
        let (client, secret) = try h.app(public: false)
        let (publicClient, _) = try h.app(public: true)
        let pkce = PKCE()
        for (name, items, error) in [
            ("unregistered redirect_uri", [("response_type", "code"), ("redirect_uri", "https://evil.example/cb"), ("scope", "openid")], "invalid_request"),
            ("no response_type", [("redirect_uri", Harness.redirect), ("scope", "openid")], "invalid_request"),
            ("a scope it may not ask for", [("response_type", "code"), ("redirect_uri", Harness.redirect), ("scope", "openid clients:write")], "invalid_scope"),
            ("a request_uri in a push", pushedParams(pkce) + [("request_uri", "urn:x")], "invalid_request"),
            ("plain PKCE", [("response_type", "code"), ("redirect_uri", Harness.redirect), ("scope", "openid"), ("code_challenge", pkce.challenge),
                            ("code_challenge_method", "plain")], "invalid_request"),
        ] as [(String, [(String, String)], String)] {
            let r = push(h, client, secret, items)
            #expect(r.status == 400 && r.json?["error"] == .string(error), "\(name): \(r.bodyText)")
        }
        #expect(push(h, client, "wrong", pushedParams(pkce)).status == 401)
        #expect(h.form("/oauth2/par", pushedParams(pkce)).status == 401, "no client at all")
        let mismatch = h.form("/oauth2/par", pushedParams(pkce) + [("client_id", publicClient)], basic: (client, secret!))
        #expect(mismatch.status == 400)
        // A public client pushes with its client_id alone, PKCE required as ever.
        #expect(push(h, publicClient, nil, pushedParams(pkce)).status == 201)
        let noPKCE = push(h, publicClient, nil, [("response_type", "code"), ("redirect_uri", Harness.redirect), ("scope", "openid")])
        #expect(noPKCE.status == 400 && noPKCE.json?["error"] == "invalid_request")
    }

    @Test func rfc9126Section6AClientThatMustPushCannotAuthorizeWithoutIt() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: false)
        try h.store.write {
            var c = try #require(try h.store.client(client))
            c.requirePushedRequests = true
            try h.store.updateClient(c)
        }
        let pkce = PKCE()
        let direct = Browser(h).authorize([("client_id", client)] + pushedParams(pkce))
        #expect(direct.status == 303)
        let items = queryItems(try #require(direct.headers[.location]))
        #expect(items["error"] == "invalid_request" && items["state"] == "st-par" && items["code"] == nil)
        let uri = try #require(push(h, client, secret, pushedParams(pkce)).json?["request_uri"]?.stringValue)
        let b = Browser(h)
        #expect(try finish(b, b.authorize([("client_id", client), ("request_uri", uri)]))["code"] != nil)
        // Nor through the app API's /auth/code, which issues codes without a push.
        let direct2 = b.json("POST", "/api/oauth/auth/code", ["client_id": .string(client), "scope": "openid"])
        #expect(direct2.status == 404, "\(direct2.bodyText)")
        let discovery = try #require(h.call("GET", "/.well-known/openid-configuration").json)
        #expect(discovery["pushed_authorization_request_endpoint"] == .string(Harness.issuer + "/oauth2/par"))
        #expect(discovery["require_pushed_authorization_requests"] == false)
    }

    /// RFC 9126 §6 (and FAPI 2.0, which implies it): a client marked to push its requests after one was made without
    /// a push gets no code for it, and a code already issued for one is refused at redemption; what was pushed before
    /// the change goes on to its code.
    @Test func rfc9126Section6ARequestMadeBeforeTheClientMustPushGetsNoCode() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: false)
        let pkce = PKCE()
        // A code issued, and a request waiting on the consent screen, both without a push; and a request pushed.
        let issued = try flow.code(h, Browser(h), client: client, pkce: pkce, remember: false)
        let b = Browser(h)
        #expect(b.login().status == 204)
        let waiting = b.authorize(flow.authorizeParams(client, pkce))
        let location = try #require(waiting.headers[.location])
        #expect(location.hasPrefix("/consent/"), "\(location)")
        let request = try #require(queryItems(location)["request"])
        let uri = try #require(push(h, client, secret, pushedParams(pkce)).json?["request_uri"]?.stringValue)
        let token = try h.token()
        let marked = h.json("PATCH", "/api/v1/clients/\(client)", token: token, body: ["require_pushed_authorization_requests": true])
        #expect(marked.status == 200, "\(marked.bodyText)")
        let accepted = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid"], "remember": true])
        #expect(accepted.status == 409 && accepted.json?["code"] == "client_changed", "\(accepted.status) \(accepted.bodyText)")
        let denied = b.json("POST", "/api/v1/authorization-requests/\(request)/reject", [:])
        #expect(denied.status == 409 && denied.json?["code"] == "client_changed", "\(denied.status) \(denied.bodyText)")
        let redeemed = flow.exchange(h, client: client, secret: secret, code: issued, verifier: pkce.verifier)
        #expect(redeemed.status == 400 && redeemed.json?["error"] == "invalid_grant", "\(redeemed.status) \(redeemed.bodyText)")
        // The request pushed before the change is one the client may make: it gets its code.
        let items = try finish(b, b.authorize([("client_id", client), ("request_uri", uri)]))
        let code = try #require(items["code"])
        #expect(flow.exchange(h, client: client, secret: secret, code: code, verifier: pkce.verifier).status == 200)
    }
}

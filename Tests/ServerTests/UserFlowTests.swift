import Common
import Cryptography
import HTTPCore
import JOSE
import OAuth
import TestSupport
import Testing

@Suite struct UserFlowTests {
    /// How most flow tests begin: a harness with a user, a public app on the
    /// default redirect URI, a PKCE pair and a browser not yet signed in.
    func started() throws -> (h: Harness, user: String, client: String, pkce: PKCE, b: Browser) {
        let h = try Harness()
        let user = try h.user()
        let (client, _) = try h.app()
        return (h, user, client, PKCE(), Browser(h))
    }

    func authorizeParams(_ client: String, _ pkce: PKCE, scope: String = "openid profile email offline_access", extra: [(String, String)] = []) -> [(String, String)] {
        [("response_type", "code"), ("client_id", client), ("redirect_uri", Harness.redirect), ("scope", scope), ("state", "st-1"),
         ("nonce", "n-1"), ("code_challenge", pkce.challenge), ("code_challenge_method", "S256")] + extra
    }

    /// Runs authorize → login → continue → consent accept; returns the code.
    func code(_ h: Harness, _ b: Browser, client: String, pkce: PKCE, scope: String = "openid profile email offline_access",
              grant: [String]? = nil, remember: Bool = true, extra: [(String, String)] = []) throws -> String {
        let first = b.authorize(authorizeParams(client, pkce, scope: scope, extra: extra))
        #expect(first.status == 303)
        var location = try #require(first.headers[.location])
        if location.hasPrefix("/login/") {
            let request = try #require(queryItems(location)["request"])
            #expect(b.login().status == 204)
            let next = b.send("GET", "/oauth2/authorize/continue", query: "request=\(PercentEncoding.encode(request))")
            location = try #require(next.headers[.location])
        }
        if location.hasPrefix("/consent/") {
            let request = try #require(queryItems(location)["request"])
            let details = b.send("GET", "/api/v1/authorization-requests/\(request)")
            #expect(details.status == 200)
            let granted = grant ?? (details.json?["scopes"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
            let accepted = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": JSON(granted), "remember": .bool(remember)])
            #expect(accepted.status == 200, "\(accepted.bodyText)")
            location = try #require(accepted.json?["redirect_to"]?.stringValue)
        }
        #expect(location.hasPrefix(Harness.redirect + "?"))
        let items = queryItems(location)
        #expect(items["state"] == "st-1")
        #expect(items["iss"] == Harness.issuer)
        return try #require(items["code"])
    }

    func exchange(_ h: Harness, client: String, secret: String? = nil, code: String, verifier: String) -> Response {
        var items = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Harness.redirect), ("code_verifier", verifier)]
        if secret == nil { items.append(("client_id", client)) }
        return h.form("/oauth2/token", items, basic: secret.map { (client, $0) })
    }

    @Test func publicClientCodeFlowWithPKCEIssuesVerifiableTokens() throws {
        let h = try Harness()
        let userID = try h.user()
        let (client, _) = try h.app()
        let b = Browser(h)
        let pkce = PKCE()
        let code = try code(h, b, client: client, pkce: pkce)
        let r = exchange(h, client: client, code: code, verifier: pkce.verifier)
        #expect(r.status == 200, "\(r.bodyText)")
        let body = try #require(r.json)
        #expect(body["refresh_token"]?.stringValue?.hasPrefix("lkr_") == true)
        #expect(body["scope"] == "openid profile email offline_access")
        let idTokenText = try #require(body["id_token"]?.stringValue)
        let idToken = try #require(JWS.parse(idTokenText))
        let claims = idToken.payload
        #expect(claims["iss"] == .string(Harness.issuer))
        #expect(claims["sub"] == .string(userID))
        #expect(claims["aud"] == .string(client))
        #expect(claims["azp"] == .string(client))
        #expect(claims["nonce"] == "n-1")
        #expect(claims["email"] == "alice@example.com")
        #expect(claims["name"] == "Alice Liddell")
        #expect(claims["auth_time"]?.intValue != nil)
        let access = try #require(body["access_token"]?.stringValue)
        #expect(claims["at_hash"] == .string(Base64.urlEncode(Array(Digest.sha256(access).prefix(16)))))
        let accessClaims = try #require(JWS.parse(access)).payload
        #expect(accessClaims["sub"] == .string(userID))
        #expect(accessClaims["auth_time"]?.intValue != nil)
        // Userinfo, GET and POST.
        let info = h.call("GET", "/oauth2/userinfo", headers: [("Authorization", "Bearer \(access)")])
        #expect(info.status == 200)
        #expect(info.json?["sub"] == .string(userID))
        #expect(info.json?["preferred_username"] == "alice")
        let post = h.form("/oauth2/userinfo", [("access_token", access)])
        #expect(post.json?["sub"] == .string(userID))
        // A client_credentials token is not a user's: userinfo refuses it.
        let refused = h.call("GET", "/oauth2/userinfo", headers: [("Authorization", "Bearer \(try h.token())")])
        #expect(refused.status == 401)
        #expect(refused.json?["error_description"] == "The access token was not issued to a user.")
        #expect(refused.headers[.wwwAuthenticate]?.contains("error_description=\"The access token was not issued to a user.\"") == true)
    }

    /// Attacker review, session 19: another site's form POSTs an authorization
    /// request without the browser's cookies (`SameSite=Lax`). Answered as it
    /// stood, it sent a signed-in user to sign in again (ending their session)
    /// and replaced their browser binding (breaking a consent open in another
    /// tab). It goes again as a GET (303), which carries the cookies.
    @Test func aPostedAuthorizationRequestWithoutCookiesGoesAgainAsAGet() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let b = Browser(h)
        _ = try code(h, b, client: client, pkce: PKCE())
        let params = authorizeParams(client, PKCE())
        let posted = h.call("POST", "/oauth2/authorize", headers: [("Content-Type", "application/x-www-form-urlencoded")],
                            body: Array(FormEncoding.serialize(params).utf8))
        #expect(posted.status == 303 && posted.headers[values: .setCookie].isEmpty, "no new browser binding")
        let location = try #require(posted.headers[.location])
        #expect(location.hasPrefix("/oauth2/authorize?"))
        let query = String(location.dropFirst("/oauth2/authorize?".count))
        #expect(FormEncoding.parse(query).map { $0.map { "\($0.0)=\($0.1)" } } == params.map { "\($0.0)=\($0.1)" })
        let before = b.cookies
        let followed = b.send("GET", "/oauth2/authorize", query: query)
        #expect(followed.headers[.location]?.hasPrefix(Harness.redirect + "?") == true, "the remembered consent answers; no sign-in")
        #expect(b.cookies == before)
        // Only Latchkey's own cookies hold the resend back: a lone CSRF cookie, or a browser binding of another
        // shape (a sibling domain can plant cookies), do not.
        for cookie in ["__Host-lk_csrf=abc", "__Host-lk_browser=planted", "other=1"] {
            let r = h.call("POST", "/oauth2/authorize", headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", cookie)],
                           body: Array(FormEncoding.serialize(params).utf8))
            #expect(r.status == 303 && r.headers[.location]?.hasPrefix("/oauth2/authorize?") == true, "\(cookie)")
        }
        // Too long for a GET's request line (nginx: 8 KB): a 400 page, never a 502 or a 414.
        func withState(_ length: Int) -> Response {
            h.call("POST", "/oauth2/authorize", headers: [("Content-Type", "application/x-www-form-urlencoded")],
                   body: Array(FormEncoding.serialize(params.filter { $0.0 != "state" } + [("state", String(repeating: "s", count: length))]).utf8))
        }
        #expect(withState(5000).status == 303)
        let long = withState(7000)
        #expect(long.status == 400 && long.headers[.location] == nil && long.bodyText.contains("too long to pass on"))
        // A POST that carries the cookies (from Latchkey's own pages) is answered at once.
        let samesite = b.send("POST", "/oauth2/authorize", headers: [("Content-Type", "application/x-www-form-urlencoded")],
                              body: Array(FormEncoding.serialize(params).utf8))
        #expect(samesite.headers[.location]?.hasPrefix(Harness.redirect + "?") == true)
    }

    /// Attacker review, session 19: a `sub` value asked for in `claims` was
    /// ignored. OIDC Core §5.5.1: an answer only for that user, never for
    /// another one signed in, even freshly.
    @Test func aSubjectNamedInClaimsIsAnsweredForThatUserOnly() throws {
        let h = try Harness()
        let alice = try h.user()
        let bob = try h.user("bob")
        let (client, _) = try h.app()
        let b = Browser(h)
        _ = try code(h, b, client: client, pkce: PKCE())  // alice signed in, her consent remembered
        func ask(_ subject: String, prompt: String? = nil) -> Response {
            b.authorize(authorizeParams(client, PKCE(), extra: [("claims", #"{"id_token":{"sub":{"value":"\#(subject)","essential":true}}}"#)]
                                                              + (prompt.map { [("prompt", $0)] } ?? [])))
        }
        let silent = ask(bob, prompt: "none")
        #expect(silent.status == 303 && queryItems(silent.headers[.location] ?? "")["error"] == "login_required")
        let asked = ask(bob)
        #expect(asked.headers[.location]?.hasPrefix("/login/") == true, "sign in as bob")
        // Signing in again as alice answers nothing for bob.
        let request = try #require(queryItems(asked.headers[.location] ?? "")["request"])
        #expect(b.login().status == 204)
        let next = b.send("GET", "/oauth2/authorize/continue", query: "request=\(PercentEncoding.encode(request))")
        #expect(next.headers[.location]?.hasPrefix("/login/") == true)
        #expect(b.send("GET", "/api/v1/authorization-requests/\(request)").status == 401)
        let mine = ask(alice, prompt: "none")
        #expect(queryItems(mine.headers[.location] ?? "")["code"] != nil, "her own sub is answered")
    }

    /// Attacker review, session 19 (RFC 8252 §8.6): a remembered consent let
    /// anyone who could open a URL in the user's browser get a code for a
    /// public loopback client on a port of their own and redeem it with their
    /// own verifier. Such a client is asked every time; an authenticating
    /// client, or an https redirect URI, keeps the remembered consent.
    @Test(arguments: [(true, "http://127.0.0.1/cb", "http://127.0.0.1:31337/cb", false),
                      (true, "http://localhost:8400/cb", "http://localhost:8400/cb", false),
                      (true, "http://[::1]/cb", "http://[::1]:31337/cb", false),
                      (true, "https://localhost:8443/cb", "https://localhost:8443/cb", false),
                      (false, "http://127.0.0.1/cb", "http://127.0.0.1:31337/cb", true),
                      (true, Harness.redirect, Harness.redirect, true)])
    func aRememberedConsentAnswersOnlyWhereTheClientIsAssured(_ isPublic: Bool, _ registered: String, _ later: String, _ remembered: Bool) throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app(public: isPublic, redirectURIs: [registered])
        let b = Browser(h)
        func ask(_ uri: String, prompt: String? = nil) -> Response {
            b.authorize(authorizeParams(client, PKCE()).filter { $0.0 != "redirect_uri" } + [("redirect_uri", uri)]
                        + (prompt.map { [("prompt", $0)] } ?? []))
        }
        // The first time: sign in, approve, remember (offered only where it can answer later).
        let request = try #require(queryItems(ask(registered).headers[.location] ?? "")["request"])
        #expect(b.login().status == 204)
        #expect(b.send("GET", "/api/v1/authorization-requests/\(request)").json?["remember_offered"] == .bool(remembered))
        #expect(b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid", "profile", "email", "offline_access"],
                                                                                    "remember": true]).status == 200)
        let again = ask(later), silent = ask(later, prompt: "none")
        if remembered {
            #expect(queryItems(again.headers[.location] ?? "")["code"] != nil)
            #expect(queryItems(silent.headers[.location] ?? "")["code"] != nil)
        } else {
            #expect(again.headers[.location]?.hasPrefix("/consent/") == true, "asked again")
            #expect(queryItems(silent.headers[.location] ?? "")["error"] == "consent_required")
        }
    }

    @Test func confidentialClientsAuthenticateAtTheTokenEndpoint() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: false)
        let b = Browser(h)
        let pkce = PKCE()
        let code = try code(h, b, client: client, pkce: pkce)
        #expect(exchange(h, client: client, code: code, verifier: pkce.verifier).status == 401)
        #expect(exchange(h, client: client, secret: secret, code: code, verifier: pkce.verifier).status == 200)
    }

    @Test func codesAreSingleUseAndAReplayRevokesWhatTheFirstIssued() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let pkce = PKCE()
        let code = try code(h, Browser(h), client: client, pkce: pkce)
        let first = exchange(h, client: client, code: code, verifier: pkce.verifier)
        #expect(first.status == 200)
        let access = try #require(first.json?["access_token"]?.stringValue)
        let refresh = try #require(first.json?["refresh_token"]?.stringValue)
        let second = exchange(h, client: client, code: code, verifier: pkce.verifier)
        #expect(second.status == 400)
        #expect(second.json?["error"] == "invalid_grant")
        #expect(h.form("/oauth2/introspect", [("token", access)], basic: (h.primary.clientID, h.primary.clientSecret)).json == ["active": false])
        let refreshed = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)])
        #expect(refreshed.json?["error"] == "invalid_grant")
    }

    @Test func codesExpireAfterSixtySecondsAndCheckTheVerifier() throws {
        let (h, _, client, pkce, b) = try started()
        let c1 = try code(h, b, client: client, pkce: pkce)
        #expect(exchange(h, client: client, code: c1, verifier: PKCE().verifier).json?["error"] == "invalid_grant")
        let c2 = try code(h, b, client: client, pkce: pkce)
        h.clock.advance(seconds: 61)
        #expect(exchange(h, client: client, code: c2, verifier: pkce.verifier).json?["error"] == "invalid_grant")
        // Another client cannot redeem it.
        let c3 = try code(h, b, client: client, pkce: pkce)
        let (other, _) = try h.app()
        #expect(exchange(h, client: other, code: c3, verifier: pkce.verifier).json?["error"] == "invalid_grant")
        // The redirect_uri must repeat the one sent.
        let c4 = try code(h, b, client: client, pkce: pkce)
        let wrong = h.form("/oauth2/token", [("grant_type", "authorization_code"), ("code", c4), ("redirect_uri", "https://app.example/other"),
                                             ("code_verifier", pkce.verifier), ("client_id", client)])
        #expect(wrong.json?["error"] == "invalid_grant")
        // A refused redemption spends nothing (its claim of the code is given back): the right one still succeeds.
        #expect(exchange(h, client: client, code: c4, verifier: pkce.verifier).status == 200)
    }

    /// A new public app and the tokens a signed-in user's whole browser flow gives it.
    func publicAppWithTokens(_ h: Harness) throws -> (client: String, tokens: JSON) {
        _ = try h.user()
        let (client, _) = try h.app()
        let pkce = PKCE()
        return (client, try #require(exchange(h, client: client, code: try code(h, Browser(h), client: client, pkce: pkce), verifier: pkce.verifier).json))
    }

    @Test func refreshTokensRotateAndReuseRevokesTheFamily() throws {
        let h = try Harness()
        let (client, first) = try publicAppWithTokens(h)
        let r1 = try #require(first["refresh_token"]?.stringValue)
        let rotated = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", r1), ("client_id", client)])
        #expect(rotated.status == 200)
        let r2 = try #require(rotated.json?["refresh_token"]?.stringValue)
        let a2 = try #require(rotated.json?["access_token"]?.stringValue)
        #expect(r2 != r1)
        // Narrower scope on refresh is allowed, wider is not.
        let narrow = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", r2), ("client_id", client), ("scope", "openid")])
        #expect(narrow.json?["scope"] == "openid")
        let r3 = try #require(narrow.json?["refresh_token"]?.stringValue)
        let wide = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", r3), ("client_id", client), ("scope", "openid admin")])
        #expect(wide.json?["error"] == "invalid_scope")
        // A refused rotation spends nothing (its claim of the token is given back): the token still rotates.
        let kept = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", r3), ("client_id", client)])
        #expect(kept.status == 200)
        let r4 = try #require(kept.json?["refresh_token"]?.stringValue)
        // Presenting a rotated-out token revokes the whole family.
        let reuse = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", r1), ("client_id", client)])
        #expect(reuse.json?["error"] == "invalid_grant")
        #expect(h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", r4), ("client_id", client)]).json?["error"] == "invalid_grant")
        #expect(h.form("/oauth2/introspect", [("token", a2)], basic: (h.primary.clientID, h.primary.clientSecret)).json == ["active": false])
        // Refresh tokens are bound to their client.
        let (other, _) = try h.app()
        let pkce = PKCE()
        let fresh = exchange(h, client: client, code: try code(h, Browser(h), client: client, pkce: pkce), verifier: pkce.verifier).json!
        let stolen = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", fresh["refresh_token"]!.stringValue!), ("client_id", other)])
        #expect(stolen.json?["error"] == "invalid_grant")
        // Another client's attempt spends nothing: the token still rotates for its own client.
        #expect(h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", fresh["refresh_token"]!.stringValue!),
                                         ("client_id", client)]).status == 200)
    }

    @Test func noRefreshTokenWithoutOfflineAccess() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let pkce = PKCE()
        let r = exchange(h, client: client, code: try code(h, Browser(h), client: client, pkce: pkce, scope: "openid profile"), verifier: pkce.verifier)
        #expect(r.status == 200)
        #expect(r.json?["refresh_token"] == nil)
    }

    @Test(arguments: [
        "https://app.example/cb/", "https://app.example/cbx", "https://app.example/c", "https://APP.example/cb", "https://app.example/CB",
        "https://app.example/cb?x=1", "https://app.example/cb#f", "https://app.example/x/../cb", "https://app.example/x/%2e%2e/cb",
        "https://user@app.example/cb", "https://app.example.evil.com/cb", "http://app.example/cb", "https://app.example:443/cb",
    ])
    func redirectURIVariantsAreRefusedWithoutRedirect(_ uri: String) throws {
        let h = try Harness()
        let (client, _) = try h.app()
        let b = Browser(h)
        let pkce = PKCE()
        let r = b.authorize([("response_type", "code"), ("client_id", client), ("redirect_uri", uri), ("scope", "openid"),
                             ("code_challenge", pkce.challenge), ("code_challenge_method", "S256")])
        #expect(r.status == 400)
        #expect(r.headers[.location] == nil)
        #expect(r.headers[.contentType]?.hasPrefix("text/html") == true)
    }
}

import Common
import HTTPCore
import JOSE
import OAuth
import TestSupport
import Testing

/// RP-Initiated Logout 1.0 (SPEC 10.1) through the handlers: a valid
/// id_token_hint for the signed-in user ends the session at once; anything
/// else asks the user first, with the session's CSRF token; the redirect
/// after it is a registered post_logout_redirect_uri only.
@Suite struct LogoutTests {
    let flow = UserFlowTests()
    static let after = "https://app.example/signed-out"

    /// A signed-in browser, its app (with a post-logout URI) and an ID token issued to it.
    func signedIn(_ h: Harness) throws -> (browser: Browser, client: String, idToken: String) {
        _ = try h.user()
        let (client, _) = try h.app()
        try h.store.write {
            var c = try #require(try h.store.client(client))
            c.postLogoutRedirectURIs = [Self.after]
            try h.store.updateClient(c)
        }
        let b = Browser(h)
        let pkce = PKCE()
        let tokens = flow.exchange(h, client: client, code: try flow.code(h, b, client: client, pkce: pkce), verifier: pkce.verifier)
        return (b, client, try #require(tokens.json?["id_token"]?.stringValue))
    }

    func logout(_ b: Browser, _ items: [(String, String)]) -> Response { b.send("GET", "/oauth2/logout", query: FormEncoding.serialize(items)) }

    /// RFC 9700 §4.11.2 (attacker reviews, sessions 24 and 28): anyone may register a client anonymously with a
    /// redirect URI of their own and send a link that makes this server redirect a visitor there at once (a bad
    /// parameter, or `prompt=none`; at logout, their own ID token as the hint). For such a client the error stays here,
    /// signed in or not, on a page from which the user may go back with it (a link, or a form for form_post); the
    /// signed-out page stays here too. For a client an operator registered, both go back at once.
    @Test func anAnonymouslyRegisteredClientIsNotRedirectedToWithoutTheUser() throws {
        let h = try Harness()
        _ = try h.user()
        let (anonymous, _) = try h.app()
        let (registered, _) = try h.app()
        for (client, mark) in [(anonymous, true), (registered, false)] {
            try h.store.write {
                var c = try #require(try h.store.client(client))
                if mark { c.attributes.set("registered_anonymously", .bool(true)) }
                c.postLogoutRedirectURIs = [Self.after]
                try h.store.updateClient(c)
            }
        }
        let pkce = PKCE()
        func params(_ client: String, _ overrides: [String: String]) -> [(String, String)] {
            var p = Dictionary(flow.authorizeParams(client, pkce), uniquingKeysWith: { a, _ in a })
            for (k, v) in overrides { p[k] = v }
            return p.map { ($0.key, $0.value) }
        }
        let signedIn = Browser(h)
        #expect(signedIn.login().status == 204)
        /// The page's way back: the link's query, or the form's fields (attribute values unescaped).
        func wayBack(_ page: Response) -> [String: String] {
            let body = page.bodyText
            if let start = body.range(of: "<a href=\""), let end = body[start.upperBound...].range(of: "\"") {
                return queryItems(unescapeHTML(String(body[start.upperBound..<end.lowerBound])))
            }
            return hiddenFields(body, unescaping: true)
        }
        // A state of markup comes back as sent, and nowhere as markup (the page is the server's, under its name).
        let markup = "\"><script>alert(1)</script>'<a href=x>"
        for (overrides, error) in [(["response_type": "token"], "unsupported_response_type"), (["prompt": "none"], "consent_required"),
                                   (["prompt": "none", "response_mode": "form_post"], "consent_required"),
                                   (["prompt": "none", "state": markup], "consent_required"),
                                   (["prompt": "none", "response_mode": "form_post", "state": markup], "consent_required")] {
            for browser in [Browser(h), signedIn] {
                let page = browser.authorize(params(anonymous, overrides))
                #expect(page.status == 400 && page.headers[.location] == nil, "\(overrides): \(page.status) \(page.headers[.location] ?? "")")
                let expected = browser === signedIn || overrides["prompt"] == nil ? error : "login_required"
                #expect(wayBack(page)["error"] == expected && wayBack(page)["iss"] == Harness.issuer, "\(overrides): \(page.bodyText)")
                if let state = overrides["state"] {
                    #expect(wayBack(page)["state"] == state && !page.bodyText.contains("<script") && !page.bodyText.contains("<a href=x"))
                }
                #expect(page.headers[.contentSecurityPolicy]?.contains("form-action https://app.example;") == true)
            }
            let control = signedIn.authorize(params(registered, overrides))
            #expect(control.status == (overrides["response_mode"] == nil ? 303 : 200), "\(overrides)")
        }
        // Logout with a genuine hint (the attacker's own ID token for the client) from a browser signed in nowhere.
        for (client, redirected) in [(anonymous, false), (registered, true)] {
            let b = Browser(h)
            let verifier = PKCE()
            let tokens = flow.exchange(h, client: client, code: try flow.code(h, b, client: client, pkce: verifier), verifier: verifier.verifier)
            let idToken = try #require(tokens.json?["id_token"]?.stringValue)
            let r = logout(Browser(h), [("id_token_hint", idToken), ("post_logout_redirect_uri", Self.after), ("state", "s")])
            #expect(redirected ? r.status == 303 && r.headers[.location] == Self.after + "?state=s" : r.status == 200 && r.headers[.location] == nil,
                    "\(client): \(r.status)")
        }
    }

    @Test func aHintForTheSignedInUserEndsTheSessionAndRedirectsWithState() throws {
        let h = try Harness()
        let (b, _, idToken) = try signedIn(h)
        let r = logout(b, [("id_token_hint", idToken), ("post_logout_redirect_uri", Self.after), ("state", "bye-1")])
        #expect(r.status == 303)
        #expect(r.headers[.location] == Self.after + "?state=bye-1")
        #expect(r.headers[values: .setCookie].contains { $0.hasPrefix("__Host-lk_session=;") })
        #expect(b.send("GET", "/api/v1/session").status == 401, "the session is over")
    }

    /// §3: without an id_token_hint nothing confirms the client asked, so
    /// there is no post-logout redirection (open registration would make it
    /// an open redirect), only the confirmation and the signed-out page.
    @Test func withoutAHintTheUserConfirmsWithTheSessionsCSRFTokenAndIsNotRedirected() throws {
        let h = try Harness()
        let (b, client, _) = try signedIn(h)
        let page = logout(b, [("client_id", client), ("post_logout_redirect_uri", Self.after), ("state", "s\"<")])
        #expect(page.status == 200)
        #expect(page.headers[.contentSecurityPolicy]?.contains("form-action 'self';") == true)
        #expect(!page.bodyText.contains("<script"))
        #expect(page.bodyText.contains("value=\"s&quot;&lt;\""))
        // Attacker review, session 19: a bare client_id names no app (anyone may send any client's id).
        #expect(page.bodyText.contains("A sign-out was requested for this browser.") && !page.bodyText.contains("asks to sign you out"))
        #expect(b.send("GET", "/api/v1/session").status == 200, "nothing ended before the user answers")
        func confirm(_ csrf: String) -> Response {
            b.send("POST", "/oauth2/logout", headers: [("Content-Type", "application/x-www-form-urlencoded")],
                   body: Array(FormEncoding.serialize([("client_id", client), ("post_logout_redirect_uri", Self.after), ("state", "s\"<"),
                                                       ("csrf_token", csrf), ("confirm", "yes")]).utf8), csrf: false)
        }
        #expect(confirm("forged").status == 403)
        #expect(b.send("GET", "/api/v1/session").status == 200)
        let done = confirm(try #require(b.cookies["__Host-lk_csrf"]))
        #expect(done.status == 200 && done.bodyText.contains("You are signed out"))
        #expect(done.headers[.location] == nil)
        #expect(b.send("GET", "/api/v1/session").status == 401)
    }

    /// A hint from an earlier session of the same user (every client the
    /// user ever used holds one) does not end the current session unasked.
    @Test func aHintFromAnEarlierSessionIsConfirmedFirst() throws {
        let h = try Harness()
        let (b, _, oldToken) = try signedIn(h)
        #expect(b.send("DELETE", "/api/v1/session").status == 204)
        #expect(b.login().status == 204)
        let page = logout(b, [("id_token_hint", oldToken), ("post_logout_redirect_uri", Self.after)])
        #expect(page.status == 200 && page.bodyText.contains("asks to sign you out"), "the confirmation page, naming the user's own client")
        #expect(page.headers[.contentSecurityPolicy]?.contains("form-action 'self' https://app.example;") == true,
                "the confirmation redirects there, and browsers apply form-action to that redirect")
        #expect(b.send("GET", "/api/v1/session").status == 200, "nothing ended before the user answers")
    }

    /// An ID token no browser session signed in for (a code minted on the app API with a user's token) names
    /// no session: it does not end the browser's unasked (attacker review, session 10).
    @Test func aHintWithoutASessionIsConfirmedFirst() throws {
        let h = try Harness()
        let (b, _, _) = try signedIn(h)
        let sidless = try flow.idTokenMintedWithAUserToken(h, b)
        let page = logout(b, [("id_token_hint", sidless)])
        #expect(page.status == 200 && page.bodyText.contains("sign-out"), "the confirmation page: \(page.status)")
        #expect(b.send("GET", "/api/v1/session").status == 200, "nothing ended before the user answers")
    }

    /// Only an ID token is a hint: Latchkey's access tokens and signed userinfo answers are JWTs too.
    @Test func anAccessTokenIsNoHint() throws {
        let h = try Harness()
        let (b, client, _) = try signedIn(h)
        let pkce = PKCE()
        let tokens = try #require(flow.exchange(h, client: client, code: try flow.code(h, b, client: client, pkce: pkce), verifier: pkce.verifier).json)
        let access = try #require(tokens["access_token"]?.stringValue)
        let page = logout(b, [("id_token_hint", access), ("post_logout_redirect_uri", Self.after)])
        #expect(page.status != 303 && page.headers[.location] == nil)
        #expect(b.send("GET", "/api/v1/session").status == 200, "nothing ended unasked")
    }

    /// Attacker review, session 19: anyone can hold an ID token of their own
    /// for a client of their own; one shown to another signed-in user named
    /// that client on the page and sent the user to its URI once they
    /// confirmed. Now the page names no client and the sign-out stays here.
    @Test func aHintForAnotherUserIsConfirmedWithoutNamingOrRedirecting() throws {
        let h = try Harness()
        let (b, client, aliceToken) = try signedIn(h)
        _ = try h.user("bob")
        #expect(b.send("DELETE", "/api/v1/session").status == 204)
        #expect(b.login("bob").status == 204)
        let items = [("id_token_hint", aliceToken), ("post_logout_redirect_uri", Self.after), ("state", "st")]
        let page = logout(b, items)
        #expect(page.status == 200 && page.bodyText.contains("A sign-out was requested for this browser."))
        #expect(!page.bodyText.contains("asks to sign you out"))
        #expect(page.headers[.contentSecurityPolicy]?.contains("form-action 'self';") == true, "no redirect to allow")
        _ = client
        let done = b.send("POST", "/oauth2/logout", headers: [("Content-Type", "application/x-www-form-urlencoded")],
                          body: Array(FormEncoding.serialize(items + [("csrf_token", try #require(b.cookies["__Host-lk_csrf"])), ("confirm", "yes")]).utf8),
                          csrf: false)
        #expect(done.status == 200 && done.headers[.location] == nil && done.bodyText.contains("You are signed out"))
        #expect(b.send("GET", "/api/v1/session").status == 401)
    }

    /// A hint signed by a key no longer published (revoked after a leak) may name a session still live: it is as no
    /// hint, and the user confirms (review of the change, session 29: it was the error page, and the user could not
    /// sign out of a session begun before the revoke). A made-up kid gets no more than no hint gets.
    @Test func aHintUnderAKeyNoLongerPublishedIsAsNone() throws {
        let h = try Harness()
        let (b, _, idToken) = try signedIn(h)
        let kid = try #require(JWS.parse(idToken)?.kid)
        _ = try KeyManagement.revoke(store: h.store, env: h.env, kid: kid)
        for hint in [idToken, "eyJhbGciOiJFUzI1NiIsImtpZCI6IngifQ.eyJzdWIiOiJ4In0.c2ln"] {
            let items = [("id_token_hint", hint), ("post_logout_redirect_uri", Self.after)]
            let page = logout(b, items)
            #expect(page.status == 200 && page.bodyText.contains("A sign-out was requested for this browser."), "\(page.status)")
            #expect(page.headers[.contentSecurityPolicy]?.contains("form-action 'self';") == true, "no redirect to allow")
            #expect(b.send("GET", "/api/v1/session").status == 200, "nothing ended before the user answers")
        }
        let done = b.send("POST", "/oauth2/logout", headers: [("Content-Type", "application/x-www-form-urlencoded")],
                          body: Array(FormEncoding.serialize([("id_token_hint", idToken), ("post_logout_redirect_uri", Self.after),
                                                              ("csrf_token", try #require(b.cookies["__Host-lk_csrf"])), ("confirm", "yes")]).utf8),
                          csrf: false)
        #expect(done.status == 200 && done.headers[.location] == nil && done.bodyText.contains("You are signed out"))
        #expect(b.send("GET", "/api/v1/session").status == 401)
    }

    @Test(arguments: [
        ("an unregistered post_logout_redirect_uri", [("post_logout_redirect_uri", "https://evil.example/")]),
        ("a post_logout_redirect_uri without a client", [("post_logout_redirect_uri", LogoutTests.after)]),
        ("a forged id_token_hint", []),
        ("a client_id that is not the hint's audience", [("client_id", "someone-else")]),
    ] as [(String, [(String, String)])])
    func aBadRequestIsAnErrorPageAndEndsNothing(_ name: String, _ items: [(String, String)]) throws {
        let h = try Harness()
        let (b, client, idToken) = try signedIn(h)
        var sent = items
        if name.hasPrefix("an unregistered") { sent.append(("client_id", client)) }
        if name.hasPrefix("a client_id") { sent.append(("id_token_hint", idToken)) }
        // Under a published key (its kid), with a signature that is not its.
        if name.hasPrefix("a forged") { sent.append(("id_token_hint", String(idToken.dropLast(4)) + (idToken.hasSuffix("AAAA") ? "BBBB" : "AAAA"))) }
        let r = logout(b, sent)
        #expect(r.status == 400, "\(name)")
        #expect(r.headers[.location] == nil)
        #expect(b.send("GET", "/api/v1/session").status == 200, "\(name): the session stays")
    }

    /// Attacker review, session 19: another site's form POSTs the logout, and
    /// `SameSite=Lax` keeps every cookie back. Answered as it stood, the POST
    /// cleared the cookies and ended nothing on the server (the session, its
    /// grants and the back-channel logouts all stayed), and without a hint it
    /// signed the browser out unasked. It goes again as a GET (303), which
    /// the browser sends its cookies with.
    @Test func aPostWithoutCookiesGoesAgainAsAGetThatCarriesThem() throws {
        let h = try Harness()
        let (b, client, idToken) = try signedIn(h)
        func crossSite(_ items: [(String, String)]) -> Response {
            h.call("POST", "/oauth2/logout", headers: [("Content-Type", "application/x-www-form-urlencoded")],
                   body: Array(FormEncoding.serialize(items).utf8))
        }
        func followed(_ r: Response) throws -> Response {
            let location = try #require(r.headers[.location])
            #expect(location.hasPrefix("/oauth2/logout?"))
            return b.send("GET", "/oauth2/logout", query: String(location.dropFirst("/oauth2/logout?".count)))
        }
        #expect(crossSite([("state", String(repeating: "s", count: 7100))]).bodyText.contains("This sign-out link does not work"))
        let unasked = crossSite([("client_id", client)])
        #expect(unasked.status == 303 && unasked.headers[values: .setCookie].isEmpty, "nothing cleared")
        #expect(try followed(unasked).bodyText.contains("Sign out of Latchkey?"), "without a hint the user is asked")
        #expect(b.send("GET", "/api/v1/session").status == 200)

        let asked = crossSite([("id_token_hint", idToken), ("post_logout_redirect_uri", Self.after), ("state", "bye 2")])
        #expect(asked.status == 303 && asked.headers[values: .setCookie].isEmpty)
        #expect(b.send("GET", "/api/v1/session").status == 200, "the cookie-less POST itself ends nothing")
        let done = try followed(asked)
        #expect(done.status == 303 && done.headers[.location] == Self.after + "?state=bye%202")
        #expect(b.send("GET", "/api/v1/session").status == 401, "the session is over on the server")
    }

    @Test func withoutASessionThereIsNothingToEnd() throws {
        let h = try Harness()
        let (_, client, idToken) = try signedIn(h)
        let stranger = Browser(h)
        #expect(logout(stranger, [("id_token_hint", idToken), ("post_logout_redirect_uri", Self.after)]).headers[.location] == Self.after)
        // Without the hint, no redirection even to a registered URI.
        #expect(logout(stranger, [("client_id", client), ("post_logout_redirect_uri", Self.after)]).headers[.location] == nil)
        let page = logout(stranger, [("client_id", client)])
        #expect(page.status == 200 && page.bodyText.contains("You are signed out"))
        #expect(page.headers[values: .setCookie].isEmpty, "no cookie came, none is cleared")
    }

    /// Attacker review, session 17: the hint of a client an operator disabled still sent the browser to its URI.
    @Test func aDisabledClientsURIsLeadNowhere() throws {
        let h = try Harness()
        let (b, client, idToken) = try signedIn(h)
        #expect(h.json("PATCH", "/api/v1/clients/\(client)", token: try h.token(), body: ["enabled": false]).status == 200)
        let stranger = Browser(h)
        let visitor = logout(stranger, [("id_token_hint", idToken), ("post_logout_redirect_uri", Self.after)])
        #expect(visitor.headers[.location] == nil && visitor.bodyText.contains("You are signed out"))
        // The user's own logout still ends the session, on the signed-out page.
        let own = logout(b, [("id_token_hint", idToken), ("post_logout_redirect_uri", Self.after), ("state", "s")])
        #expect(own.headers[.location] == nil, "\(own.status) \(own.headers)")
        #expect(b.send("GET", "/api/v1/session").status == 401, "the session is over")
    }

    @Test func clientsRegisterPostLogoutURIsAndDiscoveryNamesTheEndpoint() throws {
        let h = try Harness()
        let token = try h.token()
        let created = h.json("POST", "/api/v1/clients", token: token, body: [
            "client_name": "RP", "redirect_uris": ["https://rp.example/cb"], "post_logout_redirect_uris": ["https://rp.example/bye"]])
        #expect(created.status == 201 && created.json?["post_logout_redirect_uris"] == ["https://rp.example/bye"])
        let bad = h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "RP", "post_logout_redirect_uris": ["https://rp.example/#x"]])
        #expect(bad.status == 400 && bad.json?["errors"]?.arrayValue?.first?["field"] == "post_logout_redirect_uris[0]")
        #expect(h.call("GET", "/.well-known/openid-configuration").json?["end_session_endpoint"] == .string(Harness.issuer + "/oauth2/logout"))
    }
}

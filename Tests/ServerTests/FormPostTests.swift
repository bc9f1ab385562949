import Common
import HTTPCore
import OAuth
import TestSupport
import Testing

/// OAuth 2.0 Form Post Response Mode (SPEC 10.1): the response to the
/// client as a page that POSTs it, under a strict CSP, whichever way the
/// request is answered (a remembered consent, the consent page's form, a
/// refusal); an unknown response mode is an error in the query.
@Suite struct FormPostTests {
    let flow = UserFlowTests()

    /// The nonce of the page's CSP, which must be its one script's.
    func scriptNonce(_ r: Response) -> String? {
        guard let csp = r.headers[.contentSecurityPolicy], let start = csp.range(of: "'nonce-") else { return nil }
        return String(csp[start.upperBound...].prefix { $0 != "'" })
    }

    /// The consent page's own form answering `request` (`path`: accept or reject), as a browser submits it.
    func formAnswer(_ b: Browser, _ request: String, _ path: String, _ items: [(String, String)]) -> Response {
        b.send("POST", "/api/v1/authorization-requests/\(request)/\(path)", headers: [("Content-Type", "application/x-www-form-urlencoded")],
               body: Array(FormEncoding.serialize(items).utf8), csrf: false)
    }

    /// A pending form_post request of `client` for this signed-in browser, with `prompt`; its id.
    func pendingFormPost(_ b: Browser, _ client: String, prompt: String = "consent") throws -> String {
        let location = try #require(b.authorize(flow.authorizeParams(client, PKCE(), extra: [("response_mode", "form_post"), ("prompt", prompt)]))
            .headers[.location])
        return try #require(queryItems(location)["request"])
    }

    func checkPage(_ r: Response, _ h: Harness) throws -> [String: String] {
        #expect(r.status == .ok)
        #expect(r.headers[.contentType] == "text/html; charset=utf-8")
        #expect(r.headers[.location] == nil)
        #expect(r.headers[.cacheControl] == "no-store")
        let csp = try #require(r.headers[.contentSecurityPolicy])
        #expect(csp.contains("default-src 'none'") && csp.contains("form-action https://app.example;") && csp.contains("frame-ancestors 'none'"))
        let nonce = try #require(scriptNonce(r))
        #expect(nonce.count >= 20)
        #expect(r.bodyText.contains("<script nonce=\"\(nonce)\">document.forms[0].submit();</script>"))
        #expect(r.bodyText.contains("<form method=\"post\" action=\"\(Harness.redirect)\">"))
        #expect(r.bodyText.components(separatedBy: "<script").count == 2, "one script, the nonce's")
        let fields = hiddenFields(r.bodyText)
        #expect(fields["iss"] == Harness.issuer)
        return fields
    }

    @Test func aRememberedConsentAnswersWithThePageAndItsCodeRedeems() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let b = Browser(h)
        _ = try flow.code(h, b, client: client, pkce: PKCE())  // signs in and remembers the consent
        let pkce = PKCE()
        let params = flow.authorizeParams(client, pkce, extra: [("response_mode", "form_post")]).map { $0.0 == "state" ? ("state", "a\"><b>&c") : $0 }
        let r = b.authorize(params)
        let fields = try checkPage(r, h)
        // The state comes back as sent, escaped in the page (the parser reads the escaped form).
        #expect(fields["state"] == "a&quot;&gt;&lt;b&gt;&amp;c")
        #expect(!r.bodyText.contains("a\"><b>"))
        let code = try #require(fields["code"])
        #expect(flow.exchange(h, client: client, code: code, verifier: pkce.verifier).status == 200)
    }

    @Test func anUnknownResponseModeIsAnErrorInTheQuery() throws {
        let h = try Harness()
        let (client, _) = try h.app()
        let r = Browser(h).authorize(flow.authorizeParams(client, PKCE(), extra: [("response_mode", "fragment")]))
        #expect(r.status == 303)
        let location = try #require(r.headers[.location])
        #expect(location.hasPrefix(Harness.redirect + "?"))
        #expect(queryItems(location)["error"] == "invalid_request")
        #expect(queryItems(location)["state"] == "st-1")
    }

    @Test func theConsentPagesFormAnswersWithThePageAndNeedsTheCSRFToken() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let b = Browser(h)
        #expect(b.login().status == 204)
        let pkce = PKCE()
        let first = b.authorize(flow.authorizeParams(client, pkce, extra: [("response_mode", "form_post"), ("prompt", "consent")]))
        let location = try #require(first.headers[.location])
        let request = try #require(queryItems(location)["request"])
        #expect(b.send("GET", "/api/v1/authorization-requests/\(request)").json?["response_mode"] == "form_post")
        func answer(_ path: String, _ items: [(String, String)]) -> Response { formAnswer(b, request, path, items) }
        // Without the CSRF token, or with another one: refused, and the request stays pending.
        #expect(answer("accept", [("scope", "openid"), ("remember", "true")]).status == 403)
        #expect(answer("accept", [("scope", "openid"), ("csrf_token", "forged")]).status == 403)
        let csrf = try #require(b.cookies["__Host-lk_csrf"])
        let page = answer("accept", [("scope", "openid"), ("scope", "profile"), ("remember", "false"), ("csrf_token", csrf)])
        let fields = try checkPage(page, h)
        let code = try #require(fields["code"])
        let tokens = flow.exchange(h, client: client, code: code, verifier: pkce.verifier)
        #expect(tokens.status == 200)
        #expect(tokens.json?["scope"] == "openid profile")
        #expect(answer("accept", [("scope", "openid"), ("csrf_token", csrf)]).status == 409, "answered once")
    }

    @Test func aRefusalAndAJSONAnswerTakeTheRequestsMode() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let b = Browser(h)
        #expect(b.login().status == 204)
        let csrf = try #require(b.cookies["__Host-lk_csrf"])
        let refused = formAnswer(b, try pendingFormPost(b, client), "reject", [("csrf_token", csrf)])
        let fields = try checkPage(refused, h)
        #expect(fields["error"] == "access_denied" && fields["code"] == nil)
        // A JSON caller (another consent UI) gets what the page would carry.
        let json = b.json("POST", "/api/v1/authorization-requests/\(try pendingFormPost(b, client))/accept", ["scope": ["openid"], "remember": false])
        #expect(json.status == 200)
        #expect(json.json?["form_post"]?["action"] == .string(Harness.redirect))
        #expect(json.json?["form_post"]?["fields"]?["code"]?.stringValue?.hasPrefix("lkc_") == true)
        #expect(json.json?["redirect_to"] == nil)
    }

    /// The page's own form shows the browser what comes back: a stale sign-in goes to the login page and a
    /// client changed since is an error page, not a JSON problem.
    @Test func aFormAnswerThatCannotBeTakenIsAPage() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let b = Browser(h)
        #expect(b.login().status == 204)
        h.clock.advance(seconds: 1)
        let csrf = try #require(b.cookies["__Host-lk_csrf"])
        func answer(_ request: String) -> Response { formAnswer(b, request, "accept", [("scope", "openid"), ("csrf_token", csrf)]) }
        let stale = try pendingFormPost(b, client, prompt: "login")
        let toLogin = answer(stale)
        #expect(toLogin.status == 303 && toLogin.headers[.location] == "/login/?request=\(stale)", "\(toLogin.status) \(toLogin.bodyText)")
        let unchanged = try pendingFormPost(b, client)
        #expect(h.json("PATCH", "/api/v1/clients/\(client)", token: try h.token(), body: ["enabled": false]).status == 200)
        let changed = answer(unchanged)
        #expect(changed.status == 409 && changed.headers[.contentType]?.hasPrefix("text/html") == true, "\(changed.bodyText)")
        #expect(changed.bodyText.contains("The application changed since this request was made."))
    }

    @Test func discoveryNamesBothModes() throws {
        let h = try Harness()
        #expect(h.call("GET", "/.well-known/openid-configuration").json?["response_modes_supported"] == ["query", "form_post"])
    }
}

import Common
import HTTPCore
import OAuth

/// `/oauth2/logout`, the end_session_endpoint (RP-Initiated Logout 1.0):
/// parses, renders the confirmation and signed-out pages (no script, a
/// strict CSP) and clears the session cookies; the rules are LogoutService's.
enum LogoutEndpoints {
    /// No script; forms to Latchkey, and to the post-logout URI's origin when a confirmation will redirect there.
    static func csp(formAction extra: String?) -> String {
        "default-src 'none'; style-src 'self'; form-action 'self'\(extra.map { " " + $0 } ?? ""); frame-ancestors 'none'; base-uri 'none'"
    }

    static func page(_ title: String, _ body: String, status: HTTPResponse.Status = .ok, formAction: String? = nil) -> Response {
        let html = """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><title>\(XMLElement.escape(title))</title>
            <meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="/assets/latchkey.css"></head>
            <body><main class="card"><h1>\(XMLElement.escape(title))</h1>\(body)</main></body></html>
            """
        var response = Response.text(html, status: status, contentType: "text/html; charset=utf-8").noStore()
        response.headers[.contentSecurityPolicy] = csp(formAction: formAction)
        return response
    }

    static func logout(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let items: [(String, String)]
        if request.method == .post {
            guard request.mediaType == "application/x-www-form-urlencoded", let form = FormEncoding.parse(request.body) else {
                return page("This sign-out link does not work", "<p role=\"alert\">The request must be form-encoded.</p>", status: .badRequest)
            }
            items = form
        } else {
            guard let query = request.queryItems else {
                return page("This sign-out link does not work", "<p role=\"alert\">The request is not valid percent-encoding.</p>", status: .badRequest)
            }
            items = query
        }
        let confirming = request.method == .post && items.contains { $0.0 == "confirm" }
        if !confirming, let again = UserEndpoints.resentWithCookies(request, ctx, "/oauth2/logout", items, tooLong: {
            page("This sign-out link does not work", "<p role=\"alert\">\(XMLElement.escape($0))</p>", status: .badRequest)
        }) { return again }
        let parameters = LogoutService.Parameters(items)
        let service = LogoutService(env: ctx.env, store: ctx.store, keys: ctx.keys)
        let sessionToken = UserEndpoints.cookie(.session, request, ctx)
        let decision: LogoutService.Decision
        if confirming {
            // The user's answer on the confirmation page: the session's CSRF token must come with it.
            let token = items.first { $0.0 == "csrf_token" }?.1
            guard let current = try SessionService(env: ctx.env, store: ctx.store).current(sessionToken),
                  SessionService.csrfMatches(header: token, session: current.session), UserEndpoints.cookie(.csrf, request, ctx) == token else {
                return page("Sign-out not confirmed", "<p role=\"alert\">The confirmation did not come from this browser's session.</p>",
                            status: .forbidden)
            }
            decision = try service.confirmed(parameters, sessionToken: sessionToken, userID: current.user.id)
        } else {
            decision = try service.request(parameters, sessionToken: sessionToken)
        }
        switch decision {
        case let .errorPage(message):
            return page("This sign-out link does not work", "<p role=\"alert\">\(XMLElement.escape(message))</p>", status: .badRequest)
        case let .confirm(clientName, origin):
            return confirmation(items, clientName: clientName, csrf: UserEndpoints.cookie(.csrf, request, ctx) ?? "", redirectOrigin: origin)
        case let .signedOut(redirect):
            var response = redirect.map { Response.redirect($0, status: .seeOther) }
                ?? page("You are signed out", "<p>You can close this window.</p>")
            // Cookies are cleared only where one came (a request without, from another site, ends nothing).
            if sessionToken != nil {
                UserEndpoints.setSessionCookies(&response, token: "", csrf: "", maxAge: 0, request, ctx)
            }
            return response
        }
    }

    /// "Sign out?", with the request's parameters carried in the form.
    static func confirmation(_ items: [(String, String)], clientName: String?, csrf: String, redirectOrigin: String?) -> Response {
        let carried = items.filter { ["id_token_hint", "client_id", "post_logout_redirect_uri", "state"].contains($0.0) }
        let hidden = (carried + [("csrf_token", csrf), ("confirm", "yes")]).map {
            "<input type=\"hidden\" name=\"\(XMLElement.escape($0.0))\" value=\"\(XMLElement.escape($0.1))\">"
        }.joined(separator: "\n")
        let who = clientName.map { "<p><strong>\(XMLElement.escape($0))</strong> asks to sign you out of Latchkey.</p>" }
            ?? "<p>A sign-out was requested for this browser.</p>"
        return page("Sign out of Latchkey?", """
            \(who)
            <form method="post" action="/oauth2/logout">
            \(hidden)
            <button type="submit" id="sign-out">Sign out</button> <a href="/account/">Stay signed in</a>
            </form>
            """, formAction: redirectOrigin.flatMap(FormPostPage.plainOrigin))
    }
}

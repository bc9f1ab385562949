import Common
import HTTPCore
import OAuth

/// Sign-in, consent, the authorization endpoint, userinfo and connections:
/// everything a person's browser (or a person's app) calls (SPEC 4.4, 5).
enum UserEndpoints {
    /// The browser's cookies: its session, the session's CSRF token (read by
    /// the pages' script) and the binding of pending authorization requests
    /// to the browser that started them (SPEC 7.1). Over https each is read
    /// from a `__Host-` cookie (RFC 6265bis §4.1.3.2): a browser takes one
    /// only from this very host, over https, Secure, with `Path=/` and no
    /// `Domain`, so neither a sibling subdomain nor a network attacker on a
    /// first plain-http visit can plant or shadow it (a planted session was
    /// a login CSRF; a shadowed one made a logout that ended nothing: review,
    /// session 25). The session and CSRF cookies are also set under the
    /// names SPEC 5.1 gives them, for clients that read those, but never
    /// read back. Over http (a development host), the plain names alone.
    enum BrowserCookie: String {
        case session = "lk_session", csrf = "lk_csrf", browser = "lk_browser"
    }

    static func cookieName(_ cookie: BrowserCookie, secure: Bool) -> String { secure ? "__Host-" + cookie.rawValue : cookie.rawValue }

    static func cookie(_ cookie: BrowserCookie, _ request: Request, _ ctx: RequestContext) -> String? {
        request.cookies[cookieName(cookie, secure: secureCookies(request, ctx))]
    }

    /// Its Set-Cookie headers (`maxAge` 0 clears it); only the CSRF token is for script to read.
    static func setCookies(_ cookie: BrowserCookie, _ value: String, maxAge: Int?, _ request: Request, _ ctx: RequestContext) -> [String] {
        let secure = secureCookies(request, ctx)
        let read = Cookies.make(name: cookieName(cookie, secure: secure), value: value, maxAge: maxAge, httpOnly: cookie != .csrf, secure: secure)
        guard secure && cookie != .browser else { return [read] }
        return [read, Cookies.make(name: cookie.rawValue, value: value, maxAge: maxAge, httpOnly: cookie != .csrf, secure: true)]
    }

    /// Sets (or clears, with `maxAge` 0) the session's two cookies on `response`.
    static func setSessionCookies(_ response: inout Response, token: String, csrf: String, maxAge: Int, _ request: Request, _ ctx: RequestContext) {
        for header in setCookies(.session, token, maxAge: maxAge, request, ctx) + setCookies(.csrf, csrf, maxAge: maxAge, request, ctx) {
            response.headers.add(.setCookie, header)
        }
    }

    // MARK: Who is calling

    static func secureCookies(_ request: Request, _ ctx: RequestContext) -> Bool {
        request.scheme == "https" || ctx.env.issuer.hasPrefix("https://")
    }

    static func session(_ request: Request, _ ctx: RequestContext) throws -> (session: SessionRecord, user: User)? {
        try SessionService(env: ctx.env, store: ctx.store).current(cookie(.session, request, ctx))
    }

    static let signInRequired = APIProblem(status: 401, code: "login_required", title: "Unauthorized", detail: "Sign in first.")
    static let csrfFailed = APIProblem(status: 403, code: "csrf_failed", title: "Forbidden",
                                       detail: "X-CSRF-Token must repeat the CSRF cookie (lk_csrf, __Host-lk_csrf over https).")

    /// The signed-in user; state-changing calls also need the CSRF header.
    /// The signed-in user; a write also needs the CSRF token (double
    /// submit: the `X-CSRF-Token` header, or `csrfToken` from a form field,
    /// equal to the cookie and to the session's).
    static func sessionUser(_ request: Request, _ ctx: RequestContext, write: Bool, csrfToken: String? = nil) throws -> (session: SessionRecord, user: User) {
        guard let s = try session(request, ctx) else { throw signInRequired }
        if write {
            let presented = csrfToken ?? request.headers.value(.xCSRFToken)
            guard SessionService.csrfMatches(header: presented, session: s.session), cookie(.csrf, request, ctx) == presented else { throw csrfFailed }
        }
        return s
    }

    /// A user by session cookie, or by a user's bearer token holding one of `scopes`.
    /// Neither: 401 with a bare `Bearer` challenge (SPEC 3, RFC 6750 §3: no error code when nothing was sent).
    static func user(_ request: Request, _ ctx: RequestContext, scopes: [String], write: Bool) throws -> User {
        if request.headers.value(.authorization) != nil { return try userCaller(request, ctx, scopes: scopes).user }
        do {
            return try sessionUser(request, ctx, write: write).user
        } catch let problem as APIProblem where problem == signInRequired {
            var challenged = problem
            challenged.headers[.wwwAuthenticate] = "Bearer"
            throw challenged
        }
    }

    /// The user behind a user's bearer token holding one of `scopes`, and the
    /// client the token was issued to.
    static func userCaller(_ request: Request, _ ctx: RequestContext, scopes: [String]) throws -> (user: User, client: Client, claims: AccessTokenClaims) {
        let token = EndpointKit.bearerToken(request)
        let (claims, client) = try ctx.store.read { try ctx.tokens.authenticateBearer(token) }
        if let token { try DPoPEndpoint.checkBinding(request, ctx, token: token, claims: claims) }
        try TokenService.requireScope(scopes, of: claims)
        guard claims.grantID != nil, let user = try ctx.store.read({ try ctx.store.user(id: claims.subject) }) else {
            throw APIProblem(status: 403, code: "user_token_required", title: "Forbidden", detail: "This API needs a user's token.")
        }
        return (user, client, claims)
    }

    // MARK: Session

    static func login(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let members = try EndpointKit.jsonObject(request)
        let body = JSON.object(members)
        guard let username = body["username"]?.stringValue, let password = body["password"]?.stringValue,
              members.allSatisfy({ ["username", "password"].contains($0.0) }) else {
            throw APIProblem.invalidBody("The body must be {\"username\": \"...\", \"password\": \"...\"}.")
        }
        // Past the failure limits or with the slow-hash pool full, login throws what ErrorRendering answers with 429/503.
        // One browser, one session: the one its cookie named ends as a logout would (its session-bound tokens, a
        // back-channel logout to each client it signed into). Replaced without a word, it outlived its cookie, and the
        // user's later logout never told those clients (attacker review, session 17; another user on a shared computer).
        let previous = cookie(.session, request, ctx).flatMap { $0.isEmpty ? nil : $0 }
        let started = username.utf8.count <= 256 && password.utf8.count <= 1024
            ? try SessionService(env: ctx.env, store: ctx.store).login(username: username, password: password, guards: ctx.guards,
                                                                       address: request.remoteAddress, replacing: previous)
            : nil
        guard let started else {
            throw APIProblem(status: 401, code: "invalid_credentials", title: "Unauthorized", detail: "The username or password is incorrect.")
        }
        let maxAge = Int(SessionService.lifetimeMillis / 1000)
        var response = Response.empty().noStore()
        setSessionCookies(&response, token: started.token, csrf: started.csrf, maxAge: maxAge, request, ctx)
        return response
    }

    static func currentSession(_ request: Request, _ ctx: RequestContext) throws -> Response {
        guard let (s, user) = try session(request, ctx) else { throw signInRequired }
        return Response.json([
            "user_id": .string(user.id), "username": .string(user.username), "name": JSON(user.name), "email": JSON(user.email),
            "auth_time": .int(s.authTime),
        ]).noStore()
    }

    static func logout(_ request: Request, _ ctx: RequestContext) throws -> Response {
        _ = try sessionUser(request, ctx, write: true)
        if let token = cookie(.session, request, ctx) { try SessionService(env: ctx.env, store: ctx.store).logout(token) }
        var response = Response.empty()
        setSessionCookies(&response, token: "", csrf: "", maxAge: 0, request, ctx)
        return response
    }

    // MARK: The authorization endpoint

    /// The authorization endpoint's error page: `message`, then `next` (HTML); no script, and forms to
    /// `formAction` alone when it is given (none otherwise).
    static func errorPage(_ message: String, next: String = "<p>Go back to the application and try again.</p>",
                          formAction: String? = nil) -> Response {
        let html = """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Authorization error</title>
            <meta name="viewport" content="width=device-width, initial-scale=1"><link rel="stylesheet" href="/assets/latchkey.css"></head>
            <body><main class="card"><h1>This sign-in link does not work</h1><p role="alert">\(XMLElement.escape(message))</p>
            \(next)</main></body></html>
            """
        var response = Response.text(html, status: 400, contentType: "text/html; charset=utf-8").noStore()
        response.headers[.contentSecurityPolicy] = "default-src 'none'; style-src 'self'; " + (formAction.map { "form-action \($0); " } ?? "")
            + "frame-ancestors 'none'; base-uri 'none'"
        return response
    }

    /// An error for a client not trusted with an automatic redirect: what went wrong, and a way back to the
    /// application (a link, or for form_post a form the user submits) that the user chooses to take.
    static func errorNotice(_ message: String, _ r: AuthorizationResponse) -> Response {
        let origin = r.origin.flatMap(FormPostPage.plainOrigin)
        let place = XMLElement.escape(origin ?? "the application")
        let back: String
        switch r.mode {
        case .query:
            back = "<p><a href=\"\(XMLElement.escape(r.location))\">Return to \(place)</a></p>"
        case .formPost:
            back = "<form method=\"post\" action=\"\(XMLElement.escape(r.redirectURI))\">\n\(FormPostPage.hiddenInputs(r))\n"
                + "<button type=\"submit\">Return to \(place)</button></form>"
        }
        return errorPage(message, next: """
            <p>The application that sent you here registered itself, without review. Go back to it only if you trust \(place).</p>
            \(back)
            """, formAction: FormPostPage.formAction(r))
    }

    static func respond(_ decision: AuthorizeDecision, _ ctx: RequestContext) -> Response {
        switch decision {
        case let .errorPage(message): return errorPage(message)
        case let .errorNotice(message, response): return errorNotice(message, response)
        case let .respond(response): return toClient(response, ctx)
        case let .login(id, hint):
            let prefill = hint.map { "&login_hint=" + PercentEncoding.encode($0) } ?? ""
            return .redirect("/login/?request=\(PercentEncoding.encode(id))\(prefill)", status: 303)
        case let .consent(id): return .redirect("/consent/?request=\(PercentEncoding.encode(id))", status: 303)
        }
    }

    /// A response to the client: a 303 to the redirect URI (query mode) or
    /// the page that POSTs it there (form_post).
    static func toClient(_ response: AuthorizationResponse, _ ctx: RequestContext) -> Response {
        switch response.mode {
        case .query: return .redirect(response.location, status: 303)
        case .formPost: return FormPostPage.render(response, nonce: ctx.env.randomToken(bytes: 18))
        }
    }

    /// An authorization request's parameters, its `id_token_hint` verified
    /// (OIDC Core §3.1.2.1: one of this server's ID tokens, expired or not).
    static func authorizationParameters(_ pairs: [(String, String)], _ ctx: RequestContext) throws -> AuthorizationParameters {
        var parameters = AuthorizationParameters(pairs: pairs)
        if let hint = parameters.idTokenHint {
            parameters.hintedSubject = try LogoutService(env: ctx.env, store: ctx.store, keys: ctx.keys).hint(hint)?.subject ?? ""
        }
        return parameters
    }

    /// GET (query) or POST (form) /oauth2/authorize.
    static func authorize(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let params: [(String, String)]?
        if request.method == .post {
            guard request.mediaType == "application/x-www-form-urlencoded" else { return errorPage("The request must be form-encoded.") }
            params = FormEncoding.parse(request.body)
        } else {
            params = request.queryItems
        }
        guard let params else { return errorPage("The request is not valid percent-encoding.") }
        if let again = resentWithCookies(request, ctx, "/oauth2/authorize", params, tooLong: { errorPage($0) }) { return again }
        let browser = browserBinding(request, ctx)
        let decision = try AuthorizationService(env: ctx.env, store: ctx.store)
            .authorize(try authorizationParameters(params, ctx), sessionToken: cookie(.session, request, ctx), browser: browser.value)
        return browser.bind(respond(decision, ctx))
    }

    /// A browser's POST that carried none of Latchkey's cookies: another
    /// site's form (`SameSite=Lax` holds every one back on a cross-site POST)
    /// or a browser that has none yet. Answered as it stands, it would look
    /// signed out: the user sent to sign in again (which ends their session),
    /// a new browser binding replacing theirs, a logout clearing cookies of a
    /// session it never ends. So it goes again as a GET (303) with the same
    /// parameters: a top-level navigation, on which the browser sends them.
    /// A longer one is refused (`tooLong`, a 400 page) rather than resent:
    /// the GET's request line must fit nginx's 8 KB header buffers. A
    /// `lk_browser` that is not one Latchkey set (a sibling domain can plant
    /// cookies) counts as none.
    static func resentWithCookies(_ request: Request, _ ctx: RequestContext, _ path: String, _ parameters: [(String, String)],
                                  tooLong: (String) -> Response) -> Response? {
        guard request.method == .post, cookie(.session, request, ctx) == nil, wellFormedBrowserCookie(request, ctx) == nil else { return nil }
        let query = FormEncoding.serialize(parameters)
        guard query.utf8.count <= maxResentQueryBytes else {
            return tooLong("This request came from another site and is too long to pass on. Send it as a GET, or push it first (PAR).")
        }
        return .redirect(query.isEmpty ? path : path + "?" + query, status: .seeOther)
    }

    /// Within nginx's 8 KB for a request line, and (`fastcgi_buffer_size 16k`, latchkey-fastcgi.conf) its buffer for a response head.
    static let maxResentQueryBytes = 7000

    /// The browser-binding cookie when it has the shape of one Latchkey sets.
    static func wellFormedBrowserCookie(_ request: Request, _ ctx: RequestContext) -> String? {
        guard let presented = cookie(.browser, request, ctx), (32...128).contains(presented.utf8.count),
              presented.utf8.allSatisfy(Base64.isURLSafeByte) else { return nil }
        return presented
    }

    /// The browser-binding cookie (SPEC 7.1), for a request about to store
    /// an authorization request: the browser's own when well formed, else a
    /// new one, which `bind` sets on the response.
    struct BrowserBinding {
        let value: String
        let setCookie: String?

        func bind(_ response: Response) -> Response {
            var response = response
            if let setCookie { response.headers.add(.setCookie, setCookie) }
            return response
        }
    }

    static func browserBinding(_ request: Request, _ ctx: RequestContext) -> BrowserBinding {
        if let presented = wellFormedBrowserCookie(request, ctx) { return BrowserBinding(value: presented, setCookie: nil) }
        let fresh = ctx.env.randomToken(bytes: 32)
        return BrowserBinding(value: fresh, setCookie: setCookies(.browser, fresh, maxAge: nil, request, ctx).first)
    }

    static func authorizeContinue(_ request: Request, _ ctx: RequestContext) throws -> Response {
        guard let id = request.queryValue("request"), !id.isEmpty else { return errorPage("The request parameter is missing.") }
        return respond(try AuthorizationService(env: ctx.env, store: ctx.store)
            .next(requestID: id, sessionToken: cookie(.session, request, ctx), browser: cookie(.browser, request, ctx)), ctx)
    }


    // MARK: Userinfo

    static func userinfo(_ request: Request, _ ctx: RequestContext) throws -> Response {
        var token = EndpointKit.bearerToken(request)
        // The body's token only when no Authorization header came (RFC 6750 §2: one method a request): a header
        // naming a scheme without a token (`DPoP` alone) is no token, not a way to send it in the body instead.
        if token == nil, !request.headers.contains(.authorization), request.method == .post, request.mediaType == "application/x-www-form-urlencoded",
           let items = FormEncoding.parse(request.body) {
            token = items.first(where: { $0.0 == "access_token" })?.1
        }
        let (claims, client) = try ctx.store.read { try ctx.tokens.authenticateBearer(token) }
        // The page of the app the token was issued to may read what it says of its user, and why not (a DPoP nonce).
        return try CrossOrigin.answering(for: CrossOrigin.origins(of: client, for: request)) {
            // Outside the read: a proof's jti is written. Before anything the token says is judged (whose it is, its scope).
            if let token { try DPoPEndpoint.checkBinding(request, ctx, token: token, claims: claims) }
            return switch try ctx.store.read({ try ctx.tokens.userinfo(claims: claims, client: client) }) {
            case let .json(claims): Response.json(claims).noStore()
            case let .jwt(signed): Response.text(signed, status: .ok, contentType: "application/jwt").noStore()
            }
        }
    }

    // MARK: Connections

    static func connectionJSON(_ c: UserConnection, _ client: Client, _ ctx: RequestContext, withName: Bool = true) -> JSON {
        var members: [(String, JSON)] = [("client_id", .string(client.clientID))]
        if withName {
            members.append(("client_name", .string(ClientSpec.displayName(client))))
            members.append(("logo_uri", client.hasLogo ? .string("\(ctx.env.issuer)/api/v1/clients/\(client.clientID)/logo") : .null))
        }
        members += [
            ("scope", .string(Scopes.join(c.grantedScope))), ("auth_time", .int(c.authTime)), ("access_time", .int(c.accessTime / 1000)),
            ("creation_time", .int(c.createdAt / 1000)),
        ]
        return .object(members)
    }

    static func listConnections(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let user = try user(request, ctx, scopes: ["connections:read"], write: false)
        let (limit, offset) = try NativeEndpoints.listParams(request)
        let page = try ConnectionService(env: ctx.env, store: ctx.store).list(userID: user.id, limit: limit, offset: offset)
        var response = Response.json(["connections": .array(page.connections.map { connectionJSON($0.0, $0.1, ctx) })]).noStore()
        response.headers[.xTotalCount] = String(page.total)
        return response
    }

    static func getConnection(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let user = try user(request, ctx, scopes: ["connections:read"], write: false)
        guard let (c, client) = try ConnectionService(env: ctx.env, store: ctx.store).get(userID: user.id, clientID: ctx.param("client_id")) else {
            throw APIProblem.notFound()
        }
        return .json(connectionJSON(c, client, ctx)).noStore()
    }

    static func deleteConnection(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let user = try user(request, ctx, scopes: ["connections:write"], write: true)
        guard try ConnectionService(env: ctx.env, store: ctx.store).delete(userID: user.id, clientID: ctx.param("client_id")) else {
            throw APIProblem.notFound()
        }
        return .empty()
    }
}

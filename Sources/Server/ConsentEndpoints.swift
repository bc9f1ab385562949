import Common
import HTTPCore
import OAuth

/// The consent page's API (SPEC 5.1): a pending request's details, and the
/// user's answer. The page posts JSON (`X-CSRF-Token` header) and follows
/// `redirect_to`; for a form_post request it submits a real form instead
/// (`csrf_token` field), and the answer is the page that POSTs the response
/// to the client, since the consent page's own CSP allows forms to itself only.
extension UserEndpoints {
    static func consentError(_ e: ConsentError) -> APIProblem {
        switch e {
        case .notFound: return .notFound(AuthorizationService.unknownRequestMessage)
        case .alreadyAnswered: return .conflict("already_answered", "The authorization request was already answered.")
        case .scopeNotRequested: return APIProblem(status: 400, code: "invalid_scope", title: "Invalid scope",
                                                   detail: "Only scopes the application asked for can be granted.")
        // The consent page sends the user to the login page on a 401.
        case .loginRequired: return APIProblem(status: 401, code: "login_required", title: "Sign in again",
                                               detail: "This application asks you to sign in again before you answer.")
        case .clientChanged: return .conflict("client_changed", ConsentError.clientChangedMessage)
        }
    }

    /// The signed-in user, with the pending request `id` read ahead (on
    /// PostgreSQL the session, its user and the request in one round trip).
    static func sessionUser(_ request: Request, _ ctx: RequestContext, write: Bool, csrfToken: String? = nil,
                            readingAhead service: AuthorizationService) throws -> (session: SessionRecord, user: User) {
        try ctx.store.read {
            try service.readAhead(ctx.param("id"))
            return try sessionUser(request, ctx, write: write, csrfToken: csrfToken)
        }
    }

    static func authorizationRequest(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let service = AuthorizationService(env: ctx.env, store: ctx.store)
        let (session, _) = try sessionUser(request, ctx, write: false, readingAhead: service)
        guard let stored = try service.pending(ctx.param("id"), browser: cookie(.browser, request, ctx)),
              let client = try ctx.store.read({ try ctx.store.client(stored.request.clientID) }) else {
            throw consentError(.notFound)
        }
        guard service.signedInFreshly(for: stored, session) else { throw consentError(.loginRequired) }
        var clientJSON: [(String, JSON)] = [("client_id", .string(client.clientID)), ("client_name", .string(ClientSpec.displayName(client))),
                                            ("client_uri", JSON(client.clientURI)), ("policy_uri", JSON(client.policyURI)),
                                            ("tos_uri", JSON(client.tosURI))]
        clientJSON.append(("logo_uri", client.hasLogo ? .string("\(ctx.env.issuer)/api/v1/clients/\(client.clientID)/logo") : .null))
        // SPEC 7.1: the consent page names the organization that registered the client.
        let organization = try ctx.store.read { try ctx.store.organization(client.organizationID) }
        let rememberOffered = try stored.request.deviceCodeHash == nil && service.rememberedConsentApplies(stored.request, client: client)
        return Response.json([
            "client": .object(clientJSON),
            "organization": ["organization_id": .string(client.organizationID), "name": JSON(organization.map { ClientSpec.displaySafe($0.name, fallback: $0.id) })],
            "scopes": .array(stored.request.scope.map { ["name": .string($0), "description": .string(ScopeCatalog.describe($0))] }),
            // A device's request (RFC 8628) goes back to no redirect URI: the page says to return to the device.
            "redirect_uri": stored.request.deviceCodeHash == nil ? .string(stored.request.redirectURI) : .null,
            "device": .bool(stored.request.deviceCodeHash != nil),
            // Whether "remember" could ever answer a later request (not for a device, nor a public loopback client's).
            "remember_offered": .bool(rememberOffered),
            "response_mode": .string(stored.request.responseMode.rawValue),
        ]).noStore()
    }

    /// The answer's fields, from JSON (`{"scope": [...], "remember": bool}`)
    /// or from a form (`scope` repeated, `remember`, `csrf_token`).
    struct Answer {
        var scope: [String] = []
        var remember = true
        var csrfToken: String?
        var fromForm = false
    }

    static func answer(_ request: Request, scopeRequired: Bool) throws -> Answer {
        var answer = Answer()
        if request.mediaType == "application/x-www-form-urlencoded" {
            guard let items = FormEncoding.parse(request.body),
                  items.allSatisfy({ ["scope", "remember", "csrf_token"].contains($0.0) }) else {
                throw APIProblem.invalidBody("The form must carry scope, remember and csrf_token only.")
            }
            answer.fromForm = true
            answer.scope = items.filter { $0.0 == "scope" }.map(\.1)
            answer.csrfToken = items.first { $0.0 == "csrf_token" }?.1 ?? ""
            if let remember = items.first(where: { $0.0 == "remember" })?.1 {
                guard remember == "true" || remember == "false" else { throw APIProblem.invalidBody("remember must be true or false.") }
                answer.remember = remember == "true"
            }
            return answer
        }
        guard scopeRequired || !request.body.isEmpty else { return answer }
        let members = try EndpointKit.jsonObject(request)
        let body = JSON.object(members)
        guard members.allSatisfy({ ["scope", "remember"].contains($0.0) }) else {
            throw APIProblem.invalidBody("The body must be {\"scope\": [...], \"remember\": true|false}.")
        }
        if scopeRequired {
            guard let items = body["scope"]?.arrayValue, items.allSatisfy({ $0.stringValue != nil }) else {
                throw APIProblem.invalidBody("The body must be {\"scope\": [...], \"remember\": true|false}.")
            }
            answer.scope = items.compactMap(\.stringValue)
        }
        if let r = body["remember"] {
            guard let b = r.boolValue else { throw APIProblem.invalidBody("remember must be a boolean.") }
            answer.remember = b
        }
        return answer
    }

    /// The response to the client, as the caller asked for it: the page
    /// itself for a form submission, else JSON (`redirect_to`, or the
    /// fields a form_post page would carry).
    static func answered(_ response: AuthorizationResponse, _ answer: Answer, _ ctx: RequestContext) -> Response {
        if answer.fromForm { return toClient(response, ctx) }
        switch response.mode {
        case .query:
            return .json(["redirect_to": .string(response.location)]).noStore()
        case .formPost:
            return .json(["form_post": [
                "action": .string(response.redirectURI),
                "fields": .object(response.fields.map { ($0.name, .string($0.value)) }),
            ]]).noStore()
        }
    }

    static func accept(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let answer = try answer(request, scopeRequired: true)
        let service = AuthorizationService(env: ctx.env, store: ctx.store)
        let (session, user) = try sessionUser(request, ctx, write: true, csrfToken: answer.csrfToken, readingAhead: service)
        do {
            let response = try service.accept(ctx.param("id"), browser: cookie(.browser, request, ctx), user: user, session: session,
                                              scope: answer.scope, remember: answer.remember)
            return answered(response, answer, ctx)
        } catch let e as ConsentError {
            return try refused(e, answer, requestID: ctx.param("id"))
        }
    }

    static func reject(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let answer = try answer(request, scopeRequired: false)
        let service = AuthorizationService(env: ctx.env, store: ctx.store)
        let (session, user) = try sessionUser(request, ctx, write: true, csrfToken: answer.csrfToken, readingAhead: service)
        do {
            return answered(try service.reject(ctx.param("id"), browser: cookie(.browser, request, ctx), user: user, session: session), answer, ctx)
        } catch let e as ConsentError {
            return try refused(e, answer, requestID: ctx.param("id"))
        }
    }

    /// An answer that could not be taken: a problem for a script; for the
    /// page's own form (a form_post request), where the browser shows what
    /// comes back, the login page when a newer sign-in is needed, else a page.
    static func refused(_ e: ConsentError, _ answer: Answer, requestID: String) throws -> Response {
        guard answer.fromForm else { throw consentError(e) }
        if e == .loginRequired { return .redirect("/login/?request=\(PercentEncoding.encode(requestID))", status: 303) }
        let problem = consentError(e)
        var page = errorPage(problem.detail)
        page.status = problem.status
        return page
    }
}

import Common
import HTTPCore
import OAuth

/// The device authorization grant's HTTP side (RFC 8628): the device
/// authorization endpoint, where a device gets its codes (§3.1, §3.2), and
/// the `/device` page's API, where a signed-in user types the user code
/// and is sent to the consent screen (§3.3). The device then polls the
/// token endpoint (`DeviceCodeGrant`).
enum DeviceEndpoints {
    /// `POST /oauth2/device_authorization`: the client authenticates as at
    /// the token endpoint (a public client with its `client_id`); its scope is
    /// checked as at the authorization endpoint.
    static func authorize(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let form = try OAuthForm(request)
        let credentials = try form.credentials(request)
        let client = try ctx.clientAuthenticator(request).authenticateAlone(credentials, allowPublic: true)
        let started = try DeviceAuthorizationService(env: ctx.env, store: ctx.store).start(client: client, scope: form["scope"], address: request.remoteAddress,
                                                                                         hasher: ctx.hasher)
        let page = ctx.env.issuer + "/device/"
        return TokenEndpoint.uncached(.json([
            "device_code": .string(started.deviceCode),
            "user_code": .string(started.userCode),
            "verification_uri": .string(page),
            "verification_uri_complete": .string(page + "?user_code=" + PercentEncoding.encode(started.userCode)),
            "expires_in": JSON(started.expiresIn),
            "interval": JSON(started.interval),
        ]))
    }

    /// `POST /api/v1/device` `{"user_code": "BCDF-GHJK"}` from the `/device`
    /// page (a session and its CSRF token): the consent request for that
    /// code, bound to this browser, as `{"request_id", "redirect_to"}`. A
    /// code that is unknown, expired or already answered is one 404; past
    /// ten codes a minute, 429 with `Retry-After`.
    static func enter(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let members = try EndpointKit.jsonObject(request)
        guard members.count == 1, let typed = JSON.object(members)["user_code"]?.stringValue else {
            throw APIProblem.invalidBody("The body must be {\"user_code\": \"...\"}.")
        }
        let (_, user) = try UserEndpoints.sessionUser(request, ctx, write: true)
        let browser = UserEndpoints.browserBinding(request, ctx)
        guard let id = try DeviceAuthorizationService(env: ctx.env, store: ctx.store)
            .enter(typed, user: user, browser: browser.value, guards: ctx.guards, address: request.remoteAddress, hasher: ctx.hasher) else {
            throw APIProblem(status: 404, code: "invalid_user_code", title: "Not found",
                             detail: "That code is unknown, has expired or was already used. Check the code your device shows.")
        }
        return browser.bind(Response.json(["request_id": .string(id), "redirect_to": .string("/consent/?request=" + PercentEncoding.encode(id))])
            .noStore())
    }
}

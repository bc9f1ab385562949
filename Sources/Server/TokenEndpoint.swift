import Common
import HTTPCore
import OAuth

/// The parameters of an OAuth form POST (RFC 6749 §3.2): form-encoded,
/// each parameter at most once, empty values treated as omitted.
struct OAuthForm {
    let values: [String: String]

    init(_ request: Request) throws {
        guard request.mediaType == "application/x-www-form-urlencoded" else {
            throw OAuthError.invalidRequest("The body must be application/x-www-form-urlencoded.")
        }
        guard let items = FormEncoding.parse(request.body) else {
            throw OAuthError.invalidRequest("The body is not valid form encoding.")
        }
        var values: [String: String] = [:]
        for (name, value) in items {
            guard values[name] == nil else {
                throw OAuthError.invalidRequest("A parameter was sent more than once.", detail: "duplicate \(name)")
            }
            values[name] = value
        }
        self.values = values.filter { !$0.value.isEmpty }
    }

    subscript(name: String) -> String? { values[name] }

    /// The client's credentials: HTTP Basic or the form, never both (RFC 6749 §2.3).
    func credentials(_ request: Request) throws -> PresentedCredentials {
        let basic = BasicCredentials.parse(request.headers["Authorization"], formDecode: true)
        switch basic {
        case .malformed:
            throw OAuthError.invalidClient("The Authorization header is malformed.", basic: true)
        case let .credentials(user, password):
            guard values["client_secret"] == nil else {
                throw OAuthError.invalidRequest("Use exactly one client authentication method.")
            }
            if let formID = values["client_id"], formID != user {
                throw OAuthError.invalidRequest("client_id does not match the authenticated client.")
            }
            return .basic(clientID: user, secret: password)
        case .absent:
            if request.headers["Authorization"] != nil {
                throw OAuthError.invalidClient("Unsupported client authentication scheme.", basic: true)
            }
            guard let clientID = values["client_id"] else { return .none }
            if let secret = values["client_secret"] { return .post(clientID: clientID, secret: secret) }
            return .publicClient(clientID: clientID)
        }
    }
}

enum TokenEndpoint {
    static func noStore(_ response: Response) -> Response {
        var r = response
        r.headers["Cache-Control"] = "no-store"
        r.headers["Pragma"] = "no-cache"
        return r
    }

    /// RFC 6749 §3.2 token endpoint.
    static func token(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let form = try OAuthForm(request)
        guard let grantType = form["grant_type"] else { throw OAuthError.invalidRequest("grant_type is required.") }
        let credentials = try form.credentials(request)
        switch grantType {
        case "client_credentials":
            // One read transaction for the client, its secrets and the key ring.
            let (client, result) = try ctx.store.read {
                let client = try ctx.clientAuthenticator(request).authenticate(credentials, allowPublic: false)
                return (client, try ctx.tokens.clientCredentials(client: client, requestedScope: form["scope"]))
            }
            try ctx.tokens.noteUse(client)
            return noStore(.json(result.json))
        case "authorization_code", "refresh_token":
            // Authenticate first so an unauthenticated caller learns nothing.
            let client = try ctx.store.read { try ctx.clientAuthenticator(request).authenticate(credentials, allowPublic: true) }
            guard client.grantTypes.contains(grantType) else { throw OAuthError.unauthorizedClient() }
            let result: TokenResponse
            if grantType == "authorization_code" {
                guard let code = form["code"] else { throw OAuthError.invalidRequest("code is required.") }
                result = try ctx.tokens.authorizationCode(client: client, code: code, redirectURI: form["redirect_uri"],
                                                          verifier: form["code_verifier"])
            } else {
                guard let refreshToken = form["refresh_token"] else { throw OAuthError.invalidRequest("refresh_token is required.") }
                result = try ctx.tokens.refresh(client: client, refreshToken: refreshToken, requestedScope: form["scope"])
            }
            return noStore(.json(result.json))
        default:
            throw OAuthError.unsupportedGrantType()
        }
    }

    /// RFC 7662 §2.
    static func introspect(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let form = try OAuthForm(request)
        let credentials = try form.credentials(request)
        return noStore(.json(try ctx.store.read {
            let caller = try ctx.clientAuthenticator(request).authenticate(credentials, allowPublic: false)
            guard let token = form["token"] else { throw OAuthError.invalidRequest("token is required.") }
            return try ctx.tokens.introspect(token: token, caller: caller)
        }))
    }

    /// RFC 7009 §2.
    static func revoke(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let form = try OAuthForm(request)
        let credentials = try form.credentials(request)
        let caller = try ctx.store.read { try ctx.clientAuthenticator(request).authenticate(credentials, allowPublic: true) }
        guard let token = form["token"] else { throw OAuthError.invalidRequest("token is required.") }
        try ctx.tokens.revoke(token: token, caller: caller)
        return noStore(Response(status: 200))
    }
}

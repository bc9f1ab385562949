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
        values.reserveCapacity(items.count)
        var anyEmpty = false
        for (name, value) in items {
            guard values[name] == nil else {
                throw OAuthError.invalidRequest("A parameter was sent more than once.", detail: "duplicate \(Echo.name(name))")
            }
            values[name] = value
            anyEmpty = anyEmpty || value.isEmpty
        }
        self.values = anyEmpty ? values.filter { !$0.value.isEmpty } : values
    }

    subscript(name: String) -> String? { values[name] }

    /// The client's credentials: HTTP Basic, the form's secret or a client
    /// assertion (RFC 7521 §4.2), exactly one (RFC 6749 §2.3).
    func credentials(_ request: Request) throws -> PresentedCredentials {
        if values["client_assertion"] != nil || values["client_assertion_type"] != nil {
            guard request.headers.value(.authorization) == nil, values["client_secret"] == nil else {
                throw OAuthError.invalidRequest("Use exactly one client authentication method.")
            }
            guard let assertion = values["client_assertion"], values["client_assertion_type"] == ClientAssertion.type else {
                throw OAuthError.invalidRequest("client_assertion_type must be \(ClientAssertion.type), with a client_assertion.")
            }
            return .assertion(clientID: values["client_id"], assertion: assertion)
        }
        let basic = BasicCredentials.parse(request.headers.value(.authorization), formDecode: true)
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
            if request.headers.value(.authorization) != nil {
                throw OAuthError.invalidClient("Unsupported client authentication scheme.", basic: true)
            }
            guard let clientID = values["client_id"] else { return .none }
            if let secret = values["client_secret"] { return .post(clientID: clientID, secret: secret) }
            return .publicClient(clientID: clientID)
        }
    }
}

enum TokenEndpoint {
    /// RFC 6749 §5.1: token responses carry `Cache-Control: no-store` and,
    /// for HTTP/1.0 caches, `Pragma: no-cache`.
    static func uncached(_ response: Response) -> Response {
        var r = response.noStore()
        r.headers[.pragma] = "no-cache"
        return r
    }

    /// RFC 6749 §3.2 token endpoint: parses and renders; the grants decide.
    static func token(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let form = try OAuthForm(request)
        guard let grantType = form["grant_type"] else { throw OAuthError.invalidRequest("grant_type is required.") }
        let credentials = try form.credentials(request)
        // A public client's page may read its answers, errors included (a browser-based app); a client with a secret
        // is no page's. Read before anything is redeemed: no read can fail after the grant has committed.
        var origins: [String] = []
        if case let .publicClient(clientID) = credentials, request.headers.contains(.origin),
           let client = try ctx.store.read({ try ctx.store.client(clientID) }), client.isPublic {
            origins = CrossOrigin.origins(of: client, for: request)
        }
        return try CrossOrigin.answering(for: origins) { try exchange(form, grantType, credentials, request, ctx) }
    }

    private static func exchange(_ form: OAuthForm, _ grantType: String, _ credentials: PresentedCredentials, _ request: Request,
                                 _ ctx: RequestContext) throws -> Response {
        try DPoPEndpoint.demandNonce(request, ctx)
        let exchange = TokenExchange(service: ctx.tokens, authenticator: ctx.clientAuthenticator(request))
        // A DPoP proof is checked once the client is authenticated, and its jti written by the grant that uses it.
        let proof: (() throws -> DPoPProof)? = !request.headers.contains(.dpop) ? nil : {
            guard let proof = try DPoPEndpoint.verifiedProof(request, ctx, accessToken: nil) else { throw DPoPEndpoint.refusal("No DPoP proof.", resource: false) }
            return proof
        }
        let result = try exchange.exchange(TokenRequest(grantType: grantType, parameters: form.values), credentials: credentials, proof: proof)
        return uncached(.json(serialized: result.serialized))
    }

    /// RFC 7662 §2.
    static func introspect(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let form = try OAuthForm(request)
        let credentials = try form.credentials(request)
        let authenticator = ctx.clientAuthenticator(request)
        // An assertion's jti is written: that authentication cannot run inside the read.
        let asserted = credentials.writesOnUse ? try authenticator.authenticate(credentials, allowPublic: false) : nil
        return uncached(.json(try ctx.store.read {
            let caller = try asserted ?? authenticator.authenticate(credentials, allowPublic: false)
            guard let token = form["token"] else { throw OAuthError.invalidRequest("token is required.") }
            return try ctx.tokens.introspect(token: token, caller: caller)
        }))
    }

    /// RFC 7009 §2.
    static func revoke(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let form = try OAuthForm(request)
        let credentials = try form.credentials(request)
        let caller = try ctx.clientAuthenticator(request).authenticateAlone(credentials, allowPublic: true)
        // A public client's page reads the answer, and its errors from here on (a missing token, a DPoP proof refused
        // or a nonce demanded), as at the token endpoint.
        let origins = caller.isPublic ? CrossOrigin.origins(of: caller, for: request) : []
        return try CrossOrigin.answering(for: origins) {
            guard let token = form["token"] else { throw OAuthError.invalidRequest("token is required.") }
            // A public client's bound tokens are revoked only with a proof of their key (checked once such a token is
            // found; its jti is recorded with the revocation, never for a refused one): the client id alone is anyone's.
            try ctx.tokens.revoke(token: token, caller: caller) { try DPoPEndpoint.verifiedProof(request, ctx, accessToken: nil) }
            return uncached(Response(status: 200))
        }
    }
}

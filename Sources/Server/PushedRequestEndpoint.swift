import Common
import HTTPCore
import OAuth

/// `POST /oauth2/par`, pushed authorization requests (RFC 9126 §2): the
/// client authenticates as at the token endpoint (public clients with their
/// `client_id`), its authorization request is checked in full, and it gets a
/// single-use `request_uri` for /oauth2/authorize, valid 60 seconds.
enum PushedRequestEndpoint {
    /// What authenticates the client, not part of its authorization request.
    static let credentialParameters: Set<String> = ["client_secret", "client_assertion", "client_assertion_type"]

    static func push(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let form = try OAuthForm(request)
        let credentials = try form.credentials(request)
        let client = try ctx.clientAuthenticator(request).authenticateAlone(credentials, allowPublic: true)
        let pairs = form.values.filter { !credentialParameters.contains($0.key) }.map { ($0.key, $0.value) }
        let pushed = try AuthorizationService(env: ctx.env, store: ctx.store).push(AuthorizationParameters(pairs: pairs), client: client)
        return TokenEndpoint.uncached(.json(["request_uri": .string(pushed.requestURI), "expires_in": JSON(pushed.expiresIn)], status: .created))
    }
}

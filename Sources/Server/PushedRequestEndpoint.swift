import Common
import HTTPCore
import OAuth

/// `POST /oauth2/par`, pushed authorization requests (RFC 9126 §2): the
/// client authenticates as at the token endpoint (public clients with their
/// `client_id`), its authorization request is checked in full, and it gets a
/// single-use `request_uri` for /oauth2/authorize, valid 60 seconds. A DPoP
/// proof sent along binds the code to its key (RFC 9449 §10.1).
enum PushedRequestEndpoint {
    /// What authenticates the client, not part of its authorization request.
    static let credentialParameters: Set<String> = ["client_secret", "client_assertion", "client_assertion_type"]

    static func push(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let form = try OAuthForm(request)
        let credentials = try form.credentials(request)
        try DPoPEndpoint.demandNonce(request, ctx)
        let client = try ctx.clientAuthenticator(request).authenticateAlone(credentials, allowPublic: true)
        var pairs = form.values.filter { !credentialParameters.contains($0.key) }.map { ($0.key, $0.value) }
        // RFC 9449 §10.1: a DPoP proof sent with the push binds the code as dpop_jkt does (checked once the client
        // is authenticated, its jti recorded with the pushed request: nothing for a refused one); sent with
        // dpop_jkt, both must name the same key.
        let proof = try DPoPEndpoint.verifiedProof(request, ctx, accessToken: nil)
        if let proof, !client.allows(proof.algorithm) { throw OAuthError.proofAlgorithmRefused }
        if let jkt = proof?.jkt {
            if let named = form["dpop_jkt"], named != jkt {
                throw DPoPEndpoint.refusal("dpop_jkt does not name the DPoP proof's key.", resource: false)
            }
            pairs = pairs.filter { $0.0 != "dpop_jkt" } + [("dpop_jkt", jkt)]
        }
        let pushed = try AuthorizationService(env: ctx.env, store: ctx.store)
            .push(try UserEndpoints.authorizationParameters(pairs, ctx), client: client, proof: proof)
        return TokenEndpoint.uncached(.json(["request_uri": .string(pushed.requestURI), "expires_in": JSON(pushed.expiresIn)], status: .created))
    }
}

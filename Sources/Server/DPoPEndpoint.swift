import Common
import HTTPCore
import OAuth

/// DPoP (RFC 9449) at the HTTP surface: the proof a request carries, and
/// the rule for a bound token at every endpoint that takes access tokens.
enum DPoPEndpoint {
    /// The request's proof checked in full (§4.3, the nonce included) but
    /// its jti not yet recorded: the caller records it in the transaction
    /// that uses it (the token endpoint's grants). nil without a proof.
    static func verifiedProof(_ request: Request, _ ctx: RequestContext, accessToken: String?) throws -> DPoPProof? {
        let proofs = request.headers[values: .dpop]
        guard !proofs.isEmpty else { return nil }
        guard proofs.count == 1 else { throw refusal("Send one DPoP proof.", resource: accessToken != nil) }
        let now = ctx.env.now()
        do {
            return try DPoP.verify(proofs[0], method: request.method.rawValue, url: DPoP.requestURL(issuer: ctx.env.issuer, decodedPath: request.path),
                                   accessToken: accessToken, now: now, nonces: ctx.dpopNonces)
        } catch let refused as DPoP.Refusal {
            if refused.wantsNonce, let nonces = ctx.dpopNonces { throw nonceRefusal(nonces, now: now, resource: accessToken != nil) }
            throw refusal("The DPoP proof is invalid: \(refused.reason).", resource: accessToken != nil)
        }
    }

    /// §8: with server nonces configured, a request whose proof carries no
    /// current nonce is answered `use_dpop_nonce` before anything else is
    /// done for it: no client authentication (an assertion would be spent),
    /// no signature checked, nothing written. For the endpoints that
    /// authenticate clients and take proofs (token, PAR).
    static func demandNonce(_ request: Request, _ ctx: RequestContext) throws {
        guard let nonces = ctx.dpopNonces, let proof = request.headers[values: .dpop].first else { return }
        let now = ctx.env.now()
        guard DPoP.carriesNonce(proof, nonces: nonces, now: now) else { throw nonceRefusal(nonces, now: now, resource: false) }
    }

    /// §8, §9: `use_dpop_nonce`, with the nonce to use.
    static func nonceRefusal(_ nonces: DPoPNonces, now: Int64, resource: Bool) -> OAuthError {
        refusal("The DPoP proof must carry the nonce in DPoP-Nonce.", resource: resource, code: "use_dpop_nonce", nonce: nonces.current(now: now))
    }

    /// The proof algorithms a challenge names (§7.1).
    static let algorithms = DPoP.algorithms.map(\.rawValue).joined(separator: " ")

    /// §7.1 and §9: a 400 at the token endpoint, a 401 with a DPoP challenge
    /// at a resource; `use_dpop_nonce` carries the nonce to use (§8, §9).
    static func refusal(_ description: String, resource: Bool, code: String = "invalid_dpop_proof", nonce: String? = nil) -> OAuthError {
        var headers: [(String, String)] = nonce.map { [("DPoP-Nonce", $0)] } ?? []
        if resource { headers.append(("WWW-Authenticate", "DPoP error=\"\(code)\", algs=\"\(algorithms)\"")) }
        return OAuthError(code, status: resource ? 401 : 400, description, headers: headers)
    }

    /// §8.2 and §9: with server nonces configured, the current one rides on
    /// every successful answer to a request that carried a proof (the token
    /// and PAR endpoints, userinfo, the management and user-token APIs), so a
    /// client moves to the next nonce without meeting use_dpop_nonce.
    static func withNonce(_ response: Response, _ request: Request, _ ctx: RequestContext) -> Response {
        guard let nonces = ctx.dpopNonces, (200..<300).contains(response.status.code), response.headers[.dpopNonce] == nil,
              request.headers.contains(.dpop) else { return response }
        var r = response
        r.headers.add(.dpopNonce, nonces.current(now: ctx.env.now()))
        return r
    }

    /// §7.1: a token bound to a key is used with the DPoP scheme and a proof
    /// of that key for this request and token; a bearer use of it is refused.
    /// The DPoP scheme is for bound tokens only: an unbound one sent with it
    /// (a proof or not) is refused too, as no proof can match its key.
    /// `recording`: whether the proof's jti is recorded (a write of its own,
    /// so never inside a read); false only where the request is refused
    /// whatever follows.
    static func checkBinding(_ request: Request, _ ctx: RequestContext, token: String, claims: AccessTokenClaims, recording: Bool = true) throws {
        let dpopScheme = EndpointKit.usesDPoPScheme(request)
        guard let bound = claims.jkt else {
            if dpopScheme { throw refusal("This token is not bound to a DPoP key: use the Bearer scheme.", resource: true, code: "invalid_token") }
            return
        }
        guard dpopScheme else {
            throw refusal("This token is bound to a DPoP key: use the DPoP scheme with a proof.", resource: true, code: "invalid_token")
        }
        // A proof of any other key is refused before its jti is recorded: a stolen bound token sent with proofs of
        // the thief's own keys wrote a row each (review, session 31).
        guard let proof = try verifiedProof(request, ctx, accessToken: token), proof.jkt == bound else {
            throw refusal("A DPoP proof of the token's key is required.", resource: true)
        }
        guard recording else { return }
        // The jti is written in a transaction of its own: callers check proofs outside any read.
        guard try ctx.store.writeOne({ try ctx.store.useProof(proof) }) else { throw refusal("The DPoP proof is invalid: proof replayed.", resource: true) }
    }
}

import HTTPCore
import OAuth

/// Who may read a route's answers from a page of another origin (CORS), for
/// browser-based apps (a single-page app's code flow with PKCE: the token
/// endpoint, userinfo and revocation from its own origin, discovery and the
/// JWKS from anywhere). Never with credentials: these routes take no
/// cookies, and no answer says `Access-Control-Allow-Credentials`.
public enum CrossOrigin: Sendable {
    /// Same-origin only (the management APIs, the browser flow's own pages).
    case none
    /// Public documents (discovery, the JWKS): `*`.
    case anyone
    /// The origins of the redirect URIs of the client the answer is for,
    /// as the endpoint names them (`Response.corsOrigins`): a public
    /// client's at the token and revocation endpoints, any client's at
    /// userinfo (as node-oidc-provider and Keycloak decide it).
    case clientOrigins

    /// The answer to a preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) for a route that allows another
    /// origin, or nil when this is no such preflight. A client route's
    /// preflight is answered for any origin: only the answer to the request
    /// itself says whether that origin may read it.
    static func preflight(_ request: Request, router: Router<Endpoint>) -> Response? {
        guard request.method == .options, let origin = request.headers[.origin], isOrigin(origin),
              let asked = request.headers[.accessControlRequestMethod].flatMap({ HTTPRequest.Method($0) }),
              case let .found(endpoint, _) = router.match(method: asked, path: request.path), endpoint.crossOrigin != .none else { return nil }
        var response = Response(status: .noContent)
        response.headers[.accessControlAllowOrigin] = endpoint.crossOrigin == .anyone ? "*" : origin
        response.headers[.accessControlAllowMethods] = asked.rawValue
        response.headers[.accessControlAllowHeaders] = "Authorization, Content-Type, DPoP"
        response.headers[.accessControlMaxAge] = "600"
        response.headers[.vary] = "Origin"
        return response.noStore()
    }

    /// Adds to an answer of `endpoint`'s what lets a page of the request's origin read it, when it may.
    static func decorate(_ response: inout Response, request: Request, rule: CrossOrigin) {
        switch rule {
        case .none: return
        case .anyone: response.headers[.accessControlAllowOrigin] = "*"
        case .clientOrigins:
            response.headers.append(HTTPField(name: .vary, value: "Origin"))
            guard let origin = request.headers[.origin], response.corsOrigins.contains(normalized(origin)) else { return }
            response.headers[.accessControlAllowOrigin] = origin
            response.headers[.accessControlExposeHeaders] = "DPoP-Nonce, WWW-Authenticate"
        }
    }

    /// The origins of `client`'s redirect URIs, as `decorate` compares them, when the request came from a page (it
    /// has an `Origin`); nothing otherwise (no work for the other requests).
    static func origins(of client: Client, for request: Request) -> [String] {
        guard request.headers.contains(.origin) else { return [] }
        return client.redirectURIs.compactMap { URIRules.origin($0).map(normalized) }
    }

    /// Runs `body` on behalf of a client whose pages (`origins`) may read the answer: its error too, so that a page
    /// learns `invalid_grant` or a DPoP nonce (`use_dpop_nonce`, `DPoP-Nonce`) instead of a failed fetch.
    static func answering(for origins: [String], _ body: () throws -> Response) throws -> Response {
        do {
            var response = try body()
            response.corsOrigins = origins
            return response
        } catch {
            guard !origins.isEmpty else { throw error }
            throw ReadableBy(origins: origins, error: error)
        }
    }

    /// An endpoint's error that the client's pages may read (`answering`); the worker renders `error`.
    struct ReadableBy: Error {
        let origins: [String]
        let error: Error
    }

    /// Lowercased, without the scheme's default port (the form browsers send).
    static func normalized(_ origin: String) -> String {
        let lower = origin.lowercased()
        if lower.hasPrefix("https://"), lower.hasSuffix(":443") { return String(lower.dropLast(4)) }
        if lower.hasPrefix("http://"), lower.hasSuffix(":80") { return String(lower.dropLast(3)) }
        return lower
    }

    /// An origin as a browser serializes it: http(s), a host, maybe a port, nothing else.
    static func isOrigin(_ value: String) -> Bool {
        guard value.utf8.count <= 255, value.hasPrefix("https://") || value.hasPrefix("http://") else { return false }
        let authority = value.utf8.drop { $0 != UInt8(ascii: "/") }.dropFirst(2)
        return !authority.isEmpty && !authority.contains(UInt8(ascii: "/")) && FormPostPage.plainOrigin(value) != nil
    }
}

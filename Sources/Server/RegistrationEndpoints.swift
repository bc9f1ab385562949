import Common
import HTTPCore
import OAuth

/// `/oauth2/register` (RFC 7591, OIDC Registration 1.0) and
/// `/oauth2/register/{client_id}` (RFC 7592): JSON in and out, RFC 7591
/// §3.2.2 errors. The rules are `ClientRegistration`'s and the registry's.
enum RegistrationEndpoints {
    static func registration(_ ctx: RequestContext) -> ClientRegistration { ClientRegistration(registry: EndpointKit.registry(ctx)) }

    static func metadata(_ request: Request) throws -> JSON { .object(try EndpointKit.jsonObject(request)) }

    static func answer(_ registered: ClientRegistration.Registered, _ ctx: RequestContext, status: HTTPResponse.Status) -> Response {
        var response = Response.json(ClientRegistration.json(registered, issuer: ctx.env.issuer), status: status).noStore()
        response.headers[.pragma] = "no-cache"
        return response
    }

    /// POST /oauth2/register: with an initial access token (a client_credentials
    /// token holding `clients:write`) into its organization; without one,
    /// into the open organization, when there is one.
    static func register(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let metadata = try metadata(request)
        let caller = request.headers.value(.authorization) == nil
            ? try registration(ctx).openRegistrant(requestID: request.requestID)
            : try EndpointKit.caller(request, ctx, scopes: ["clients:write"], surface: .registration)
        return answer(try registration(ctx).register(metadata, caller: caller), ctx, status: .created)
    }

    /// The registration access token: a Bearer token (RFC 7592 §3). The DPoP
    /// scheme is for DPoP-bound access tokens, which this is not: as none.
    static func registrationToken(_ request: Request) -> String? {
        EndpointKit.usesDPoPScheme(request) ? nil : EndpointKit.bearerToken(request)
    }

    static func read(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let client = try registration(ctx).authorized(ctx.param("client_id"), token: registrationToken(request))
        return answer(ClientRegistration.Registered(client: client, secret: nil, registrationToken: nil), ctx, status: .ok)
    }

    static func replace(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let metadata = try metadata(request)
        return answer(try registration(ctx).replace(ctx.param("client_id"), token: registrationToken(request), metadata: metadata,
                                                    requestID: request.requestID), ctx,
                      status: .ok)
    }

    static func delete(_ request: Request, _ ctx: RequestContext) throws -> Response {
        try registration(ctx).delete(ctx.param("client_id"), token: registrationToken(request), requestID: request.requestID)
        return .empty()
    }

    /// RFC 7591 §3.2.2 and RFC 7592 §2: `{"error", "error_description"}`;
    /// 401 with a Bearer challenge for a missing or wrong token.
    static func render(_ error: Error, request: Request) -> Response? {
        let status: HTTPResponse.Status, code: String, text: String
        switch error {
        case let refusal as ClientRegistration.Refusal:
            switch refusal {
            case let .invalidRedirectURI(why): (status, code, text) = (.badRequest, "invalid_redirect_uri", why)
            case let .invalidMetadata(why): (status, code, text) = (.badRequest, "invalid_client_metadata", why)
            case .notAllowed: (status, code, text) = (.unauthorized, "invalid_token", "An initial access token is required.")
            case .invalidToken: (status, code, text) = (.unauthorized, "invalid_token", "The registration access token is not valid for this client.")
            case let .allowanceSpent(seconds):
                var response = Response.json(["error": "temporarily_unavailable", "error_description": .string(
                    "This server takes no more registrations without an initial access token today; try again later.")],
                    status: .tooManyRequests).noStore()
                response.headers[.retryAfter] = String(seconds)
                return response
            }
        case let p as APIProblem where p.status.kind == .clientError:
            (status, code, text) = (p.status, "invalid_client_metadata", p.detail)
        default:
            return nil
        }
        var response = Response.json(["error": .string(code), "error_description": .string(text)], status: status).noStore()
        // RFC 6750 §3.1: no error code in the challenge when no credentials were sent.
        if status == .unauthorized {
            response.headers[.wwwAuthenticate] = request.headers.value(.authorization) == nil ? "Bearer realm=\"latchkey\"" : "Bearer error=\"invalid_token\""
        }
        return response
    }
}

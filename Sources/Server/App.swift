import Common
import Cryptography
import HTTPCore
import Imaging
import OAuth
#if canImport(Glibc)
import Glibc
#endif

/// Which API a route belongs to: decides the shape of its error responses.
public enum Surface: String, Sendable, CaseIterable {
    case oauth
    /// A bearer-protected resource of the OAuth family (userinfo): RFC 6750 errors.
    case bearer
    case native
    case system
    /// SPEC 6.2, `/external/v1/oauth`.
    case integration
    /// SPEC 6.3, `/v3/oauth-clients`.
    case identity
    /// SPEC 6.4, `/api/oauth`.
    case app
    /// SPEC 6.5, `/uc/resources/oauthclient`.
    case upstream
    /// RFC 7591/7592, `/oauth2/register`.
    case registration
}

public typealias Handler = @Sendable (Request, RequestContext) throws -> Response

/// A route's handler and the surface whose error shape it answers in.
public struct Endpoint: Sendable {
    public let surface: Surface
    public let maxBody: Int
    public let handler: Handler
    /// The route's pattern (`/api/v1/clients/{id}`): the metrics' label.
    public var pattern: String = ""
    /// Who may read its answers from a page of another origin.
    public var crossOrigin: CrossOrigin = .none
}

/// What a handler gets besides the request: the environment and this
/// thread's store, key ring and caches, plus the path captures.
public struct RequestContext {
    public let env: Environment
    public let store: Store
    public let keys: KeyRing
    public let hasher: SecretHasher
    /// The process's slow-hash pool, failure limits and verified-secret cache (SPEC 7.1).
    public let guards: AbuseGuards
    /// Where logos are decoded (in a child process under `serve`).
    public let images: ImageReencoder
    public let tokenCache = VerifiedTokenCache()
    public let metrics: Metrics
    /// Server DPoP nonces, when the environment asks for them.
    public var dpopNonces: DPoPNonces?
    public var pathParams: [String: String] = [:]

    public var tokens: TokenService { TokenService(env: env, store: store, keys: keys, cache: tokenCache) }
    /// Client authentication for a request from `request`'s address.
    public func clientAuthenticator(_ request: Request) -> ClientAuthenticator {
        ClientAuthenticator(env: env, store: store, hasher: hasher, guards: guards, address: request.remoteAddress, endpoint: env.issuer + request.path)
    }

    public func param(_ name: String) -> String { pathParams[name] ?? "" }
}

/// Shared, immutable server state: the route table and process-wide caches.
public final class Application: Sendable {
    public let env: Environment
    public let router: Router<Endpoint>
    public let guards: AbuseGuards
    public let images: ImageReencoder
    public let logger: Logger
    public let metrics: Metrics

    public init(env: Environment, logger: Logger = Logger(), guards: AbuseGuards = AbuseGuards(), images: ImageReencoder = .inProcess,
                metrics: Metrics = Metrics()) {
        self.env = env
        self.logger = logger
        self.metrics = metrics
        self.guards = guards
        self.images = images
        var router = Router<Endpoint>()
        Routes.register(&router)
        self.router = router
    }
}

/// One worker thread's view of the application: owns its store connection.
public final class Worker {
    public let app: Application
    public let context: RequestContext

    public init(app: Application, store: Store) throws {
        self.app = app
        let keys = KeyRing(store: store, env: app.env)
        let hasher = try Provisioning.secretHasher(store: store, env: app.env)
        var context = RequestContext(env: app.env, store: store, keys: keys, hasher: hasher, guards: app.guards, images: app.images, metrics: app.metrics)
        if app.env.dpopNonces { context.dpopNonces = DPoPNonces(hasher: hasher) }
        self.context = context
    }

    /// Brackets requests that all arrived before the first was handled (`Store.beginBatch`).
    public func beginBatch() { context.store.beginBatch() }
    public func endBatch() { context.store.endBatch() }

    /// Routes, runs and answers one request; never throws, never leaks an
    /// internal error's text, always sets `X-Request-Id`.
    public func handle(_ request: Request) -> Response {
        let started = app.env.now()
        app.metrics.started()
        context.store.beginRequest(abandoned: request.abandoned)
        defer { context.store.endRequest() }
        var response: Response
        var failure: String?
        var route = "unmatched"
        let match = app.router.match(method: request.method, path: request.path)
        if case let .found(endpoint, _) = match { route = endpoint.pattern }
        // A request that waited for a worker until nginx gave it up (its read timeout: a client that leaves does not
        // close the connection, `fastcgi_ignore_client_abort on`) is not run: nobody will read the answer, and what it
        // would write (a rotated refresh token, a redeemed code) would be lost to its client, whose retry then fails
        // or ends the grant (storage-fault review, session 33). 499, as nginx logs a request its client closed.
        let abandoned = request.abandoned()
        if abandoned {
            response = Response(status: .init(code: 499))
            failure = "nginx closed the connection before the request was handled: not run"
        } else if let preflight = CrossOrigin.preflight(request, router: app.router) {
            response = preflight
        } else {
            (response, failure) = run(request, match)
            if case let .found(endpoint, _) = match { CrossOrigin.decorate(&response, request: request, rule: endpoint.crossOrigin) }
        }
        response.headers[.xRequestID] = request.requestID
        // Nothing a worker answers is stored by a cache unless its endpoint says so (the JWKS, discovery, logos):
        // one user's data on a surface that forgot `noStore()` stays out of shared caches all the same.
        if !response.headers.contains(.cacheControl) { response.headers[.cacheControl] = "no-store" }
        if request.method == .head { response.body = [] }
        // Failures this node counted go to the counts every node shares, outside the request's transaction, carried
        // by a request that failed, one transaction of at most 128 keys at most (a flood of wrong secrets pays for
        // its own writes; a successful request never waits).
        if response.status.code >= 400, !abandoned { app.guards.failures.flush(to: context.store, now: app.env.now(), batches: 1) }
        let millis = app.env.now() - started
        app.metrics.finished(route: route, status: response.status.code, millis: millis)
        app.logger.request(request, status: response.status.code, millis: millis, failure: failure)
        return response
    }

    /// The matched route's answer (or the router's 404, 405, 413), and what failed, for the log.
    private func run(_ request: Request, _ match: Router<Endpoint>.Match) -> (Response, String?) {
        var response: Response
        var failure: String?
        switch match {
        case .notFound:
            response = ErrorRendering.render(APIProblem.notFound(), surface: .native, request: request)
        case let .methodNotAllowed(allowed):
            response = ErrorRendering.render(APIProblem(status: 405, code: "method_not_allowed", title: "Method not allowed",
                                                        detail: "This resource does not support \(request.method)."),
                                             surface: .native, request: request)
            response.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
        case let .found(endpoint, params):
            if request.bodyTooLarge || request.body.count > endpoint.maxBody {
                response = ErrorRendering.render(APIProblem(status: 413, code: "body_too_large", title: "Request body too large",
                                                            detail: "The request body exceeds \(endpoint.maxBody) bytes."),
                                                 surface: endpoint.surface, request: request)
            } else {
                var context = self.context
                context.pathParams = params
                do {
                    response = DPoPEndpoint.withNonce(try endpoint.handler(request, context), request, context)
                } catch let thrown {
                    let readable = thrown as? CrossOrigin.ReadableBy
                    let error = readable?.error ?? thrown
                    failure = "\(error)"
                    if let cause = (error as? StoreError)?.refusalCause { app.metrics.storeRefused(cause) }
                    // A write rolled back because nginx gave the request up: nobody reads the answer; 499 as above.
                    response = error as? StoreError == .abandoned ? Response(status: .init(code: 499))
                        : ErrorRendering.render(error, surface: endpoint.surface, request: request)
                    response.corsOrigins = readable?.origins ?? []
                }
            }
        }
        return (response, failure)
    }
}


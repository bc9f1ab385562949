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
}

public typealias Handler = @Sendable (Request, RequestContext) throws -> Response

/// A route's handler and the surface whose error shape it answers in.
public struct Endpoint: Sendable {
    public let surface: Surface
    public let maxBody: Int
    public let handler: Handler
    /// The route's pattern (`/api/v1/clients/{id}`): the metrics' label.
    public var pattern: String = ""
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
    public var pathParams: [String: String] = [:]

    public var tokens: TokenService { TokenService(env: env, store: store, keys: keys, cache: tokenCache) }
    /// Client authentication for a request from `request`'s address.
    public func clientAuthenticator(_ request: Request) -> ClientAuthenticator {
        ClientAuthenticator(env: env, store: store, hasher: hasher, guards: guards, address: request.remoteAddress)
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
        context = RequestContext(env: app.env, store: store, keys: keys, hasher: hasher, guards: app.guards, images: app.images, metrics: app.metrics)
    }

    /// Routes, runs and answers one request; never throws, never leaks an
    /// internal error's text, always sets `X-Request-Id`.
    public func handle(_ request: Request) -> Response {
        let started = app.env.now()
        app.metrics.started()
        context.store.beginRequest()
        defer { context.store.endRequest() }
        var response: Response
        var failure: String?
        var route = "unmatched"
        switch app.router.match(method: request.method, path: request.path) {
        case .notFound:
            response = ErrorRendering.render(APIProblem.notFound(), surface: .native, request: request)
        case let .methodNotAllowed(allowed):
            response = ErrorRendering.render(APIProblem(status: 405, code: "method_not_allowed", title: "Method not allowed",
                                                        detail: "This resource does not support \(request.method)."),
                                             surface: .native, request: request)
            response.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
        case let .found(endpoint, params):
            route = endpoint.pattern
            if request.bodyTooLarge || request.body.count > endpoint.maxBody {
                response = ErrorRendering.render(APIProblem(status: 413, code: "body_too_large", title: "Request body too large",
                                                            detail: "The request body exceeds \(endpoint.maxBody) bytes."),
                                                 surface: endpoint.surface, request: request)
            } else {
                var context = self.context
                context.pathParams = params
                do {
                    response = try endpoint.handler(request, context)
                } catch {
                    failure = "\(error)"
                    response = ErrorRendering.render(error, surface: endpoint.surface, request: request)
                }
            }
        }
        response.headers[.xRequestID] = request.requestID
        if request.method == .head { response.body = [] }
        let millis = app.env.now() - started
        app.metrics.finished(route: route, status: response.status.code, millis: millis)
        app.logger.request(request, status: response.status.code, millis: millis, failure: failure)
        return response
    }
}

/// One JSON line per event on stderr. Only the method, the path, the status
/// and error causes are logged: never the query string, a header or a body,
/// which is where secrets, tokens and codes travel.
///
/// Requests are logged by outcome: a 5xx at `error`, a 4xx at `info`
/// (refused credentials, a reused refresh token, unknown ids: what an
/// operator looks for), each with its cause (an error's log-only detail and
/// where it was thrown; public text otherwise, never a secret), a success
/// at `debug`. nginx's access log already has every request with
/// its request id, and at thousands of requests a second a line per success
/// would cost the worker a write each and swamp journald (which drops lines
/// past its rate limit anyway).
public struct Logger: Sendable {
    public enum Level: Int, Sendable, Comparable, CaseIterable {
        case debug, info, warn, error, off

        public init?(name: String) {
            switch name.lowercased() {
            case "debug": self = .debug
            case "info": self = .info
            case "warn", "warning": self = .warn
            case "error": self = .error
            case "off", "none": self = .off
            default: return nil
            }
        }

        public var name: String { ["debug", "info", "warn", "error", "off"][rawValue] }

        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
    }

    public typealias Sink = @Sendable ([UInt8]) -> Void

    public let level: Level
    let sink: Sink

    /// Writes each line with one `write(2)` on fd 2 (whole lines: several
    /// threads share the descriptor).
    public static let standardError: Sink = { bytes in
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    public init(level: Level = .info, sink: @escaping Sink = Logger.standardError) {
        self.level = level
        self.sink = sink
    }

    /// The level a request's line is logged at.
    public static func level(forStatus status: Int) -> Level {
        status >= 500 ? .error : status >= 400 ? .info : .debug
    }

    public func logs(_ level: Level) -> Bool { level != .off && level >= self.level }

    public func request(_ request: Request, status: Int, millis: Int64, failure: String?) {
        let lineLevel = Logger.level(forStatus: status)
        guard logs(lineLevel) else { return }
        var line: JSON = [
            "level": .string(lineLevel.name), "request_id": .string(request.requestID), "method": .string(request.method.rawValue),
            "path": .string(String(Logger.redacted(request.path).prefix(200))), "status": .int(Int64(status)), "ms": .int(millis),
        ]
        if let failure { line.set("error", .string(String(Logger.redacted(failure).prefix(500)))) }
        emit(line)
    }

    /// The text with anything shaped like a Latchkey credential (`lks_`
    /// secrets, `lkr_` refresh tokens, `lkc_` codes and the like) or a JWT
    /// replaced: a path or an error's text may echo what a caller sent, and
    /// a caller may send a credential where it does not belong.
    public static func redacted(_ text: String) -> String {
        func isTokenByte(_ b: UInt8) -> Bool {
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F || b == 0x2E
        }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        var changed = false
        var i = 0
        while i < bytes.count {
            guard isTokenByte(bytes[i]) else {
                out.append(bytes[i])
                i += 1
                continue
            }
            // A whole word of token characters.
            var end = i
            while end < bytes.count, isTokenByte(bytes[end]) { end += 1 }
            let word = Array(bytes[i..<end])
            i = end
            if word.count >= 12, word.starts(with: Array("lk".utf8)), word[2] >= 0x61, word[2] <= 0x7A, word[3] == 0x5F {
                // "[redacted lks]": the kind of credential, without the prefix secret scanners look for.
                out += Array("[redacted ".utf8) + word.prefix(3) + [0x5D]
            } else if word.count >= 16, word.starts(with: Array("eyJ".utf8)), word.contains(0x2E) {
                out += Array("[redacted JWT]".utf8)
            } else {
                out += word
                continue
            }
            changed = true
        }
        return changed ? String(decoding: out, as: UTF8.self) : text
    }

    public func info(_ message: String, _ fields: [(String, JSON)] = []) {
        guard logs(.info) else { return }
        emit(.object([("level", "info"), ("message", .string(message))] + fields))
    }

    func emit(_ line: JSON) {
        var bytes = line.serialized()
        bytes.append(10)
        sink(bytes)
    }
}

import Common
import HTTPCore
import OAuth

/// An error of the native management API, rendered as RFC 9457 problem
/// details with a machine-readable `code` and per-field `errors`.
public struct APIProblem: Error, Equatable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var code: String
    public var title: String
    public var detail: String
    public var fieldErrors: [(field: String, message: String)]
    public var headers: HTTPFields

    public init(status: HTTPResponse.Status, code: String, title: String, detail: String, fieldErrors: [(field: String, message: String)] = [],
                headers: HTTPFields = HTTPFields()) {
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.fieldErrors = fieldErrors
        self.headers = headers
    }

    public static func == (lhs: APIProblem, rhs: APIProblem) -> Bool { lhs.status == rhs.status && lhs.code == rhs.code }
    public var description: String { "\(status) \(code): \(detail)" }

    public static func notFound(_ detail: String = "The resource does not exist.") -> APIProblem {
        APIProblem(status: 404, code: "not_found", title: "Not found", detail: detail)
    }
    public static func invalidBody(_ detail: String) -> APIProblem {
        APIProblem(status: 400, code: "invalid_body", title: "Invalid request body", detail: detail)
    }
    public static func invalidField(_ field: String, _ message: String) -> APIProblem {
        APIProblem(status: 400, code: "invalid_field", title: "Invalid field", detail: "\(field): \(message)", fieldErrors: [(field, message)])
    }
    public static func unsupportedMediaType(_ expected: String) -> APIProblem {
        APIProblem(status: 415, code: "unsupported_media_type", title: "Unsupported media type", detail: "The body must be \(expected).")
    }
    public static func conflict(_ code: String, _ detail: String) -> APIProblem {
        APIProblem(status: 409, code: code, title: "Conflict", detail: detail)
    }
    public static func forbidden(_ code: String, _ detail: String) -> APIProblem {
        APIProblem(status: 403, code: code, title: "Forbidden", detail: detail)
    }
}

/// The one place where errors become responses, per surface.
public enum ErrorRendering {
    /// SPEC 2: error bodies repeat the request id; an OAuth error object
    /// (RFC 6749 §5.2) gains it as one more member, which clients ignore.
    static func withRequestID(_ body: JSON, _ request: Request) -> JSON {
        guard case var .object(members) = body, !request.requestID.isEmpty else { return body }
        members.append(("request_id", .string(request.requestID)))
        return .object(members)
    }

    public static func render(_ error: Error, surface: Surface, request: Request) -> Response {
        if let response = renderRetryLater(error, surface: surface, request: request) { return response }
        if let response = renderCompatible(error, surface: surface, request: request) { return response }
        switch (error, surface) {
        case let (e as OAuthError, .oauth), let (e as OAuthError, .bearer), let (e as OAuthError, .registration):
            var response = Response.json(withRequestID(e.json, request), status: .init(code: e.status)).noStore()
            response.headers.append(contentsOf: HTTPFields(e.headers))
            return response
        case let (e as OAuthError, _):
            // Bearer failures on an API: the RFC 6750 challenge plus the API's own body shape.
            var problem = APIProblem(status: .init(code: e.status), code: e.code, title: e.status == 401 ? "Unauthorized" : "Forbidden",
                                     detail: e.publicDescription, headers: HTTPFields(e.headers))
            if e.status == 503 { problem.title = "Service unavailable" }
            return problemResponse(problem, request: request)
        case let (e as APIProblem, .oauth):
            return Response.json(withRequestID(["error": e.status == 413 ? "invalid_request" : .string(e.code), "error_description": .string(e.detail)],
                                               request), status: e.status)
        case let (e as APIProblem, _):
            return problemResponse(e, request: request)
        case let (e as RegistryError, _):
            return render(problem(e), surface: surface, request: request)
        case (StoreError.invalidText, _):
            return render(APIProblem(status: 400, code: "invalid_request", title: "Invalid request", detail: "A value holds a NUL character."),
                          surface: surface, request: request)
        case let (StoreError.conflict(message), _):
            _ = message
            return render(APIProblem.conflict("conflict", "The write conflicts with existing data."), surface: surface, request: request)
        default:
            if surface == .oauth {
                return Response.json(withRequestID(["error": "server_error", "error_description": "An internal error occurred."], request), status: 500)
            }
            return problemResponse(APIProblem(status: 500, code: "internal_error", title: "Internal server error",
                                              detail: "An internal error occurred; the request id identifies it in the logs."), request: request)
        }
    }

    /// True for what a retry may cure: the database busy or away (SPEC 7,
    /// 9), every slow-hash or image permit taken (SPEC 7.1).
    static func isUnavailable(_ error: Error) -> Bool {
        switch error {
        case is SlowHashesBusy: return true
        case let e as StoreError: return e.isTransient
        default: return false
        }
    }

    /// The answers to "not now", chosen here for every surface: 429 past a
    /// failure limit (SPEC 7.1) and 503 when the server cannot serve the
    /// request yet (`isUnavailable`), both with `Retry-After` and no-store.
    /// A surface's 503 has the shape of its 429: problem details on the
    /// native API, text on the upstream surface, and on every other surface
    /// the JSON that nginx's own 429 uses (callers of those surfaces already
    /// meet it), whose `error` member is also OAuth's error shape.
    static func renderRetryLater(_ error: Error, surface: Surface, request: Request) -> Response? {
        let status: HTTPResponse.Status, code: String, text: String, retry: Int
        if let e = error as? TooManyFailures {
            (status, code, text, retry) = (.tooManyRequests, "rate_limited",
                                           "Too many \(e.changes ? "changes" : "failed attempts"); retry after the number of seconds in Retry-After.",
                                           e.retryAfterSeconds)
        } else if isUnavailable(error) {
            // A storage fault (disk full, read-only) lasts until someone clears it: retried every second, it would only add load.
            let fault = if case .fault = error as? StoreError { true } else { false }
            (status, code, text, retry) = (.serviceUnavailable, surface == .native || surface == .system ? "busy" : "temporarily_unavailable",
                                           fault ? "The server cannot do this now; retry later." : "The server is busy; retry shortly.", fault ? 5 : 1)
        } else {
            return nil
        }
        var response: Response
        switch surface {
        case .native, .system:
            response = problemResponse(APIProblem(status: status, code: code, title: status == .tooManyRequests ? "Too many requests" : "Service unavailable",
                                                  detail: text), request: request)
        case .upstream:
            response = .text(text, status: status)
        default:
            response = .json(["error": .string(code), "error_description": .string(text), "request_id": .string(request.requestID)], status: status)
        }
        response.headers[.retryAfter] = String(max(1, retry))
        return response.noStore()
    }

    /// The compatible surfaces answer in their sources' shapes; nil falls back
    /// to the native rendering (busy, internal errors).
    static func renderCompatible(_ error: Error, surface: Surface, request: Request) -> Response? {
        switch surface {
        case .integration: return IntegrationSurface.render(error, request: request)
        case .app: return AppSurface.render(error, request: request)
        case .identity: return IdentitySurface.render(error, request: request)
        case .upstream: return UpstreamSurface.render(error, request: request)
        case .registration: return RegistrationEndpoints.render(error, request: request)
        default: return nil
        }
    }

    static func problem(_ e: RegistryError) -> APIProblem {
        switch e {
        case .notFound:
            return .notFound()
        case let .invalid(errors):
            return APIProblem(status: 400, code: "invalid_field", title: "Invalid field",
                              detail: errors.map { "\($0.field): \($0.message)" }.joined(separator: "; "),
                              fieldErrors: errors.map { ($0.field, $0.message) })
        case let .forbidden(why):
            return APIProblem(status: 403, code: why.code, title: "Forbidden", detail: why.message)
        case let .conflict(why):
            return APIProblem(status: 409, code: why.code, title: "Conflict", detail: why.message)
        case .preconditionFailed:
            return APIProblem(status: 412, code: "precondition_failed", title: "Precondition failed",
                              detail: "If-Match does not name the client's current version.")
        }
    }

    static func problemResponse(_ p: APIProblem, request: Request) -> Response {
        var members: [(String, JSON)] = [
            ("type", .string(p.status == 500 ? "about:blank" : "https://latchkey.dev/problems/\(p.code)")), ("title", .string(p.title)),
            ("status", .int(Int64(p.status.code))), ("detail", .string(p.detail)), ("code", .string(p.code)), ("request_id", .string(request.requestID)),
        ]
        if !p.fieldErrors.isEmpty {
            members.append(("errors", .array(p.fieldErrors.map { ["field": .string($0.field), "message": .string($0.message)] })))
        }
        var response = Response.json(.object(members), status: p.status, contentType: "application/problem+json")
        for field in p.headers { response.headers[field.name] = field.value }
        return response
    }
}

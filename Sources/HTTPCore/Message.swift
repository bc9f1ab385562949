import Common
@_exported import HTTPTypes

/// Header names Latchkey uses that swift-http-types does not predefine.
extension HTTPField.Name {
    public static let xRequestID = HTTPField.Name("X-Request-Id")!
    public static let xTotalCount = HTTPField.Name("X-Total-Count")!
    public static let xCSRFToken = HTTPField.Name("X-CSRF-Token")!
    /// RFC 9449 §4.1: a DPoP proof.
    public static let dpop = HTTPField.Name("DPoP")!
    public static let dpopNonce = HTTPField.Name("DPoP-Nonce")!
    public static let pragma = HTTPField.Name("Pragma")!
}

extension HTTPFields {
    /// Fields from name/value pairs; pairs whose name is not a valid token are dropped.
    public init(_ pairs: [(String, String)]) {
        self.init()
        append(contentsOf: pairs.compactMap { pair in HTTPField.Name(pair.0).map { HTTPField(name: $0, value: pair.1) } })
    }

    public mutating func add(_ name: HTTPField.Name, _ value: String) { append(contentsOf: CollectionOfOne(HTTPField(name: name, value: value))) }

    /// `self[name]` (several fields joined with ", "), read in one pass
    /// without the generic lazy join the subscript takes, which costs more
    /// than the rest of a header read: the request path reads headers with
    /// this (callgrind, README "Benchmarks").
    @inlinable
    public func value(_ name: HTTPField.Name) -> String? {
        var found: String?
        for field in self where field.name == name {
            found = found.map { $0 + (name == .cookie ? "; " : ", ") + field.value } ?? field.value
        }
        return found
    }
}

/// A fully buffered HTTP request, as a plain value.
public struct Request: Sendable {
    public var method: HTTPRequest.Method
    /// The decoded, normalised path (nginx's `$document_uri`).
    public var path: String
    /// The raw query string, without '?'.
    public var query: String
    public var headers: HTTPFields
    public var body: [UInt8]
    /// True when the body was over the worker's limit and was not read.
    public var bodyTooLarge: Bool
    public var scheme: String
    public var remoteAddress: String
    public var requestID: String
    /// Whether nobody awaits the answer any more: nginx closed the connection (its read timeout passed). Asked before a
    /// request is handled and before a write that waited commits.
    public var abandoned: @Sendable () -> Bool = { false }

    public init(method: HTTPRequest.Method, path: String, query: String = "", headers: HTTPFields = HTTPFields(), body: [UInt8] = [],
                bodyTooLarge: Bool = false, scheme: String = "http", remoteAddress: String = "127.0.0.1", requestID: String = "test") {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.bodyTooLarge = bodyTooLarge
        self.scheme = scheme
        self.remoteAddress = remoteAddress
        self.requestID = requestID
    }

    /// Query parameters; nil when the query string is not valid percent-encoding.
    public var queryItems: [(String, String)]? { FormEncoding.parse(query) }

    public func queryValue(_ name: String) -> String? { queryItems?.first(where: { $0.0 == name })?.1 }

    /// The media type of the body, lowercased, without parameters.
    public var mediaType: String? {
        guard let value = headers.value(.contentType), !value.isEmpty else { return nil }
        // The usual case, lowercase ASCII without parameters or blanks, is the value itself.
        if value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x80 && $0 != UInt8(ascii: ";") && !($0 >= 65 && $0 <= 90) }) { return value }
        let bytes = Array(value.utf8)
        var end = bytes.firstIndex(of: UInt8(ascii: ";")) ?? bytes.count
        var start = 0
        while start < end && (bytes[start] == 0x20 || bytes[start] == 0x09) { start += 1 }
        while end > start && (bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09) { end -= 1 }
        var lowered = [UInt8](repeating: 0, count: end - start)
        for i in start..<end {
            let b = bytes[i]
            // Non-ASCII: let Unicode lowercasing decide, as before.
            guard b < 0x80 else { return String(decoding: bytes[start..<end], as: UTF8.self).lowercased() }
            lowered[i - start] = b >= 65 && b <= 90 ? b + 32 : b
        }
        return String(decoding: lowered, as: UTF8.self)
    }

    public var cookies: [String: String] { Cookies.parse(headers[values: .cookie]) }
}

/// An HTTP response as a plain value.
public struct Response: Sendable {
    public var status: HTTPResponse.Status
    public var headers: HTTPFields
    public var body: [UInt8]
    /// The origins a page may read this answer from (CORS), named by the endpoint for the client the answer is for;
    /// the worker turns them into headers where the route allows it.
    public var corsOrigins: [String] = []

    public init(status: HTTPResponse.Status, headers: HTTPFields = HTTPFields(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func json(_ value: JSON, status: HTTPResponse.Status = .ok, contentType: String = "application/json") -> Response {
        Response(status: status, headers: fields(.contentType, contentType), body: value.serialized())
    }

    /// A JSON body already serialized (`JSONObjectWriter`).
    public static func json(serialized body: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: fields(.contentType, "application/json"), body: body)
    }

    /// One field, with room for the handful a response gets on its way out
    /// (cache, request id, security headers) without regrowing.
    static func fields(_ name: HTTPField.Name, _ value: String) -> HTTPFields {
        var fields = HTTPFields()
        fields.reserveCapacity(6)
        fields.add(name, value)
        return fields
    }

    public static func text(_ text: String, status: HTTPResponse.Status, contentType: String = "text/plain; charset=utf-8") -> Response {
        Response(status: status, headers: fields(.contentType, contentType), body: Array(text.utf8))
    }

    public static func empty(_ status: HTTPResponse.Status = .noContent) -> Response { Response(status: status) }

    public static func redirect(_ location: String, status: HTTPResponse.Status = .found) -> Response {
        Response(status: status, headers: [.location: location, .cacheControl: "no-store"])
    }

    /// The same response, never to be stored by a cache (RFC 9111 §5.2.2.5):
    /// what carries a secret, a token, a code or one user's data.
    public func noStore() -> Response {
        var response = self
        response.headers[.cacheControl] = "no-store"
        return response
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
    public var json: JSON? { try? JSON.parse(body) }
}

extension Substring {
    /// Without leading and trailing spaces and tabs (HTTP's OWS), found by byte.
    public func trimmingSpaces() -> String {
        let bytes = utf8
        var start = bytes.startIndex, end = bytes.endIndex
        while start != end && (bytes[start] == 0x20 || bytes[start] == 0x09) { start = bytes.index(after: start) }
        while start != end {
            let last = bytes.index(before: end)
            guard bytes[last] == 0x20 || bytes[last] == 0x09 else { break }
            end = last
        }
        return String(Substring(bytes[start..<end]))
    }
}

extension String {
    public func trimmingSpaces() -> String { self[...].trimmingSpaces() }
}

extension HTTPResponse.Status {
    /// The reason phrase for the CGI `Status:` line (a status made from a bare code has none).
    public var reason: String {
        if !reasonPhrase.isEmpty { return reasonPhrase }
        switch code {
        case 200: return "OK"
        case 201: return "Created"
        case 204: return "No Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 303: return "See Other"
        case 304: return "Not Modified"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 406: return "Not Acceptable"
        case 409: return "Conflict"
        case 411: return "Length Required"
        case 412: return "Precondition Failed"
        case 413: return "Content Too Large"
        case 415: return "Unsupported Media Type"
        case 422: return "Unprocessable Content"
        case 428: return "Precondition Required"
        case 429: return "Too Many Requests"
        case 500: return "Internal Server Error"
        case 503: return "Service Unavailable"
        default: return "Status \(code)"
        }
    }
}

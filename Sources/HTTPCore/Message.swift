import Common

/// HTTP header fields in order, looked up case-insensitively.
public struct Headers: Sendable, Sequence {
    public private(set) var fields: [(name: String, value: String)] = []

    public init(_ fields: [(String, String)] = []) {
        self.fields = fields.map { (name: $0.0, value: $0.1) }
    }

    public subscript(name: String) -> String? {
        get { fields.first(where: { Headers.same($0.name, name) })?.value }
        set {
            fields.removeAll { Headers.same($0.name, name) }
            if let newValue { fields.append((name: name, value: newValue)) }
        }
    }

    public func values(_ name: String) -> [String] {
        fields.filter { Headers.same($0.name, name) }.map(\.value)
    }

    /// ASCII case-insensitive equality of header names.
    static func same(_ a: String, _ b: String) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        for (x, y) in zip(a.utf8, b.utf8) where x != y {
            let lower = x | 0x20
            if lower != (y | 0x20) || lower < 97 || lower > 122 { return false }
        }
        return true
    }

    public mutating func add(_ name: String, _ value: String) { fields.append((name: name, value: value)) }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }
}

/// A fully buffered HTTP request, as a plain value.
public struct Request: Sendable {
    public var method: String
    /// The decoded, normalised path (nginx's `$document_uri`).
    public var path: String
    /// The raw query string, without '?'.
    public var query: String
    public var headers: Headers
    public var body: [UInt8]
    /// True when the body was over the worker's limit and was not read.
    public var bodyTooLarge: Bool
    public var scheme: String
    public var remoteAddress: String
    public var requestID: String

    public init(method: String, path: String, query: String = "", headers: Headers = Headers(), body: [UInt8] = [],
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
        guard let value = headers["Content-Type"], !value.isEmpty else { return nil }
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

    public var cookies: [String: String] { Cookies.parse(headers.values("Cookie")) }
}

/// An HTTP response as a plain value.
public struct Response: Sendable {
    public var status: Int
    public var headers: Headers
    public var body: [UInt8]

    public init(status: Int, headers: Headers = Headers(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func json(_ value: JSON, status: Int = 200, contentType: String = "application/json") -> Response {
        Response(status: status, headers: Headers([("Content-Type", contentType)]), body: value.serialized())
    }

    public static func text(_ text: String, status: Int, contentType: String = "text/plain; charset=utf-8") -> Response {
        Response(status: status, headers: Headers([("Content-Type", contentType)]), body: Array(text.utf8))
    }

    public static func empty(_ status: Int = 204) -> Response { Response(status: status) }

    public static func redirect(_ location: String, status: Int = 302) -> Response {
        Response(status: status, headers: Headers([("Location", location), ("Cache-Control", "no-store")]))
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
    public var json: JSON? { try? JSON.parse(body) }
}

extension Substring {
    public func trimmingSpaces() -> String {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}

extension String {
    public func trimmingSpaces() -> String { self[...].trimmingSpaces() }
}

public enum HTTPStatus {
    public static func reason(_ code: Int) -> String {
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

import Common

/// Pure mapping between CGI/FastCGI parameters and `Request`/`Response`
/// values (RFC 3875), so the transport code stays tiny and this part is
/// unit-tested without sockets.
public enum CGI {
    /// Builds a request from FastCGI parameters. `body == nil` means the body
    /// was over the limit and was discarded.
    public static func request(params: [String: String], body: [UInt8]?, generateID: () -> String) -> Request {
        var headers = HTTPFields()
        headers.reserveCapacity(CGI.headersRead.count + 2)
        for (parameter, name) in CGI.headersRead {
            if let value = params[parameter] { headers.add(name, value) }
        }
        if let type = params["CONTENT_TYPE"], !type.isEmpty { headers.add(.contentType, type) }
        if let length = params["CONTENT_LENGTH"], !length.isEmpty { headers.add(.contentLength, length) }
        var path = params["DOCUMENT_URI"] ?? ""
        if path.isEmpty {
            let uri = params["REQUEST_URI"] ?? "/"
            path = String(uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "/")
        }
        var requestID = params["REQUEST_ID"] ?? ""
        if !isValidRequestID(requestID) { requestID = generateID() }
        return Request(
            // A method that is not a token cannot reach a handler: it is answered 405.
            method: HTTPRequest.Method((params["REQUEST_METHOD"] ?? "GET").uppercased()) ?? CGI.invalidMethod,
            path: path.isEmpty ? "/" : path,
            query: params["QUERY_STRING"] ?? "",
            headers: headers,
            body: body ?? [],
            bodyTooLarge: body == nil,
            scheme: params["HTTPS"].map { $0.lowercased() == "on" } == true ? "https" : (params["REQUEST_SCHEME"] ?? "http"),
            remoteAddress: params["REMOTE_ADDR"] ?? "",
            requestID: requestID)
    }

    static let invalidMethod = HTTPRequest.Method("INVALID")!

    /// Every CGI parameter `request` reads: the FastCGI pool copies only
    /// these (`FastCGIServer.parameters`). A test reads this file for
    /// `params["..."]` and checks each name is here.
    public static let parametersRead: Set<String> = Set(headersRead.keys).union([
        "CONTENT_TYPE", "CONTENT_LENGTH", "DOCUMENT_URI", "REQUEST_URI", "REQUEST_ID", "REQUEST_METHOD", "QUERY_STRING",
        "HTTPS", "REQUEST_SCHEME", "REMOTE_ADDR",
    ])

    /// The request header fields a handler reads, by the CGI parameter nginx
    /// sends them in; the others (Host, User-Agent, Proxy, ...) are not
    /// carried. Each field costs a validation and a copy (HTTPField), which
    /// for every header nginx passes was the largest part of mapping a
    /// request (callgrind), and a header nobody reads is input nobody needs
    /// to parse. A handler that reads a new header adds it here; a test
    /// (`everyHeaderAHandlerReadsIsCarried`) checks the sources for it.
    /// Content-Type and Content-Length come from their CGI variables.
    public static let headersRead: [String: HTTPField.Name] = [
        "HTTP_AUTHORIZATION": .authorization,
        "HTTP_COOKIE": .cookie,
        "HTTP_X_CSRF_TOKEN": .xCSRFToken,
        "HTTP_IF_MATCH": .ifMatch,
        "HTTP_IF_NONE_MATCH": .ifNoneMatch,
        "HTTP_ACCEPT": .accept,
        "HTTP_DPOP": .dpop,
        // CORS (browser-based apps): the page's origin, and what a preflight asks for.
        "HTTP_ORIGIN": .origin,
        "HTTP_ACCESS_CONTROL_REQUEST_METHOD": .accessControlRequestMethod,
    ]

    static func isValidRequestID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.utf8.allSatisfy { b in
            (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == 45 || b == 95
        }
    }

    /// Serialises a response as CGI output: `Status:`, headers, blank line, body.
    /// Header values with CR or LF are dropped (no response splitting).
    public static func bytes(_ response: Response) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(response.body.count + 256)
        // Appended piece by piece: an interpolated line per header cost a string and an array each.
        out.append(contentsOf: "Status: ".utf8)
        out.append(contentsOf: String(response.status.code).utf8)
        out.append(0x20)
        out.append(contentsOf: response.status.reason.utf8)
        out.append(contentsOf: [13, 10])
        for field in response.headers {
            // HTTPField already replaces CR, LF and NUL in values and names are tokens; checked again at the wire.
            if field.value.utf8.contains(where: { $0 == 13 || $0 == 10 }) { continue }
            out.append(contentsOf: field.name.rawName.utf8)
            out.append(contentsOf: ": ".utf8)
            out.append(contentsOf: field.value.utf8)
            out.append(contentsOf: [13, 10])
        }
        out.append(contentsOf: [13, 10])
        out.append(contentsOf: response.body)
        return out
    }
}

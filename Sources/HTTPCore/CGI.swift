import Common

/// Pure mapping between CGI/FastCGI parameters and `Request`/`Response`
/// values (RFC 3875), so the transport code stays tiny and this part is
/// unit-tested without sockets.
public enum CGI {
    /// Builds a request from FastCGI parameters. `body == nil` means the body
    /// was over the limit and was discarded.
    public static func request(params: [String: String], body: [UInt8]?, generateID: () -> String) -> Request {
        var headers = HTTPFields()
        for (name, value) in params where name.utf8.count > 5 && name.hasPrefix("HTTP_") {
            // HTTP_X_CSRF_TOKEN -> x-csrf-token
            let bytes = name.utf8.dropFirst(5).map { b -> UInt8 in
                b == UInt8(ascii: "_") ? UInt8(ascii: "-") : (b >= 65 && b <= 90 ? b + 32 : b)
            }
            let headerName = String(decoding: bytes, as: UTF8.self)
            // nginx's fastcgi_params send Proxy as HTTP_PROXY (httpoxy): never trust it.
            // A name that is not an HTTP token cannot come from nginx; it is dropped.
            if headerName == "proxy" { continue }
            guard let field = HTTPField.Name(headerName) else { continue }
            headers.add(field, value)
        }
        // nginx sends these twice (HTTP_CONTENT_TYPE and CONTENT_TYPE); the CGI
        // variables win and replace the copies, or HTTPFields would join them.
        if let type = params["CONTENT_TYPE"], !type.isEmpty { headers[.contentType] = type }
        if let length = params["CONTENT_LENGTH"], !length.isEmpty { headers[.contentLength] = length }
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
        out.append(contentsOf: Array("Status: \(response.status.code) \(response.status.reason)\r\n".utf8))
        for field in response.headers {
            // HTTPField already replaces CR, LF and NUL in values and names are tokens; checked again at the wire.
            if field.value.utf8.contains(where: { $0 == 13 || $0 == 10 }) { continue }
            out.append(contentsOf: Array("\(field.name.rawName): \(field.value)\r\n".utf8))
        }
        out.append(contentsOf: [13, 10])
        out.append(contentsOf: response.body)
        return out
    }
}

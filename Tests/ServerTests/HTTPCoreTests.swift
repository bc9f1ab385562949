import Common
import Foundation
import HTTPCore
import TestSupport
import Testing

@Suite struct CGIMappingTests {
    @Test func mapsParametersToARequest() {
        let request = CGI.request(params: [
            "REQUEST_METHOD": "post", "DOCUMENT_URI": "/oauth2/token", "QUERY_STRING": "a=1",
            "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": "3",
            // nginx passes Content-Type and Content-Length as HTTP_* too.
            "HTTP_CONTENT_TYPE": "application/x-www-form-urlencoded", "HTTP_CONTENT_LENGTH": "3", "HTTP_AUTHORIZATION": "Basic eDp5",
            "HTTP_X_CSRF_TOKEN": "t", "HTTP_PROXY": "evil", "HTTPS": "on", "REMOTE_ADDR": "10.0.0.1", "REQUEST_ID": "abc123",
        ], body: [1, 2, 3]) { "generated" }
        #expect(request.method == .post)
        #expect(request.path == "/oauth2/token")
        #expect(request.query == "a=1")
        #expect(request.headers[.authorization] == "Basic eDp5")
        #expect(request.headers[.xCSRFToken] == "t")
        #expect(request.headers[HTTPField.Name("Proxy")!] == nil)
        #expect(request.mediaType == "application/x-www-form-urlencoded")
        #expect(request.headers[values: .contentType] == ["application/x-www-form-urlencoded"])
        #expect(request.headers[values: .contentLength] == ["3"])
        #expect(request.scheme == "https")
        #expect(request.requestID == "abc123")
        #expect(request.body == [1, 2, 3])
        #expect(!request.bodyTooLarge)
    }

    @Test(arguments: [
        ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
        ("Application/JSON; charset=UTF-8", "application/json"),
        ("  text/xml\t ;q=1", "text/xml"),
        ("APPLICATION/ÉX", "application/éx"),
        ("application/json;charset=utf-8", "application/json"),
        ("application/json ", "application/json"),
    ])
    func mediaTypeIsLowercasedWithoutParameters(_ header: String, _ expected: String) {
        let request = CGI.request(params: ["CONTENT_TYPE": header], body: []) { "id" }
        #expect(request.mediaType == expected)
    }

    @Test func generatesARequestIDWhenMissingOrUnsafe() {
        #expect(CGI.request(params: ["CONTENT_LENGTH": "", "CONTENT_TYPE": ""], body: []) { "gen" }.requestID == "gen")
        #expect(CGI.request(params: ["REQUEST_ID": "a\r\nb"], body: []) { "gen" }.requestID == "gen")
        #expect(CGI.request(params: [:], body: nil) { "gen" }.bodyTooLarge)
    }

    /// The FastCGI pool copies only `CGI.parametersRead`: every parameter
    /// `CGI.request` reads must be among them, or it would always be absent.
    @Test func everyParameterTheRequestReadsIsCopied() throws {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/HTTPCore/CGI.swift")
        let text = try String(contentsOfFile: source.path, encoding: .utf8)
        let read = try NSRegularExpression(pattern: #"params\["([A-Z_]+)"\]"#)
        let names = Set(read.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { String(text[Range($0.range(at: 1), in: text)!]) })
        #expect(names.count >= 9, "the scan finds the reads")
        #expect(names.isSubset(of: CGI.parametersRead), "\(names.subtracting(CGI.parametersRead))")
        #expect(Set(CGI.headersRead.keys).isSubset(of: CGI.parametersRead))
    }

    /// The CGI mapping carries only the headers a handler reads
    /// (`CGI.headersRead`): every request header the sources read must be on
    /// that list, or nginx's copy of it would never reach the handler.
    @Test func everyHeaderAHandlerReadsIsCarried() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources")
        let files = try #require(FileManager.default.enumerator(atPath: sources.path)).compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }
        #expect(files.count > 50)
        let read = try NSRegularExpression(pattern: #"request\.(?:headers\.value\(|headers\[values: |headers\[)\.([A-Za-z]+)"#)
        var names = Set<String>()
        for file in files {
            let text = try String(contentsOfFile: sources.appendingPathComponent(file).path, encoding: .utf8)
            for match in read.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                names.insert(String(text[Range(match.range(at: 1), in: text)!]))
            }
        }
        #expect(names.contains("authorization"), "the scan finds the reads")
        let carried: [String: HTTPField.Name] = [
            "authorization": .authorization, "cookie": .cookie, "xCSRFToken": .xCSRFToken, "ifMatch": .ifMatch,
            "ifNoneMatch": .ifNoneMatch, "accept": .accept, "contentType": .contentType, "contentLength": .contentLength, "dpop": .dpop,
            "origin": .origin, "accessControlRequestMethod": .accessControlRequestMethod,
        ]
        for name in names {
            let field = try #require(carried[name], "request.headers reads .\(name): add it to CGI.headersRead and to this table")
            #expect(Set(CGI.headersRead.values).contains(field) || field == .contentType || field == .contentLength, "\(name)")
        }
    }

    /// The request path's header read agrees with HTTPFields' subscript,
    /// repeated fields included.
    @Test(arguments: [
        ([("Authorization", "Bearer a")], HTTPField.Name.authorization),
        ([("Authorization", "Bearer a"), ("authorization", "Bearer b")], .authorization),
        ([("Cookie", "a=1"), ("Cookie", "b=2")], .cookie),
        ([("Accept", "text/html")], .authorization),
    ] as [([(String, String)], HTTPField.Name)])
    func aHeaderValueIsTheSubscripts(_ pairs: [(String, String)], _ name: HTTPField.Name) {
        let fields = HTTPFields(pairs)
        #expect(fields.value(name) == fields[name])
    }

    /// HTTPField turns CR and LF in a value into spaces, so an injected
    /// value stays inside its own line: no second header, no response splitting.
    @Test func serializesResponsesAndNeutralisesHeaderInjection() {
        var response = Response.json(["a": 1], status: 201)
        response.headers[HTTPField.Name("X-Evil")!] = "a\r\nSet-Cookie: x=1"
        let text = String(decoding: CGI.bytes(response), as: UTF8.self)
        #expect(text.hasPrefix("Status: 201 Created\r\nContent-Type: application/json\r\nX-Evil: a  Set-Cookie: x=1\r\n\r\n"))
        #expect(text.hasSuffix("{\"a\":1}"))
        #expect(!text.contains("\r\nSet-Cookie"))
    }
}

@Suite struct RouterTests {
    func router() -> Router<String> {
        var r = Router<String>()
        r.add(.get, "/api/v1/clients/{id}", "read")
        r.add(.get, "/api/v1/clients/current", "current")
        r.add(.delete, "/api/v1/clients/{id}", "delete")
        r.add(.get, "/healthz", "health")
        return r
    }

    @Test func literalSegmentsWinOverCaptures() {
        guard case let .found(h, _) = router().match(method: .get, path: "/api/v1/clients/current") else { Issue.record(); return }
        #expect(h == "current")
        guard case let .found(h2, p) = router().match(method: .get, path: "/api/v1/clients/abc") else { Issue.record(); return }
        #expect(h2 == "read" && p["id"] == "abc")
    }

    @Test func segmentsAreSplitByByteAndEmptyOnesSkipped() {
        guard case let .found(h, p) = router().match(method: .get, path: "//api/v1//clients/é\u{301}x") else { Issue.record(); return }
        #expect(h == "read" && p["id"] == "é\u{301}x")
        guard case let .found(h2, p2) = router().match(method: .delete, path: "/api/v1/clients//ü") else { Issue.record(); return }
        #expect(h2 == "delete" && p2["id"] == "ü")
        guard case .notFound = router().match(method: .get, path: "/api/v1/clients/a/b") else { Issue.record(); return }
    }

    @Test func reportsMethodNotAllowedAndNotFound() {
        guard case let .methodNotAllowed(allowed) = router().match(method: .post, path: "/healthz") else { Issue.record(); return }
        #expect(allowed == [.get])
        guard case .notFound = router().match(method: .get, path: "/nope") else { Issue.record(); return }
        guard case .notFound = router().match(method: .get, path: "/healthz/") else { Issue.record(); return }
        guard case .found = router().match(method: .head, path: "/healthz") else { Issue.record(); return }
    }

    @Test func capturesByPatternAndFallsBackFromALiteralDeadEnd() {
        var r = Router<String>()
        r.add(.get, "/", "root")
        r.add(.get, "/orgs/{org}/clients/{id}", "org-client")
        r.add(.put, "/orgs/{org}/clients/{id}", "org-client-put")
        r.add(.get, "/orgs/current/clients", "current-list")
        r.add(.get, "/orgs/{name}/members", "members")
        guard case let .found(h, p) = r.match(method: .get, path: "/orgs/current/clients/c1") else { Issue.record(); return }
        // "current" is a literal for another route, but only the capture route reaches this depth.
        #expect(h == "org-client" && p == ["org": "current", "id": "c1"])
        guard case let .found(h2, p2) = r.match(method: .get, path: "/orgs/acme/members") else { Issue.record(); return }
        #expect(h2 == "members" && p2 == ["name": "acme"])
        guard case let .found(h3, p3) = r.match(method: .get, path: "/orgs/current/clients") else { Issue.record(); return }
        #expect(h3 == "current-list" && p3.isEmpty)
        guard case let .found(h4, _) = r.match(method: .get, path: "/") else { Issue.record(); return }
        #expect(h4 == "root")
        guard case let .methodNotAllowed(allowed) = r.match(method: .delete, path: "/orgs/a/clients/b") else { Issue.record(); return }
        #expect(allowed == [.get, .put])
        guard case .notFound = r.match(method: .get, path: "/orgs/a/clients/b/c") else { Issue.record(); return }
        guard case .notFound = r.match(method: .get, path: "/orgs") else { Issue.record(); return }
    }
}

@Suite struct FormTests {
    @Test func parsesFormEncoding() throws {
        let items = try #require(FormEncoding.parse("a=1&b=x+y%21&c=&d"))
        #expect(items.map(\.0) == ["a", "b", "c", "d"])
        #expect(items[1].1 == "x y!")
        #expect(items[2].1 == "" && items[3].1 == "")
    }

    @Test(arguments: ["a=%", "a=%zz", "a=%C3%28"])
    func refusesBadPercentEncoding(_ text: String) {
        #expect(FormEncoding.parse(text) == nil)
    }

    @Test func formEdgeCases() throws {
        let items = try #require(FormEncoding.parse("a=1&&b=%41%2b+=c&=x&flag&"))
        #expect(items.map(\.0) == ["a", "b", "", "flag"])
        #expect(items.map(\.1) == ["1", "A+ =c", "x", ""])
        #expect(FormEncoding.parse("a=%4")?.isEmpty != false)
        #expect(FormEncoding.parse("a=%4") == nil)
        #expect(try #require(FormEncoding.parse("")).isEmpty)
    }

    @Test func basicSchemeEdgeCases() {
        let token = Base64.encode(Array("id:secret".utf8))
        #expect(BasicCredentials.parse("basic  \(token) ", formDecode: true) == .credentials(user: "id", password: "secret"))
        #expect(BasicCredentials.parse("BASIC \(token)", formDecode: false) == .credentials(user: "id", password: "secret"))
        #expect(BasicCredentials.parse("Basic", formDecode: true) == .absent)
        #expect(BasicCredentials.parse("Basic ", formDecode: true) == .absent)
        #expect(BasicCredentials.parse("Basicx \(token)", formDecode: true) == .absent)
        #expect(BasicCredentials.parse("Basic " + Base64.encode([0x69, 0x3A, 0xFF]), formDecode: true) == .malformed)
        #expect(BasicCredentials.parse("Basic " + Base64.encode(Array("a:b%zz".utf8)), formDecode: true) == .malformed)
        // Text that is not UTF-8, on either side of the colon, with or without form decoding.
        // And a broken byte that a percent escape after it would complete ("\xC3%A9:x", "client:\xE2%82%AC", "%C3\xA9:x").
        for raw: [UInt8] in [[0x69, 0x3A, 0xFF], [0xC3, 0x3A, 0x41], [0x69, 0x25, 0x34, 0x31, 0xFF, 0x3A, 0x70],
                             [0xC3, 0x25, 0x41, 0x39, 0x3A, 0x78], Array("client:".utf8) + [0xE2] + Array("%82%AC".utf8),
                             Array("%C3".utf8) + [0xA9, 0x3A, 0x78]] {
            #expect(BasicCredentials.parse("Basic " + Base64.encode(raw), formDecode: true) == .malformed)
            #expect(BasicCredentials.parse("Basic " + Base64.encode(raw), formDecode: false) == .malformed)
        }
    }

    @Test func basicCredentialsAreFormDecoded() {
        let header = "Basic " + Base64.encode(Array("my%3Aclient:p%40ss+word".utf8))
        #expect(BasicCredentials.parse(header, formDecode: true) == .credentials(user: "my:client", password: "p@ss word"))
        #expect(BasicCredentials.parse("Basic !!!", formDecode: true) == .malformed)
        #expect(BasicCredentials.parse("Basic " + Base64.encode(Array("nocolon".utf8)), formDecode: true) == .malformed)
        #expect(BasicCredentials.parse("Bearer x", formDecode: true) == .absent)
        #expect(BasicCredentials.parse(nil, formDecode: true) == .absent)
    }

    @Test func parsesCookies() {
        #expect(Cookies.parse(["a=1; lk_session=abc", "b=2"]) == ["a": "1", "lk_session": "abc", "b": "2"])
        // Blanks around names and values go, "=" inside a value stays; a pair without "=", an empty name or an
        // empty value (a cleared cookie) is no cookie; a repeated name is none either (cookie tossing: a copy
        // planted from a sibling domain or a longer path would otherwise be the one read).
        #expect(Cookies.parse([" \tx = 1 ;;y=a=b; x=2; flag; z=;w=é ", "y=3; z=4"]) == ["z": "4", "w": "é"])
        #expect(Cookies.parse(["lk_session=planted; lk_session=mine"]) == [:])
        #expect(Cookies.parse([""]) == [:] && Cookies.parse([";"]) == [:] && Cookies.parse(["=v"]) == [:] && Cookies.parse(["a= "]) == [:])
        #expect(" \t a b \t".trimmingSpaces() == "a b" && "  ".trimmingSpaces() == "" && "x".trimmingSpaces() == "x")
    }
}

import Common
import HTTPCore
import Imaging
import OAuth
import TestSupport
import Testing

@Suite struct NativeAPIBadInputTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let body: [UInt8]
        let contentType: String?
        let status: Int
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "malformed JSON", body: Array("{\"client_name\": ".utf8), contentType: "application/json", status: 400),
        Case(name: "trailing garbage", body: Array("{\"client_name\": \"a\"} x".utf8), contentType: "application/json", status: 400),
        Case(name: "wrong content type", body: Array("{\"client_name\": \"a\"}".utf8), contentType: "text/plain", status: 415),
        Case(name: "form content type", body: Array("client_name=a".utf8), contentType: "application/x-www-form-urlencoded", status: 415),
        Case(name: "no content type", body: Array("{\"client_name\": \"a\"}".utf8), contentType: nil, status: 415),
        Case(name: "array instead of object", body: Array("[{\"client_name\": \"a\"}]".utf8), contentType: "application/json", status: 400),
        Case(name: "string instead of object", body: Array("\"client\"".utf8), contentType: "application/json", status: 400),
        Case(name: "empty body", body: [], contentType: "application/json", status: 400),
        Case(name: "number as name", body: Array("{\"client_name\": 5}".utf8), contentType: "application/json", status: 400),
        Case(name: "string ttl", body: Array("{\"client_name\": \"a\", \"access_token_ttl\": \"900\"}".utf8), contentType: "application/json", status: 400),
        Case(name: "fractional ttl", body: Array("{\"client_name\": \"a\", \"access_token_ttl\": 900.5}".utf8), contentType: "application/json", status: 400),
        Case(name: "ttl out of range", body: Array("{\"client_name\": \"a\", \"access_token_ttl\": 10}".utf8), contentType: "application/json", status: 400),
        Case(name: "redirect_uris not array", body: Array("{\"client_name\": \"a\", \"redirect_uris\": \"https://x\"}".utf8), contentType: "application/json", status: 400),
        Case(name: "javascript redirect", body: Array("{\"client_name\": \"a\", \"redirect_uris\": [\"javascript:alert(1)\"]}".utf8), contentType: "application/json", status: 400),
        Case(name: "data redirect", body: Array("{\"client_name\": \"a\", \"redirect_uris\": [\"data:text/html,x\"]}".utf8), contentType: "application/json", status: 400),
        Case(name: "fragment redirect", body: Array("{\"client_name\": \"a\", \"redirect_uris\": [\"https://a.example/cb#x\"]}".utf8), contentType: "application/json", status: 400),
        Case(name: "http non-loopback redirect", body: Array("{\"client_name\": \"a\", \"redirect_uris\": [\"http://a.example/cb\"]}".utf8), contentType: "application/json", status: 400),
        Case(name: "userinfo redirect", body: Array("{\"client_name\": \"a\", \"redirect_uris\": [\"https://user@a.example/cb\"]}".utf8), contentType: "application/json", status: 400),
        Case(name: "relative redirect", body: Array("{\"client_name\": \"a\", \"redirect_uris\": [\"/cb\"]}".utf8), contentType: "application/json", status: 400),
        Case(name: "public client with client_credentials", body: Array("{\"client_name\": \"a\", \"token_endpoint_auth_method\": \"none\", \"grant_types\": [\"client_credentials\"]}".utf8), contentType: "application/json", status: 400),
        Case(name: "code grant without redirect", body: Array("{\"client_name\": \"a\", \"grant_types\": [\"authorization_code\"]}".utf8), contentType: "application/json", status: 400),
        Case(name: "unknown grant", body: Array("{\"client_name\": \"a\", \"grant_types\": [\"password\"]}".utf8), contentType: "application/json", status: 400),
        Case(name: "unknown auth method", body: Array("{\"client_name\": \"a\", \"token_endpoint_auth_method\": \"private_key_jwt\"}".utf8), contentType: "application/json", status: 400),
        Case(name: "extra_data array", body: Array("{\"client_name\": \"a\", \"extra_data\": [1]}".utf8), contentType: "application/json", status: 400),
        Case(name: "10000-character name", body: Array("{\"client_name\": \"\(String(repeating: "n", count: 10_000))\"}".utf8), contentType: "application/json", status: 400),
        Case(name: "NUL in name", body: Array("{\"client_name\": \"a\\u0000b\"}".utf8), contentType: "application/json", status: 400),
        Case(name: "invalid UTF-8", body: [0x7B, 0x22, 0x63, 0x6C, 0x69, 0x65, 0x6E, 0x74, 0x5F, 0x6E, 0x61, 0x6D, 0x65, 0x22, 0x3A, 0x22, 0xC3, 0x28, 0x22, 0x7D], contentType: "application/json", status: 400),
        Case(name: "deep nesting", body: Array(("{\"client_name\": \"a\", \"extra_data\": " + String(repeating: "{\"a\":", count: 100) + "1" + String(repeating: "}", count: 100) + "}").utf8), contentType: "application/json", status: 400),
        Case(name: "oversized extra_data", body: Array("{\"client_name\": \"a\", \"extra_data\": {\"x\": \"\(String(repeating: "x", count: 17_000))\"}}".utf8), contentType: "application/json", status: 400),
        Case(name: "duplicate keys", body: Array("{\"client_name\": \"a\", \"client_name\": \"b\"}".utf8), contentType: "application/json", status: 400),
        Case(name: "bad scope token", body: Array("{\"client_name\": \"a\", \"scope\": \"a\\\"b\"}".utf8), contentType: "application/json", status: 400),
    ]

    @Test(arguments: cases)
    func createRefusesBadInputAndChangesNothing(_ c: Case) throws {
        let h = try Harness()
        let token = try h.token()
        var headers = [("Authorization", "Bearer \(token)")]
        if let type = c.contentType { headers.append(("Content-Type", type)) }
        let auditBefore = try h.store.auditEvents(organizationID: h.primary.organizationID, limit: 100, offset: 0).total
        let r = h.call("POST", "/api/v1/clients", headers: headers, body: c.body)
        #expect(r.status.code == c.status, "\(r.bodyText)")
        #expect(r.headers[.contentType] == "application/problem+json")
        #expect(r.json?["request_id"] == "req-test")
        #expect(try h.store.clientCount(organizationID: h.primary.organizationID) == 1)
        #expect(try h.store.auditEvents(organizationID: h.primary.organizationID, limit: 100, offset: 0).total == auditBefore)
    }

    @Test(arguments: cases)
    func patchRefusesBadInputAndChangesNothing(_ c: Case) throws {
        let h = try Harness()
        let token = try h.token()
        let before = try #require(try h.store.client(h.primary.clientID))
        var headers = [("Authorization", "Bearer \(token)")]
        if let type = c.contentType { headers.append(("Content-Type", type == "application/json" ? "application/merge-patch+json" : type)) }
        let r = h.call("PATCH", "/api/v1/clients/\(h.primary.clientID)", headers: headers, body: c.body)
        // A PATCH without client_name is fine when the rest is valid; every case here has a defect.
        if c.name != "number as name" && c.name != "public client with client_credentials" && c.name != "unknown auth method" && c.name != "code grant without redirect" {
            #expect((400...415).contains(r.status.code), "\(c.name): \(r.status) \(r.bodyText)")
        } else {
            #expect((400...415).contains(r.status.code) || r.status == 409, "\(c.name): \(r.status) \(r.bodyText)")
        }
        #expect(try h.store.client(h.primary.clientID) == before)
    }

    @Test func sqlInjectionTextIsStoredAndReturnedVerbatim() throws {
        let h = try Harness()
        let token = try h.token()
        let evil = "Robert'); DROP TABLE clients;-- \u{1F600} <script>alert(1)</script>"
        let r = h.json("POST", "/api/v1/clients", token: token, body: ["client_name": .string(evil), "description": .string(evil)])
        #expect(r.status == 201)
        let id = try #require(r.json?["client_id"]?.stringValue)
        let read = try #require(h.json("GET", "/api/v1/clients/\(id)", token: token).json)
        #expect(read["client_name"] == .string(evil))
        #expect(read["description"] == .string(evil))
        #expect(try h.store.clientCount(organizationID: h.primary.organizationID) == 2)
    }
}

/// Logos: validated, re-encoded, served safely (SPEC 6.1).
@Suite struct LogoTests {
    func upload(_ h: Harness, _ token: String, id: String, contentType: String, body: [UInt8]) -> Response {
        h.call("PUT", "/api/v1/clients/\(id)/logo", headers: [("Authorization", "Bearer \(token)"), ("Content-Type", contentType)], body: body)
    }

    @Test(arguments: [("image/png", Fixtures.png300x120), ("image/jpeg", Fixtures.jpeg64x48), ("image/gif", Fixtures.gif20x10)])
    func logosAreReencodedAsPNGWithin256(_ type: String, _ image: [UInt8]) throws {
        let h = try Harness()
        let token = try h.token()
        let id = h.primary.clientID
        #expect(upload(h, token, id: id, contentType: type, body: image).status == 204)
        let r = h.call("GET", "/api/v1/clients/\(id)/logo")
        #expect(r.status == 200)
        #expect(r.headers[.contentType] == "image/png")
        #expect(r.headers[.cacheControl] == "public, max-age=300")
        #expect(r.headers[.xContentTypeOptions] == "nosniff")
        #expect(r.headers[.contentSecurityPolicy] == "default-src 'none'")
        let header = try #require(Imaging.header(r.body))
        #expect(header.format == .png)
        #expect(header.width <= 256 && header.height <= 256)
        if type == "image/png" { #expect(header.width == 256 && header.height == 102) }
        let etag = try #require(r.headers[.eTag])
        #expect(h.call("GET", "/api/v1/clients/\(id)/logo", headers: [("If-None-Match", etag)]).status == 304)
        let client = try #require(h.json("GET", "/api/v1/clients/\(id)", token: token).json)
        #expect(client["logo_uri"] == .string("\(Harness.issuer)/api/v1/clients/\(id)/logo"))
    }

    @Test func multipartUploadsUseTheImageField() throws {
        let h = try Harness()
        let token = try h.token()
        let body = Fixtures.multipart(contentType: "image/png", body: Fixtures.png300x120)
        #expect(upload(h, token, id: h.primary.clientID, contentType: "multipart/form-data; boundary=XyZ-boundary-42", body: body).status == 204)
        let wrongField = Fixtures.multipart(field: "file", contentType: "image/png", body: Fixtures.png300x120)
        #expect(upload(h, token, id: h.primary.clientID, contentType: "multipart/form-data; boundary=XyZ-boundary-42", body: wrongField).status == 400)
        #expect(upload(h, token, id: h.primary.clientID, contentType: "multipart/form-data; boundary=other", body: body).status == 400)
    }

    @Test func deleteRemovesTheLogo() throws {
        let h = try Harness()
        let token = try h.token()
        _ = upload(h, token, id: h.primary.clientID, contentType: "image/png", body: Fixtures.png300x120)
        #expect(h.json("DELETE", "/api/v1/clients/\(h.primary.clientID)/logo", token: token).status == 204)
        #expect(h.call("GET", "/api/v1/clients/\(h.primary.clientID)/logo").status == 404)
        #expect(h.json("DELETE", "/api/v1/clients/\(h.primary.clientID)/logo", token: token).status == 404)
        #expect(h.json("GET", "/api/v1/clients/\(h.primary.clientID)", token: token).json?["logo_uri"] == nil)
    }

    struct Attack: Sendable, CustomTestStringConvertible {
        let name: String
        let contentType: String
        let body: [UInt8]
        let status: Int
        var testDescription: String { name }
    }

    static let attacks: [Attack] = [
        Attack(name: "PNG declared as JPEG", contentType: "image/jpeg", body: Fixtures.png300x120, status: 415),
        Attack(name: "PNG header claiming 100000x100000", contentType: "image/png", body: Fixtures.pngBomb, status: 400),
        Attack(name: "GIF/HTML polyglot", contentType: "image/gif", body: Fixtures.gif20x10 + Array("<html><script>alert(1)</script></html>".utf8), status: 204),
        Attack(name: "SVG with script", contentType: "image/svg+xml", body: Array("<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>".utf8), status: 415),
        Attack(name: "SVG declared as PNG", contentType: "image/png", body: Array("<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>".utf8), status: 415),
        Attack(name: "HTML as multipart image", contentType: "multipart/form-data; boundary=XyZ-boundary-42",
               body: Fixtures.multipart(contentType: "text/html", body: Array("<html></html>".utf8)), status: 415),
        Attack(name: "truncated PNG", contentType: "image/png", body: Array(Fixtures.png300x120.prefix(60)), status: 400),
        Attack(name: "truncated header", contentType: "image/png", body: Array(Fixtures.png300x120.prefix(12)), status: 400),
        Attack(name: "over 1 MiB", contentType: "image/png", body: Fixtures.png300x120 + [UInt8](repeating: 0, count: 1_048_576), status: 413),
        Attack(name: "text body", contentType: "text/plain", body: Array("hello".utf8), status: 415),
    ]

    @Test(arguments: attacks)
    func logoAttacksAreRefusedOrNeutralised(_ a: Attack) throws {
        let h = try Harness()
        let token = try h.token()
        let r = upload(h, token, id: h.primary.clientID, contentType: a.contentType, body: a.body)
        #expect(r.status.code == a.status, "\(r.bodyText)")
        let served = h.call("GET", "/api/v1/clients/\(h.primary.clientID)/logo")
        if a.status == 204 {
            #expect(served.headers[.contentType] == "image/png")
            #expect(Imaging.sniff(served.body) == .png)
            #expect(!served.bodyText.contains("<script>"))
        } else {
            #expect(served.status == 404)
        }
    }
}

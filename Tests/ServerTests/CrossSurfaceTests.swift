import Common
import JOSE
import Cryptography
import HTTPCore
import OAuth
import TestSupport
import Testing

@Suite struct CrossSurfaceTests {
    @Test func aClientCreatedAnywhereIsVisibleEverywhereAndDeletedEverywhere() throws {
        let h = try Harness()
        let token = try h.token()
        let integration = try #require(h.json("POST", "/external/v1/oauth/client", token: token, body: ["password": "long-enough", "application": "From integration"]).json?["clientId"]?.stringValue)
        let v3 = try #require(h.json("POST", "/v3/oauth-clients", token: token, body: IdentitySurfaceTests.createBody).json?["id"]?.stringValue)
        let app = try #require(h.json("POST", "/api/oauth/app", token: token, body: ["name": "From app", "redirect_uri": "https://x.example/cb"]).json?["client_id"]?.stringValue)
        let native = try #require(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "From native"]).json?["client_id"]?.stringValue)
        for id in [integration, v3, app, native] {
            #expect(h.json("GET", "/api/v1/clients/\(id)", token: token).status == 200)
            #expect(h.json("GET", "/v3/oauth-clients/\(id)", token: token).status == 200)
            // SPEC 6.4: the public read serves only clients that can ask for consent (the app here).
            #expect(h.call("GET", "/api/oauth/app/id/\(id)").status == (id == app ? 200 : 404))
            #expect(h.json("GET", "/external/v1/oauth/client", token: token).json?.arrayValue?.contains { $0["clientId"] == .string(id) } == true)
        }
        #expect(h.json("DELETE", "/v3/oauth-clients/\(integration)", token: token).status == 204)
        #expect(h.json("DELETE", "/external/v1/oauth/client/\(v3)", token: token).status == 204)
        #expect(h.json("DELETE", "/api/v1/clients/\(app)", token: token).status == 204)
        #expect(h.json("DELETE", "/api/oauth/app/id/\(native)", token: token).status == 204)
        for id in [integration, v3, app, native] {
            #expect(h.json("GET", "/api/v1/clients/\(id)", token: token).status == 404)
            #expect(h.json("GET", "/v3/oauth-clients/\(id)", token: token).status == 404)
            #expect(h.call("GET", "/api/oauth/app/id/\(id)").status == 404)
        }
        let surfaces = try h.store.auditEvents(organizationID: h.primary.organizationID, limit: 100, offset: 0).events.map(\.surface)
        #expect(Set(surfaces).isSuperset(of: ["integration", "identity", "app", "native"]))
    }

    /// An update on a surface keeps what that surface does not know (the
    /// ID token algorithm, the logout URIs, the back-channel settings).
    @Test func anUpdateOnEverySurfaceKeepsTheFieldsItDoesNotKnow() throws {
        let h = try Harness()
        let token = try h.token()
        let native: JSON = ["id_token_signed_response_alg": "RS256", "post_logout_redirect_uris": ["https://rp.example/out"],
                            "backchannel_logout_uri": "https://rp.example/bcl", "backchannel_logout_session_required": true]
        func setNative(_ id: String) {
            let r = h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: native, contentType: "application/merge-patch+json")
            #expect(r.status == 200, "\(r.bodyText)")
        }
        func kept(_ id: String, _ surface: String) throws {
            let read = try #require(h.json("GET", "/api/v1/clients/\(id)", token: token).json)
            for (key, value) in native.objectValue! { #expect(read[key] == value, "\(surface) lost \(key)") }
        }
        let v3 = try #require(h.json("POST", "/v3/oauth-clients", token: token, body: IdentitySurfaceTests.createBody).json?["id"]?.stringValue)
        setNative(v3)
        #expect(h.json("PATCH", "/v3/oauth-clients/\(v3)", token: token, body: [["op": "replace", "path": "/name", "value": "Renamed"]],
                       contentType: "application/json-patch+json").status == 200)
        try kept(v3, "identity")
        let app = try #require(h.json("POST", "/api/oauth/app", token: token, body: ["name": "App", "redirect_uri": "https://x.example/cb"]).json?["client_id"]?.stringValue)
        setNative(app)
        #expect(h.json("PUT", "/api/oauth/app/id/\(app)", token: token, body: ["name": "App 2", "redirect_uri": "https://x.example/cb2"]).status == 204)
        try kept(app, "app")
        let integration = try #require(h.json("POST", "/external/v1/oauth/client", token: token, body: ["password": "long-enough", "application": "Int"]).json?["clientId"]?.stringValue)
        setNative(integration)
        #expect(h.json("PUT", "/external/v1/oauth/client", token: token, body: ["clientId": .string(integration), "application": "Int 2"]).status == 204)
        try kept(integration, "integration")
        // A client that signs its assertions stays one through a /v3 update (CONFIDENTIAL keeps the confidential method).
        let key = try SigningKey.generate(.es256)
        let jwks: JSON = ["keys": [try JWK.publicJWK(key, kid: "k")]]
        #expect(h.json("PATCH", "/api/v1/clients/\(v3)", token: token, body: ["token_endpoint_auth_method": "private_key_jwt", "jwks": jwks],
                       contentType: "application/merge-patch+json").status == 200)
        #expect(h.json("PATCH", "/v3/oauth-clients/\(v3)", token: token, body: [["op": "replace", "path": "/name", "value": "Again"]],
                       contentType: "application/json-patch+json").status == 200)
        let signed = try #require(h.json("GET", "/api/v1/clients/\(v3)", token: token).json)
        #expect(signed["token_endpoint_auth_method"] == "private_key_jwt" && signed["jwks"] == jwks)
    }
}

/// Bad input on every compatible surface: its own 4xx shape, and nothing changes.
@Suite struct CompatibleSurfaceBadInputTests {
    @Test func badInputChangesNothing() throws {
        let h = try Harness()
        let token = try h.token()
        let long = String(repeating: "L", count: 10_000)
        let before = try h.store.clientCount(organizationID: h.primary.organizationID)
        let auditBefore = try h.store.auditEvents(organizationID: h.primary.organizationID, limit: 1, offset: 0).total
        let cases: [(String, String, String, [UInt8], (Response) -> Bool)] = [
            ("POST", "/external/v1/oauth/client", "application/json", Array("{\"password\": \"long-enough\", \"application\": \"\(long)\"}".utf8),
             { $0.status == 400 && $0.json?["code"] == "GN0002" }),
            ("POST", "/external/v1/oauth/client", "text/plain", Array("password=x".utf8), { $0.status == 400 && $0.json?["code"] == "GN0002" }),
            ("POST", "/external/v1/oauth/client", "application/json", Array("[1]".utf8), { $0.json?["code"] == "GN0002" }),
            ("POST", "/v3/oauth-clients", "application/json", Array("{\"name\": \"\(long)\", \"description\": \"d\", \"accessTokenValiditySeconds\": 900, \"grantTypes\": [\"CLIENT_CREDENTIALS\"], \"accessType\": \"ONLINE\", \"enabled\": true}".utf8),
             { $0.status == 400 && $0.json?["detailCode"] == "400.1 Bad Request Content" }),
            ("POST", "/v3/oauth-clients", "application/json", Array("{\"name\": ".utf8), { $0.status == 400 && $0.json?["trackingId"] == "req-test" }),
            ("POST", "/v3/oauth-clients", "application/xml", Array("<a/>".utf8), { $0.status == 415 && $0.json?["detailCode"] != nil }),
            ("POST", "/v3/oauth-clients", "application/json", Array("{\"name\": \"x\", \"description\": \"d\", \"accessTokenValiditySeconds\": \"900\", \"grantTypes\": [\"CLIENT_CREDENTIALS\"], \"accessType\": \"ONLINE\", \"enabled\": true}".utf8),
             { $0.status == 400 }),
            ("POST", "/api/oauth/app", "application/json", Array("{\"name\": \"\(long)\", \"redirect_uri\": \"https://a.example/cb\"}".utf8),
             { $0.status == 400 && $0.json?["message"] != nil }),
            ("POST", "/api/oauth/app", "application/json", Array("{\"name\": 1, \"redirect_uri\": \"https://a.example/cb\"}".utf8), { $0.status == 400 }),
            ("POST", "/api/oauth/app", "text/html", Array("<b>".utf8), { $0.status == 415 && $0.json?["message"] != nil }),
        ]
        for (method, path, type, body, check) in cases {
            let r = h.call(method, path, headers: [("Authorization", "Bearer \(token)"), ("Content-Type", type)], body: body)
            #expect(check(r), "\(path) \(type): \(r.status) \(r.bodyText.prefix(200))")
        }
        // The UC surface: a 10,000-character name, wrong types, malformed XML.
        let uc: [(String, String)] = [
            ("application/json", "{\"name\": \"\(long)\", \"provider\": \"Google\", \"clientId\": \"c\", \"clientSecret\": \"s\", \"scopes\": [\"a\"]}"),
            ("application/json", "{\"name\": \"x\", \"provider\": \"Google\", \"clientId\": 5, \"clientSecret\": \"s\", \"scopes\": [\"a\"]}"),
            ("application/xml", "<oauthClient><name>x</name><scopes><bogus/></scopes></oauthClient>"),
        ]
        for (type, body) in uc {
            let r = h.call("POST", "/uc/resources/oauthclient", headers: [("Authorization", Harness.basic(h.primary.clientID, h.primary.clientSecret)),
                                                                          ("Content-Type", type)], body: Array(body.utf8))
            #expect(r.status == 400 && r.headers[.contentType]?.hasPrefix("text/plain") == true, "\(body.prefix(80))")
        }
        #expect(try h.store.clientCount(organizationID: h.primary.organizationID) == before)
        #expect(try h.store.upstreams(organizationID: h.primary.organizationID).isEmpty)
        #expect(try h.store.auditEvents(organizationID: h.primary.organizationID, limit: 1, offset: 0).total == auditBefore)
    }
}

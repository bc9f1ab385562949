import Common
import HTTPCore
import OAuth
import TestSupport
import Testing

@Suite struct AppSurfaceTests {
    @Test func appsLifecycleAndPublicReads() throws {
        let h = try Harness()
        let token = try h.token()
        let created = h.json("POST", "/api/oauth/app", token: token, body: ["name": "Photos", "url": "https://photos.example", "redirect_uri": "https://photos.example/cb"])
        #expect(created.status == 201)
        let id = try #require(created.json?["client_id"]?.stringValue)
        #expect(created.json?["key"]?.stringValue?.hasPrefix("lks_") == true)
        let app = try #require(h.call("GET", "/api/oauth/app/id/\(id)").json)
        #expect(app["name"] == "Photos" && app["url"] == "https://photos.example" && app["redirect_uri"] == "https://photos.example/cb")
        #expect(app["logo"] == "")
        #expect(app["creation_time"]?.intValue == h.clock.now / 1000)
        let native = try #require(h.json("GET", "/api/v1/clients/\(id)", token: token).json)
        #expect(native["grant_types"] == ["authorization_code", "refresh_token"])
        #expect(native["scope"] == "openid profile email offline_access")
        h.clock.advance(seconds: 5)
        let upload = h.call("PUT", "/api/oauth/app/id/\(id)/image", headers: [("Authorization", "Bearer \(token)"),
                            ("Content-Type", "multipart/form-data; boundary=XyZ-boundary-42")], body: Fixtures.multipart(contentType: "image/png", body: Fixtures.png300x120))
        #expect(upload.status == 204)
        let withLogo = try #require(h.call("GET", "/api/oauth/app/id/\(id)").json)
        #expect(withLogo["logo"]?.stringValue?.hasPrefix("data:image/png;base64,") == true)
        #expect(withLogo["time"]?.intValue == h.clock.now / 1000)
        let image = h.call("GET", "/api/oauth/app/id/\(id)/image")
        #expect(image.status == 200 && image.headers[.contentType] == "image/png")
        #expect(h.call("GET", "/api/oauth/app/id/\(id)/image", headers: [("If-None-Match", image.headers[.eTag]!)]).status == 304)
        let raw = h.call("PUT", "/api/oauth/app/id/\(id)/image", headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "image/png")], body: Fixtures.png300x120)
        #expect(raw.status == 415)
        let ids = try #require(h.call("GET", "/api/oauth/app/ids", query: "ids=\(id),unknown-app,\(id)").json?["apps"]?.arrayValue)
        #expect(ids.count == 1)
        #expect(h.json("PUT", "/api/oauth/app/id/\(id)", token: token, body: ["name": "Photos 2", "redirect_uri": "https://photos.example/cb2"]).status == 204)
        #expect(h.call("GET", "/api/oauth/app/id/\(id)").json?["redirect_uri"] == "https://photos.example/cb2")
        let rotated = try #require(h.json("PUT", "/api/oauth/app/id/\(id)/rotate", token: token).json)
        let key = try #require(rotated["key"]?.stringValue)
        let tokenResponse = h.form("/api/oauth/token", [("grant_type", "refresh_token"), ("refresh_token", "lkr_x")], basic: (id, key))
        #expect(tokenResponse.json?["error"] == "invalid_grant")  // authenticated with the new key
        let list = h.call("GET", "/api/oauth/app", query: "amount=10&offset=0", headers: [("Authorization", "Bearer \(token)")])
        #expect(list.json?["apps"]?.arrayValue?.count == 2)
        #expect(h.call("GET", "/api/oauth/app", query: "amount=0&offset=0", headers: [("Authorization", "Bearer \(token)")]).status == 400)
        #expect(h.call("GET", "/api/oauth/app", query: "amount=10", headers: [("Authorization", "Bearer \(token)")]).status == 400)
        #expect(h.json("DELETE", "/api/oauth/app/id/\(id)", token: token).status == 204)
        let gone = h.call("GET", "/api/oauth/app/id/\(id)")
        #expect(gone.status == 404 && gone.json?["message"] != nil)
    }

    @Test func validationAndScopes() throws {
        let h = try Harness()
        let token = try h.token()
        for bad: JSON in [["name": "x"], ["name": "", "redirect_uri": "https://a.example/cb"], ["name": "x", "redirect_uri": "https://a.example/cb#f"],
                          ["name": "x", "redirect_uri": .string("https://a.example/" + String(repeating: "p", count: 600))],
                          ["name": "x", "redirect_uri": "https://a.example/cb", "extra": 1], ["name": "x", "redirect_uri": "relative/cb"]] {
            let r = h.json("POST", "/api/oauth/app", token: token, body: bad)
            #expect(r.status == 400, "\(bad.text)")
            #expect(r.json?["message"] != nil)
        }
        let reader = try h.token(scope: "gov.user.oauth.app:read")
        #expect(h.json("POST", "/api/oauth/app", token: reader, body: ["name": "x", "redirect_uri": "https://a.example/cb"]).status == 403)
        #expect(h.json("POST", "/api/oauth/app", token: nil, body: ["name": "x", "redirect_uri": "https://a.example/cb"]).status == 401)
    }

    @Test func consentCodeForASignedInUser() throws {
        let h = try Harness()
        _ = try h.user()
        let token = try h.token()
        let created = try #require(h.json("POST", "/api/oauth/app", token: token, body: ["name": "Photos", "redirect_uri": "https://photos.example/cb"]).json)
        let id = try #require(created["client_id"]?.stringValue)
        let key = try #require(created["key"]?.stringValue)
        let b = Browser(h)
        let pkce = PKCE()
        let body: JSON = ["client_id": .string(id), "scope": "openid email email bogus", "nonce": "n1", "code_challenge": .string(pkce.challenge),
                          "code_challenge_method": "S256"]
        #expect(b.json("POST", "/api/oauth/auth/code", body).status == 401)
        b.login()
        #expect(b.json("POST", "/api/oauth/auth/code", body, csrf: false).status == 403)
        let r = b.json("POST", "/api/oauth/auth/code", body)
        #expect(r.status == 200, "\(r.bodyText)")
        let code = try #require(r.json?["code"]?.stringValue)
        let tokens = h.form("/api/oauth/token", [("grant_type", "authorization_code"), ("code", code), ("code_verifier", pkce.verifier)], basic: (id, key))
        #expect(tokens.status == 200, "\(tokens.bodyText)")
        #expect(tokens.json?["scope"] == "openid email")
        let access = try #require(tokens.json?["access_token"]?.stringValue)
        #expect(h.call("GET", "/api/oauth/userinfo", headers: [("Authorization", "Bearer \(access)")]).json?["email"] == "alice@example.com")
        for bad: JSON in [["client_id": .string(id), "scope": "email"], ["client_id": .string(id), "scope": "openid", "code_challenge_method": "plain", "code_challenge": .string(pkce.challenge)],
                          ["client_id": .string(id), "scope": "openid", "code_challenge": .string(pkce.challenge)],
                          ["client_id": .string(id), "scope": "openid", "code_challenge": "short", "code_challenge_method": "S256"],
                          ["client_id": .string(id), "scope": .string("openid " + String(repeating: "x", count: 260))],
                          ["client_id": .string(id), "scope": "openid", "nonce": "bad\u{1}nonce"]] {
            #expect(b.json("POST", "/api/oauth/auth/code", bad).status == 400, "\(bad.text)")
        }
        #expect(b.json("POST", "/api/oauth/auth/code", ["client_id": "nope-nope", "scope": "openid"]).status == 404)
        // Connections on this surface.
        let connections = b.send("GET", "/api/oauth/connection", query: "amount=10&offset=0")
        #expect(connections.json?["connections"]?.arrayValue?.first?["client_id"] == .string(id))
        #expect(connections.json?["connections"]?.arrayValue?.first?["client_name"] == nil)
        #expect(b.send("GET", "/api/oauth/connection/id/\(id)").json?["scope"] == "openid email")
        #expect(b.send("DELETE", "/api/oauth/connection/id/\(id)").status == 204)
        #expect(h.form("/oauth2/introspect", [("token", access)], basic: (id, key)).json == ["active": false])
        #expect(b.send("GET", "/api/oauth/connection/id/\(id)").status == 404)
        // Deleting the app takes its connections and tokens with it.
        let again = try #require(b.json("POST", "/api/oauth/auth/code", ["client_id": .string(id), "scope": "openid"]).json?["code"]?.stringValue)
        #expect(h.json("DELETE", "/api/oauth/app/id/\(id)", token: token).status == 204)
        #expect(h.form("/api/oauth/token", [("grant_type", "authorization_code"), ("code", again)], basic: (id, key)).status == 401)
        #expect(b.send("GET", "/api/oauth/connection", query: "amount=10&offset=0").json?["connections"] == [])
    }
}

/// SPEC 6.5: upstream OAuth client records.

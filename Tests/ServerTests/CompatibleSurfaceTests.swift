import Common
import HTTPCore
import OAuth
import TestSupport
import Testing

/// SPEC 6.2: the integration client API.
@Suite struct IntegrationSurfaceTests {
    @Test func createUseUpdateListResetDelete() throws {
        let h = try Harness()
        let token = try h.token()
        let created = h.json("POST", "/external/v1/oauth/client", token: token, body: [
            "password": "s3cret-pass", "application": "Billing", "accessScopes": ["createSubscription", "clients:read"], "extraData": ["team": 7],
        ])
        #expect(created.status == 201)
        let body = try #require(created.json)
        let id = try #require(body["clientId"]?.stringValue)
        #expect(body == ["clientId": .string(id), "application": "Billing", "accessScopes": ["createSubscription", "clients:read"], "extraData": ["team": 7]])
        // The caller-chosen password is the client secret at /oauth2/token, twice (the second from the cache).
        let own = try h.token(clientID: id, secret: "s3cret-pass")
        _ = try h.token(clientID: id, secret: "s3cret-pass")
        #expect(h.json("GET", "/external/v1/oauth/client/current", token: own).json?["clientId"] == .string(id))
        // Visible on the native API too.
        #expect(h.json("GET", "/api/v1/clients/\(id)", token: token).json?["client_name"] == "Billing")
        #expect(h.json("PUT", "/external/v1/oauth/client", token: token, body: ["clientId": .string(id), "application": "Billing v2"]).status == 204)
        let list = try #require(h.json("GET", "/external/v1/oauth/client", token: token).json?.arrayValue)
        #expect(list.contains { $0["clientId"] == .string(id) && $0["application"] == "Billing v2" && $0["primary"] == false })
        #expect(list.contains { $0["clientId"] == .string(h.primary.clientID) && $0["primary"] == true })
        #expect(h.json("PUT", "/external/v1/oauth/client/password-reset", token: token, body: ["clientId": .string(id), "password": "another-pass"]).status == 204)
        #expect((try? h.token(clientID: id, secret: "s3cret-pass")) == nil)
        let fresh = try h.token(clientID: id, secret: "another-pass")
        #expect(h.json("PUT", "/external/v1/oauth/password", token: fresh, body: ["password": "third-password"]).status == 204)
        _ = try h.token(clientID: id, secret: "third-password")
        #expect(h.json("DELETE", "/external/v1/oauth/client/\(id)", token: token).status == 204)
        #expect(h.json("GET", "/api/v1/clients/\(id)", token: token).status == 404)
        let gone = h.json("GET", "/external/v1/oauth/client/current", token: fresh)
        #expect(gone.status == 404 && gone.json?["code"] == "AU0006")
    }

    @Test func errorCodesOfTheSource() throws {
        let h = try Harness()
        let token = try h.token()
        func code(_ r: Response) -> String? { r.json?["code"]?.stringValue }
        let noToken = h.json("GET", "/external/v1/oauth/client", token: nil)
        #expect(noToken.status == 401 && code(noToken) == "AU0001")
        #expect(code(h.json("GET", "/external/v1/oauth/client", token: "garbage")) == "AU0001")
        let weak = try h.token(scope: "clients:read")
        let noScope = h.json("GET", "/external/v1/oauth/client", token: weak)
        #expect(noScope.status == 403 && code(noScope) == "AU0002")
        #expect(noScope.json?["message"] == "You do not have access to this scope: 'manageExternalClients'")
        for bad: JSON in [["application": "x"], ["password": "short", "application": "x"], ["password": "long-enough"],
                          ["password": "long-enough", "application": 5], ["password": "long-enough", "application": "x", "accessScopes": "a"],
                          ["password": "long-enough", "application": "x", "other": 1],
                          ["password": .string(String(repeating: "p", count: 73)), "application": "x"]] {
            let r = h.json("POST", "/external/v1/oauth/client", token: token, body: bad)
            #expect(r.status == 400 && code(r) == "GN0002", "\(bad.text)")
            #expect(r.json?["message"]?.stringValue?.hasPrefix("The payload you have supplied is invalid.") == true)
        }
        let malformed = h.call("POST", "/external/v1/oauth/client", headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "application/json")],
                               body: Array("{nope".utf8))
        #expect(code(malformed) == "GN0002")
        #expect(code(h.json("PUT", "/external/v1/oauth/client", token: token, body: ["clientId": "nope-nope", "application": "x"])) == "AU0005")
        #expect(code(h.json("DELETE", "/external/v1/oauth/client/nope-nope", token: token)) == "AU0005")
        let primaryDelete = h.json("DELETE", "/external/v1/oauth/client/\(h.primary.clientID)", token: token)
        #expect(primaryDelete.status == 409 && code(primaryDelete) == "AU0010")
        #expect(primaryDelete.json?["message"] == "Can't remove the primary OAuth client")
        // A secondary client with the scope: password reset and delete are the primary's.
        let secondary = try #require(h.json("POST", "/external/v1/oauth/client", token: token, body: [
            "password": "secondary-pass", "application": "Second", "accessScopes": ["manageExternalClients"]]).json?["clientId"]?.stringValue)
        let secondaryToken = try h.token(clientID: secondary, secret: "secondary-pass")
        let reset = h.json("PUT", "/external/v1/oauth/client/password-reset", token: secondaryToken, body: ["clientId": .string(h.primary.clientID), "password": "hijacked-pass"])
        #expect(reset.status == 403 && code(reset) == "AU0007")
        #expect(code(h.json("DELETE", "/external/v1/oauth/client/\(secondary)", token: secondaryToken)) == "AU0007")
        // Granting a privileged scope it lacks: AU0002.
        let escalate = h.json("POST", "/external/v1/oauth/client", token: secondaryToken, body: [
            "password": "long-enough", "application": "x", "accessScopes": ["keys:manage"]])
        #expect(escalate.status == 403 && code(escalate) == "AU0002")
        // Another organization's client: AU0008 on this surface.
        let org2 = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Other", clientLimit: 2)
        let token2 = try h.token(clientID: org2.clientID, secret: org2.clientSecret)
        let foreign = h.json("PUT", "/external/v1/oauth/client", token: token2, body: ["clientId": .string(secondary), "application": "stolen"])
        #expect(foreign.status == 403 && code(foreign) == "AU0008")
        #expect(code(h.json("DELETE", "/external/v1/oauth/client/\(secondary)", token: token2)) == "AU0008")
        // The limit: AU0009.
        _ = h.json("POST", "/external/v1/oauth/client", token: token2, body: ["password": "long-enough", "application": "one"])
        let limit = h.json("POST", "/external/v1/oauth/client", token: token2, body: ["password": "long-enough", "application": "two"])
        #expect(limit.status == 409 && code(limit) == "AU0009")
    }
}

/// SPEC 6.3: the identity platform API.
@Suite struct IdentitySurfaceTests {
    static let createBody: JSON = [
        "name": "Reporting", "description": "Nightly reports", "accessTokenValiditySeconds": 600,
        "grantTypes": ["CLIENT_CREDENTIALS"], "accessType": "ONLINE", "enabled": true, "businessName": "Acme Ltd",
        "homepageUrl": "https://reports.example",
    ]

    @Test func createReadPatchFilterDelete() throws {
        let h = try Harness()
        let token = try h.token()
        let r = h.json("POST", "/v3/oauth-clients", token: token, body: IdentitySurfaceTests.createBody)
        #expect(r.status == 200)
        let created = try #require(r.json)
        let id = try #require(created["id"]?.stringValue)
        #expect(created["secret"]?.stringValue?.hasPrefix("lks_") == true)
        #expect(created["scope"] == JSON(Scopes.primary))  // all of the creator's scopes
        #expect(created["type"] == "CONFIDENTIAL" && created["accessType"] == "ONLINE" && created["internal"] == false)
        #expect(created["lastUsed"] == .null)
        let read = try #require(h.json("GET", "/v3/oauth-clients/\(id)", token: token).json)
        #expect(read["secret"] == .null)
        #expect(read["businessName"] == "Acme Ltd" && read["homepageUrl"] == "https://reports.example")
        #expect(h.json("GET", "/api/v1/clients/\(id)", token: token).json?["client_uri"] == "https://reports.example")
        // JSON Patch, test included.
        let patch: JSON = [
            ["op": "test", "path": "/name", "value": "Reporting"], ["op": "replace", "path": "/name", "value": "Reports"],
            ["op": "add", "path": "/grantTypes/-", "value": "AUTHORIZATION_CODE"], ["op": "add", "path": "/redirectUris/-", "value": "https://reports.example/cb"],
            ["op": "replace", "path": "/accessType", "value": "OFFLINE"],
        ]
        let patched = h.json("PATCH", "/v3/oauth-clients/\(id)", token: token, body: patch, contentType: "application/json-patch+json")
        #expect(patched.status == 200, "\(patched.bodyText)")
        #expect(patched.json?["name"] == "Reports")
        #expect(patched.json?["grantTypes"] == ["CLIENT_CREDENTIALS", "AUTHORIZATION_CODE"])
        let failedTest = h.json("PATCH", "/v3/oauth-clients/\(id)", token: token, body: [["op": "test", "path": "/name", "value": "nope"]],
                                contentType: "application/json-patch+json")
        #expect(failedTest.status == 400)
        for path in ["/type", "/internal", "/scope", "/id", "/secret", "/created"] {
            let refused = h.json("PATCH", "/v3/oauth-clients/\(id)", token: token, body: [["op": "replace", "path": .string(path), "value": "x"]],
                                 contentType: "application/json-patch+json")
            #expect(refused.status == 400, "\(path)")
            #expect(refused.json?["detailCode"] == "400.1 Bad Request Content")
        }
        #expect(h.json("PATCH", "/v3/oauth-clients/\(id)", token: token, body: [["op": "replace", "path": "/name", "value": "x"]]).status == 415)
        // Filters.
        _ = try h.token(clientID: h.primary.clientID)
        let never = try #require(h.call("GET", "/v3/oauth-clients", query: "filters=lastUsed%20isnull&count=true", headers: [("Authorization", "Bearer \(token)")]).json?.arrayValue)
        #expect(never.contains { $0["id"] == .string(id) })
        #expect(!never.contains { $0["id"] == .string(h.primary.clientID) })
        let old = h.call("GET", "/v3/oauth-clients", query: "filters=" + PercentEncoding.encode("lastUsed le 2100-01-01T00:00:00Z"),
                         headers: [("Authorization", "Bearer \(token)")])
        #expect(old.json?.arrayValue?.contains { $0["id"] == .string(h.primary.clientID) } == true)
        #expect(h.call("GET", "/v3/oauth-clients", query: "filters=name%20eq%20x", headers: [("Authorization", "Bearer \(token)")]).status == 400)
        #expect(h.json("DELETE", "/v3/oauth-clients/\(id)", token: token).status == 204)
        let gone = h.json("GET", "/v3/oauth-clients/\(id)", token: token)
        #expect(gone.status == 404)
        #expect(gone.json?["trackingId"] == "req-test")
        #expect(gone.json?["messages"]?.arrayValue?.first?["locale"] == "en-US")
    }

    @Test func requiredFieldsScopesAndErrorShapes() throws {
        let h = try Harness()
        let token = try h.token()
        for field in ["name", "description", "accessTokenValiditySeconds", "grantTypes", "accessType", "enabled"] {
            var body = IdentitySurfaceTests.createBody
            body.remove(field)
            let r = h.json("POST", "/v3/oauth-clients", token: token, body: body)
            #expect(r.status == 400, "\(field)")
            #expect(r.json?["causes"]?.arrayValue?.first?["field"] == .string(field))
        }
        var wrongEnum = IdentitySurfaceTests.createBody
        wrongEnum.set("grantTypes", ["PASSWORD"])
        #expect(h.json("POST", "/v3/oauth-clients", token: token, body: wrongEnum).status == 400)
        var readOnly = IdentitySurfaceTests.createBody
        readOnly.set("id", "chosen-id")
        #expect(h.json("POST", "/v3/oauth-clients", token: token, body: readOnly).status == 400)
        let unauth = h.json("GET", "/v3/oauth-clients", token: "bad")
        #expect(unauth.status == 401)
        #expect(unauth.json?["error"]?.stringValue?.hasPrefix("JWT validation failed") == true)
        let readOnlyToken = try h.token(scope: "sp:oauth-client:read")
        #expect(h.json("GET", "/v3/oauth-clients", token: readOnlyToken).status == 200)
        let forbidden = h.json("POST", "/v3/oauth-clients", token: readOnlyToken, body: IdentitySurfaceTests.createBody)
        #expect(forbidden.status == 403 && forbidden.json?["detailCode"] == "403.0 Forbidden")
        // Public clients get no secret; OFFLINE clients always get refresh tokens.
        var publicBody = IdentitySurfaceTests.createBody
        publicBody.set("type", "PUBLIC")
        publicBody.set("grantTypes", ["AUTHORIZATION_CODE"])
        publicBody.set("redirectUris", ["https://spa.example/cb"])
        publicBody.set("scope", ["openid"])
        let pub = try #require(h.json("POST", "/v3/oauth-clients", token: token, body: publicBody).json)
        #expect(pub["secret"] == .null && pub["type"] == "PUBLIC")
    }
}

/// SPEC 6.4: the app API.
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
@Suite struct UpstreamSurfaceTests {
    func basic(_ h: Harness) -> (String, String) { ("Authorization", Harness.basic(h.primary.clientID, h.primary.clientSecret)) }

    func send(_ h: Harness, _ method: String, query: String = "", path: String = "/uc/resources/oauthclient", contentType: String? = "application/json",
              accept: String? = nil, body: String = "", auth: Bool = true) -> Response {
        var headers: [(String, String)] = []
        if auth { headers.append(basic(h)) }
        if let contentType, !body.isEmpty { headers.append(("Content-Type", contentType)) }
        if let accept { headers.append(("Accept", accept)) }
        return h.call(method, path, query: query, headers: headers, body: Array(body.utf8))
    }

    @Test func jsonLifecycle() throws {
        let h = try Harness()
        let create = """
            {"name": "Corp Azure", "provider": "Azure AD", "tenantId": "contoso.onmicrosoft.com", "clientId": "abc-123", "clientSecret": "upstream-secret",
             "scopes": ["openid", "email"], "clusterRedirectUrls": [{"clusterNode": "node1", "redirectUrl": "https://uc.example/cb"}],
             "opswiseGroups": ["ops"], "sysId": "0123456789abcdef0123456789abcdef", "description": "SSO"}
            """
        let r = send(h, "POST", body: create)
        #expect(r.status == 200)
        #expect(r.bodyText == "Successfully created the OAuth Client with id 0123456789abcdef0123456789abcdef.")
        let read = try #require(send(h, "GET", query: "oauthclientname=Corp%20Azure").json)
        #expect(read["authorizationEndpoint"] == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize")
        #expect(read["tokenEndpoint"] == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token")
        #expect(read["clientSecret"] == nil)
        #expect(read["version"] == 1)
        #expect(!send(h, "GET", query: "oauthclientid=0123456789abcdef0123456789abcdef").bodyText.contains("upstream-secret"))
        // Update by sysId with the current version; a stale version is 409.
        let update = send(h, "PUT", body: #"{"sysId": "0123456789abcdef0123456789abcdef", "description": "Updated", "version": 1}"#)
        #expect(update.bodyText == "Successfully updated the OAuth Client with id 0123456789abcdef0123456789abcdef.")
        #expect(send(h, "PUT", body: #"{"sysId": "0123456789abcdef0123456789abcdef", "description": "Stale", "version": 1}"#).status == 409)
        #expect(send(h, "PUT", body: #"{"name": "Corp Azure", "provider": "Google"}"#).status == 400)
        #expect(send(h, "GET", query: "oauthclientid=0123456789abcdef0123456789abcdef").json?["version"] == 2)
        // retainSysIds false: a new id is generated.
        let generated = send(h, "POST", body: #"{"name": "Google SSO", "provider": 2, "clientId": "g", "clientSecret": "s", "scopes": ["openid"], "sysId": "ffffffffffffffffffffffffffffffff", "retainSysIds": false}"#)
        #expect(generated.status == 200)
        #expect(!generated.bodyText.contains("ffffffffffffffffffffffffffffffff"))
        let list = try #require(send(h, "GET", path: "/uc/resources/oauthclient/list").json?.arrayValue)
        #expect(list.count == 2)
        #expect(list.first(where: { $0["name"] == "Google SSO" })?["authorizationEndpoint"] == "https://accounts.google.com/o/oauth2/v2/auth")
        #expect(send(h, "POST", body: #"{"name": "Google SSO", "provider": "Google", "clientId": "g", "clientSecret": "s", "scopes": ["openid"]}"#).status == 409)
        #expect(send(h, "DELETE", query: "oauthclientname=Google%20SSO").bodyText == "OAuth Client deleted successfully.")
        let missing = send(h, "GET", query: "oauthclientname=Google%20SSO")
        #expect(missing.status == 404 && missing.bodyText == "An OAuth Client with name \"Google SSO\" does not exist.")
        #expect(send(h, "GET", query: "oauthclientid=00000000000000000000000000000000").bodyText == "An OAuth Client with id \"00000000000000000000000000000000\" does not exist.")
        #expect(send(h, "GET", query: "oauthclientname=a&oauthclientid=b").status == 400)
        #expect(send(h, "GET").status == 400)
    }

    @Test func xmlInAndOut() throws {
        let h = try Harness()
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <oauthClient retainSysIds="true">
              <name>XML &amp; Co</name><provider>Google</provider><clientId>xml-client</clientId><clientSecret>s3cret</clientSecret>
              <scopes><scope>openid</scope><scope>email</scope></scopes>
              <clusterRedirectUrls><clusterRedirectUrl><clusterNode>n1</clusterNode><redirectUrl>https://uc.example/cb</redirectUrl></clusterRedirectUrl></clusterRedirectUrls>
              <opswiseGroups><opswiseGroup>admins</opswiseGroup></opswiseGroups>
            </oauthClient>
            """
        let r = send(h, "POST", contentType: "application/xml", body: xml)
        #expect(r.status == 200, "\(r.bodyText)")
        let out = send(h, "GET", query: "oauthclientname=XML%20%26%20Co", accept: "application/xml")
        #expect(out.headers[.contentType]?.hasPrefix("application/xml") == true)
        let doc = try XMLElement.parse(out.body)
        #expect(doc.name == "oauthClient")
        #expect(doc.child("name")?.text == "XML & Co")
        #expect(doc.child("scopes")?.all("scope").map(\.text) == ["openid", "email"])
        #expect(doc.child("clientSecret") == nil)
        #expect(doc.child("tokenEndpoint")?.text == "https://oauth2.googleapis.com/token")
        let list = try XMLElement.parse(send(h, "GET", path: "/uc/resources/oauthclient/list", accept: "application/xml").body)
        #expect(list.name == "oauthClients" && list.all("oauthClient").count == 1)
    }

    @Test func xxeAndBadBodiesAreRefused() throws {
        let h = try Harness()
        let xxe = """
            <?xml version="1.0"?><!DOCTYPE oauthClient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
            <oauthClient><name>&xxe;</name><provider>Google</provider><clientId>c</clientId><clientSecret>s</clientSecret><scopes><scope>a</scope></scopes></oauthClient>
            """
        let r = send(h, "POST", contentType: "application/xml", body: xxe)
        #expect(r.status == 400)
        #expect(!r.bodyText.contains("root:"))
        let cases: [(String, String)] = [
            ("application/xml", "<oauthClient><name>x</name>"), ("application/xml", "<oauthClient><bogus>1</bogus></oauthClient>"),
            ("application/xml", "<oauthClient><name>&undefined;</name></oauthClient>"), ("application/json", "{"),
            ("application/json", #"{"name": "x", "provider": "Okta", "clientId": "c", "clientSecret": "s", "scopes": ["a"]}"#),
            ("application/json", #"{"name": "x", "provider": "Google", "clientId": "c", "clientSecret": "s", "scopes": []}"#),
            ("application/json", #"{"name": "x", "provider": "Google", "clientId": "c", "scopes": ["a"]}"#),
            ("application/json", #"{"provider": "Google", "clientId": "c", "clientSecret": "s", "scopes": ["a"]}"#),
            ("application/json", #"{"name": "x", "provider": "Google", "clientId": "c", "clientSecret": "s", "scopes": ["a"], "sysId": "xyz"}"#),
            ("application/json", #"{"name": "x", "provider": "Google", "clientId": "c", "clientSecret": "s", "scopes": ["a"], "unknown": 1}"#),
            ("application/json", .init(repeating: "x", count: 3)),
        ]
        for (type, body) in cases {
            let response = send(h, "POST", contentType: type, body: body)
            #expect(response.status == 400, "\(body): \(response.bodyText)")
            #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
        }
        #expect(send(h, "POST", contentType: "text/csv", body: "a,b").status == 415)
        #expect(try h.store.upstreams(organizationID: h.primary.organizationID).isEmpty)
    }

    @Test func httpBasicWithProvidersManageOnly() throws {
        let h = try Harness()
        let none = send(h, "GET", path: "/uc/resources/oauthclient/list", auth: false)
        #expect(none.status == 401 && none.headers[.wwwAuthenticate]?.hasPrefix("Basic") == true)
        #expect(none.bodyText == "Operation prohibited due to security constraints.")
        let wrong = h.call("GET", "/uc/resources/oauthclient/list", headers: [("Authorization", Harness.basic(h.primary.clientID, "lks_wrong"))])
        #expect(wrong.status == 403 && wrong.bodyText == "Operation prohibited due to security constraints.")
        let bearer = h.call("GET", "/uc/resources/oauthclient/list", headers: [("Authorization", "Bearer \(try h.token())")])
        #expect(bearer.status == 401 || bearer.status == 403)
        // A client without providers:manage is refused.
        let hasher = try Provisioning.secretHasher(store: h.store, env: h.env)
        let secret = hasher.generate(h.env)
        try h.store.write {
            try h.store.insertClient(Client(clientID: "no-providers", organizationID: h.primary.organizationID, name: "x", scope: ["clients:read"], createdAt: 0))
            try h.store.insertSecret(hasher.record(for: secret, clientID: "no-providers", at: 0))
        }
        let noScope = h.call("GET", "/uc/resources/oauthclient/list", headers: [("Authorization", Harness.basic("no-providers", secret))])
        #expect(noScope.status == 403)
    }

    @Test func secretsAreSealedWithTheKEK() throws {
        let h = try Harness(kek: Array(repeating: 7, count: 32))
        #expect(send(h, "POST", body: #"{"name": "Sealed", "provider": "Google", "clientId": "c", "clientSecret": "very-secret-value", "scopes": ["openid"]}"#).status == 200)
        let stored = try #require(try h.store.upstreams(organizationID: h.primary.organizationID).first)
        #expect(stored.secretEncrypted)
        #expect(!String(decoding: stored.secret, as: UTF8.self).contains("very-secret-value"))
    }
}

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
        #expect(Set(surfaces).isSuperset(of: ["integration", "v3", "app", "native"]))
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

import Common
import Cryptography
import HTTPCore
import JOSE
import OAuth
import TestSupport
import Testing

/// A browser: cookies in, cookies out.
final class Browser {
    let h: Harness
    var cookies: [String: String] = [:]

    init(_ h: Harness) { self.h = h }

    func send(_ method: String, _ path: String, query: String = "", headers: [(String, String)] = [], body: [UInt8] = [], csrf: Bool = true) -> Response {
        var all = headers
        if !cookies.isEmpty { all.append(("Cookie", cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; "))) }
        if csrf, let token = cookies["lk_csrf"] { all.append(("X-CSRF-Token", token)) }
        let r = h.call(method, path, query: query, headers: all, body: body)
        for header in r.headers[values: .setCookie] {
            let pair = header.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
            if pair.count == 2 { cookies[String(pair[0])] = pair[1].isEmpty ? nil : String(pair[1]) }
        }
        return r
    }

    func json(_ method: String, _ path: String, _ body: JSON, csrf: Bool = true) -> Response {
        send(method, path, headers: [("Content-Type", "application/json")], body: body.serialized(), csrf: csrf)
    }

    @discardableResult
    func login(_ username: String = "alice", _ password: String = "correct horse battery") -> Response {
        json("POST", "/api/v1/session", ["username": .string(username), "password": .string(password)], csrf: false)
    }

    func authorize(_ params: [(String, String)]) -> Response {
        send("GET", "/oauth2/authorize", query: FormEncoding.serialize(params))
    }
}

struct PKCE {
    let verifier = Base64.urlEncode(SecureRandom.bytes(32))
    var challenge: String { Base64.urlEncode(Digest.sha256(verifier)) }
}

func queryItems(_ location: String) -> [String: String] {
    guard let q = location.split(separator: "?", maxSplits: 1).dropFirst().first, let items = FormEncoding.parse(String(q)) else { return [:] }
    return Dictionary(items, uniquingKeysWith: { a, _ in a })
}

@Suite struct UserFlowTests {
    func authorizeParams(_ client: String, _ pkce: PKCE, scope: String = "openid profile email offline_access", extra: [(String, String)] = []) -> [(String, String)] {
        [("response_type", "code"), ("client_id", client), ("redirect_uri", Harness.redirect), ("scope", scope), ("state", "st-1"),
         ("nonce", "n-1"), ("code_challenge", pkce.challenge), ("code_challenge_method", "S256")] + extra
    }

    /// Runs authorize → login → continue → consent accept; returns the code.
    func code(_ h: Harness, _ b: Browser, client: String, pkce: PKCE, scope: String = "openid profile email offline_access",
              grant: [String]? = nil, remember: Bool = true) throws -> String {
        let first = b.authorize(authorizeParams(client, pkce, scope: scope))
        #expect(first.status == 303)
        var location = try #require(first.headers[.location])
        if location.hasPrefix("/login/") {
            let request = try #require(queryItems(location)["request"])
            #expect(b.login().status == 204)
            let next = b.send("GET", "/oauth2/authorize/continue", query: "request=\(PercentEncoding.encode(request))")
            location = try #require(next.headers[.location])
        }
        if location.hasPrefix("/consent/") {
            let request = try #require(queryItems(location)["request"])
            let details = b.send("GET", "/api/v1/authorization-requests/\(request)")
            #expect(details.status == 200)
            let granted = grant ?? (details.json?["scopes"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
            let accepted = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": JSON(granted), "remember": .bool(remember)])
            #expect(accepted.status == 200, "\(accepted.bodyText)")
            location = try #require(accepted.json?["redirect_to"]?.stringValue)
        }
        #expect(location.hasPrefix(Harness.redirect + "?"))
        let items = queryItems(location)
        #expect(items["state"] == "st-1")
        #expect(items["iss"] == Harness.issuer)
        return try #require(items["code"])
    }

    func exchange(_ h: Harness, client: String, secret: String? = nil, code: String, verifier: String) -> Response {
        var items = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Harness.redirect), ("code_verifier", verifier)]
        if secret == nil { items.append(("client_id", client)) }
        return h.form("/oauth2/token", items, basic: secret.map { (client, $0) })
    }

    @Test func publicClientCodeFlowWithPKCEIssuesVerifiableTokens() throws {
        let h = try Harness()
        let userID = try h.user()
        let (client, _) = try h.app()
        let b = Browser(h)
        let pkce = PKCE()
        let code = try code(h, b, client: client, pkce: pkce)
        let r = exchange(h, client: client, code: code, verifier: pkce.verifier)
        #expect(r.status == 200, "\(r.bodyText)")
        let body = try #require(r.json)
        #expect(body["refresh_token"]?.stringValue?.hasPrefix("lkr_") == true)
        #expect(body["scope"] == "openid profile email offline_access")
        let idTokenText = try #require(body["id_token"]?.stringValue)
        let idToken = try #require(JWS.parse(idTokenText))
        let claims = idToken.payload
        #expect(claims["iss"] == .string(Harness.issuer))
        #expect(claims["sub"] == .string(userID))
        #expect(claims["aud"] == .string(client))
        #expect(claims["azp"] == .string(client))
        #expect(claims["nonce"] == "n-1")
        #expect(claims["email"] == "alice@example.com")
        #expect(claims["name"] == "Alice Liddell")
        #expect(claims["auth_time"]?.intValue != nil)
        let access = try #require(body["access_token"]?.stringValue)
        #expect(claims["at_hash"] == .string(Base64.urlEncode(Array(Digest.sha256(access).prefix(16)))))
        let accessClaims = try #require(JWS.parse(access)).payload
        #expect(accessClaims["sub"] == .string(userID))
        #expect(accessClaims["auth_time"]?.intValue != nil)
        // Userinfo, GET and POST.
        let info = h.call("GET", "/oauth2/userinfo", headers: [("Authorization", "Bearer \(access)")])
        #expect(info.status == 200)
        #expect(info.json?["sub"] == .string(userID))
        #expect(info.json?["preferred_username"] == "alice")
        let post = h.form("/oauth2/userinfo", [("access_token", access)])
        #expect(post.json?["sub"] == .string(userID))
        // A client_credentials token is not a user's: userinfo refuses it.
        let refused = h.call("GET", "/oauth2/userinfo", headers: [("Authorization", "Bearer \(try h.token())")])
        #expect(refused.status == 401)
        #expect(refused.json?["error_description"] == "The access token was not issued to a user.")
        #expect(refused.headers[.wwwAuthenticate]?.contains("error_description=\"The access token was not issued to a user.\"") == true)
    }

    @Test func confidentialClientsAuthenticateAtTheTokenEndpoint() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: false)
        let b = Browser(h)
        let pkce = PKCE()
        let code = try code(h, b, client: client, pkce: pkce)
        #expect(exchange(h, client: client, code: code, verifier: pkce.verifier).status == 401)
        #expect(exchange(h, client: client, secret: secret, code: code, verifier: pkce.verifier).status == 200)
    }

    @Test func codesAreSingleUseAndAReplayRevokesWhatTheFirstIssued() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let pkce = PKCE()
        let code = try code(h, Browser(h), client: client, pkce: pkce)
        let first = exchange(h, client: client, code: code, verifier: pkce.verifier)
        #expect(first.status == 200)
        let access = try #require(first.json?["access_token"]?.stringValue)
        let refresh = try #require(first.json?["refresh_token"]?.stringValue)
        let second = exchange(h, client: client, code: code, verifier: pkce.verifier)
        #expect(second.status == 400)
        #expect(second.json?["error"] == "invalid_grant")
        #expect(h.form("/oauth2/introspect", [("token", access)], basic: (h.primary.clientID, h.primary.clientSecret)).json == ["active": false])
        let refreshed = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)])
        #expect(refreshed.json?["error"] == "invalid_grant")
    }

    @Test func codesExpireAfterSixtySecondsAndCheckTheVerifier() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let pkce = PKCE()
        let b = Browser(h)
        let c1 = try code(h, b, client: client, pkce: pkce)
        #expect(exchange(h, client: client, code: c1, verifier: PKCE().verifier).json?["error"] == "invalid_grant")
        let c2 = try code(h, b, client: client, pkce: pkce)
        h.clock.advance(seconds: 61)
        #expect(exchange(h, client: client, code: c2, verifier: pkce.verifier).json?["error"] == "invalid_grant")
        // Another client cannot redeem it.
        let c3 = try code(h, b, client: client, pkce: pkce)
        let (other, _) = try h.app()
        #expect(exchange(h, client: other, code: c3, verifier: pkce.verifier).json?["error"] == "invalid_grant")
        // The redirect_uri must repeat the one sent.
        let c4 = try code(h, b, client: client, pkce: pkce)
        let wrong = h.form("/oauth2/token", [("grant_type", "authorization_code"), ("code", c4), ("redirect_uri", "https://app.example/other"),
                                             ("code_verifier", pkce.verifier), ("client_id", client)])
        #expect(wrong.json?["error"] == "invalid_grant")
    }

    @Test func refreshTokensRotateAndReuseRevokesTheFamily() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let pkce = PKCE()
        let first = exchange(h, client: client, code: try code(h, Browser(h), client: client, pkce: pkce), verifier: pkce.verifier).json!
        let r1 = try #require(first["refresh_token"]?.stringValue)
        let rotated = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", r1), ("client_id", client)])
        #expect(rotated.status == 200)
        let r2 = try #require(rotated.json?["refresh_token"]?.stringValue)
        let a2 = try #require(rotated.json?["access_token"]?.stringValue)
        #expect(r2 != r1)
        // Narrower scope on refresh is allowed, wider is not.
        let narrow = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", r2), ("client_id", client), ("scope", "openid")])
        #expect(narrow.json?["scope"] == "openid")
        let r3 = try #require(narrow.json?["refresh_token"]?.stringValue)
        let wide = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", r3), ("client_id", client), ("scope", "openid admin")])
        #expect(wide.json?["error"] == "invalid_scope")
        // Presenting a rotated-out token revokes the whole family.
        let reuse = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", r1), ("client_id", client)])
        #expect(reuse.json?["error"] == "invalid_grant")
        #expect(h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", r3), ("client_id", client)]).json?["error"] == "invalid_grant")
        #expect(h.form("/oauth2/introspect", [("token", a2)], basic: (h.primary.clientID, h.primary.clientSecret)).json == ["active": false])
        // Refresh tokens are bound to their client.
        let (other, _) = try h.app()
        let fresh = exchange(h, client: client, code: try code(h, Browser(h), client: client, pkce: pkce), verifier: pkce.verifier).json!
        let stolen = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", fresh["refresh_token"]!.stringValue!), ("client_id", other)])
        #expect(stolen.json?["error"] == "invalid_grant")
    }

    @Test func noRefreshTokenWithoutOfflineAccess() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let pkce = PKCE()
        let r = exchange(h, client: client, code: try code(h, Browser(h), client: client, pkce: pkce, scope: "openid profile"), verifier: pkce.verifier)
        #expect(r.status == 200)
        #expect(r.json?["refresh_token"] == nil)
    }

    @Test(arguments: [
        "https://app.example/cb/", "https://app.example/cbx", "https://app.example/c", "https://APP.example/cb", "https://app.example/CB",
        "https://app.example/cb?x=1", "https://app.example/cb#f", "https://app.example/x/../cb", "https://app.example/x/%2e%2e/cb",
        "https://user@app.example/cb", "https://app.example.evil.com/cb", "http://app.example/cb", "https://app.example:443/cb",
    ])
    func redirectURIVariantsAreRefusedWithoutRedirect(_ uri: String) throws {
        let h = try Harness()
        let (client, _) = try h.app()
        let b = Browser(h)
        let pkce = PKCE()
        let r = b.authorize([("response_type", "code"), ("client_id", client), ("redirect_uri", uri), ("scope", "openid"),
                             ("code_challenge", pkce.challenge), ("code_challenge_method", "S256")])
        #expect(r.status == 400)
        #expect(r.headers[.location] == nil)
        #expect(r.headers[.contentType]?.hasPrefix("text/html") == true)
    }

    @Test func loopbackRedirectsMatchAnyPort() throws {
        let h = try Harness()
        let (client, _) = try h.app(redirectURIs: ["http://127.0.0.1/callback"])
        let pkce = PKCE()
        let r = Browser(h).authorize([("response_type", "code"), ("client_id", client), ("redirect_uri", "http://127.0.0.1:53124/callback"),
                                      ("scope", "openid"), ("code_challenge", pkce.challenge), ("code_challenge_method", "S256")])
        #expect(r.status == 303)
        #expect(r.headers[.location]?.hasPrefix("/login/") == true)
        let wrongPath = Browser(h).authorize([("response_type", "code"), ("client_id", client), ("redirect_uri", "http://127.0.0.1:53124/other"),
                                              ("scope", "openid"), ("code_challenge", pkce.challenge), ("code_challenge_method", "S256")])
        #expect(wrongPath.status == 400)
    }

    @Test func unknownClientsGetAnErrorPage() throws {
        let h = try Harness()
        let r = Browser(h).authorize([("response_type", "code"), ("client_id", "nope"), ("redirect_uri", Harness.redirect), ("scope", "openid")])
        #expect(r.status == 400 && r.headers[.location] == nil)
        #expect(r.bodyText.contains("unknown"))
    }

    @Test(arguments: [
        ([("response_type", "token")], "unsupported_response_type"),
        ([("code_challenge_method", "plain")], "invalid_request"),
        ([("scope", "openid clients:write")], "invalid_scope"),
        ([("scope", "openid nonsense")], "invalid_scope"),
        ([("prompt", "none login")], "invalid_request"),
        ([("max_age", "-1")], "invalid_request"),
    ] as [([(String, String)], String)])
    func laterErrorsRedirectWithStateAndIssuer(_ overrides: [(String, String)], _ error: String) throws {
        let h = try Harness()
        let (client, _) = try h.app()
        let pkce = PKCE()
        var params = Dictionary(authorizeParams(client, pkce), uniquingKeysWith: { a, _ in a })
        for (k, v) in overrides { params[k] = v }
        let r = Browser(h).authorize(params.map { ($0.key, $0.value) })
        #expect(r.status == 303)
        let location = try #require(r.headers[.location])
        #expect(location.hasPrefix(Harness.redirect + "?"))
        let items = queryItems(location)
        #expect(items["error"] == error)
        #expect(items["state"] == "st-1")
        #expect(items["iss"] == Harness.issuer)
    }

    @Test func publicClientsMustUsePKCE() throws {
        let h = try Harness()
        let (client, _) = try h.app()
        let r = Browser(h).authorize([("response_type", "code"), ("client_id", client), ("redirect_uri", Harness.redirect), ("scope", "openid"), ("state", "s")])
        #expect(queryItems(r.headers[.location] ?? "")["error"] == "invalid_request")
    }

    @Test func promptNoneAnswersWithoutAPage() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let pkce = PKCE()
        let b = Browser(h)
        let noSession = b.authorize(authorizeParams(client, pkce, extra: [("prompt", "none")]))
        #expect(queryItems(noSession.headers[.location] ?? "")["error"] == "login_required")
        b.login()
        let noConsent = b.authorize(authorizeParams(client, pkce, extra: [("prompt", "none")]))
        #expect(queryItems(noConsent.headers[.location] ?? "")["error"] == "consent_required")
        _ = try code(h, b, client: client, pkce: pkce)
        let silent = b.authorize(authorizeParams(client, pkce, extra: [("prompt", "none")]))
        #expect(queryItems(silent.headers[.location] ?? "")["code"] != nil)
        // prompt=consent asks again even though consent is remembered.
        let again = b.authorize(authorizeParams(client, pkce, extra: [("prompt", "consent")]))
        #expect(again.headers[.location]?.hasPrefix("/consent/") == true)
        // prompt=login asks to sign in again.
        h.clock.advance(seconds: 1)
        let relogin = b.authorize(authorizeParams(client, pkce, extra: [("prompt", "login")]))
        #expect(relogin.headers[.location]?.hasPrefix("/login/") == true)
    }

    @Test func rememberFalseAsksAgainNextTime() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let pkce = PKCE()
        let b = Browser(h)
        _ = try code(h, b, client: client, pkce: pkce, remember: false)
        let next = b.authorize(authorizeParams(client, pkce))
        #expect(next.headers[.location]?.hasPrefix("/consent/") == true)
    }

    @Test func consentRules() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let pkce = PKCE()
        let b = Browser(h)
        b.login()
        let location = try #require(b.authorize(authorizeParams(client, pkce, scope: "openid profile")).headers[.location])
        let request = try #require(queryItems(location)["request"])
        let details = try #require(b.send("GET", "/api/v1/authorization-requests/\(request)").json)
        #expect(details["client"]?["client_name"] == "Photo <b>Book</b>")
        #expect(details["redirect_uri"] == .string(Harness.redirect))
        #expect(details["scopes"]?.arrayValue?.first?["description"]?.stringValue?.isEmpty == false)
        // More than asked: refused.
        #expect(b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid", "email"]]).status == 400)
        // Without the CSRF header: refused, no code.
        let noCSRF = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid"]], csrf: false)
        #expect(noCSRF.status == 403)
        #expect(noCSRF.json?["redirect_to"] == nil)
        // Fewer is fine; the code carries only what was granted.
        let ok = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid"], "remember": false])
        let redirectTo = try #require(ok.json?["redirect_to"]?.stringValue)
        let code = try #require(queryItems(redirectTo)["code"])
        #expect(exchange(h, client: client, code: code, verifier: pkce.verifier).json?["scope"] == "openid")
        // Answered once.
        #expect(b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid"]]).status == 404)
        #expect(b.json("POST", "/api/v1/authorization-requests/\(request)/reject", [:]).status == 404)
        // Reject sends access_denied.
        let l2 = try #require(b.authorize(authorizeParams(client, pkce)).headers[.location])
        let r2 = try #require(queryItems(l2)["request"])
        let rejected = b.json("POST", "/api/v1/authorization-requests/\(r2)/reject", [:])
        let target = try #require(rejected.json?["redirect_to"]?.stringValue)
        #expect(queryItems(target)["error"] == "access_denied")
        #expect(queryItems(target)["state"] == "st-1")
        // Requests expire after 10 minutes.
        let l3 = try #require(b.authorize(authorizeParams(client, pkce)).headers[.location])
        h.clock.advance(seconds: 601)
        let r3 = try #require(queryItems(l3)["request"])
        #expect(b.send("GET", "/api/v1/authorization-requests/\(r3)").status == 404)
    }

    @Test func loginFailuresLookTheSame() throws {
        let h = try Harness()
        _ = try h.user()
        let b = Browser(h)
        let wrongPassword = b.login("alice", "wrong password")
        let unknownUser = b.login("mallory", "wrong password")
        #expect(wrongPassword.status == 401 && unknownUser.status == 401)
        #expect(wrongPassword.json?["detail"] == unknownUser.json?["detail"])
        #expect(wrongPassword.json?["code"] == unknownUser.json?["code"])
        #expect(b.cookies.isEmpty)
        #expect(b.send("GET", "/api/v1/session").status == 401)
        let ok = b.login()
        #expect(ok.status == 204)
        let setCookies = ok.headers[values: .setCookie]
        #expect(setCookies.contains { $0.hasPrefix("lk_session=") && $0.contains("HttpOnly") && $0.contains("SameSite=Lax") && $0.contains("Secure") })
        #expect(setCookies.contains { $0.hasPrefix("lk_csrf=") && !$0.contains("HttpOnly") })
        #expect(b.send("GET", "/api/v1/session").json?["username"] == "alice")
        #expect(b.send("DELETE", "/api/v1/session", csrf: false).status == 403)
        #expect(b.send("DELETE", "/api/v1/session").status == 204)
        #expect(b.send("GET", "/api/v1/session").status == 401)
    }

    @Test func connectionsListAndRevoke() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let pkce = PKCE()
        let b = Browser(h)
        let tokens = exchange(h, client: client, code: try code(h, b, client: client, pkce: pkce), verifier: pkce.verifier).json!
        let access = try #require(tokens["access_token"]?.stringValue)
        let list = b.send("GET", "/api/v1/me/connections")
        let connections = try #require(list.json?["connections"]?.arrayValue)
        #expect(connections.count == 1)
        #expect(connections[0]["client_id"] == .string(client))
        #expect(connections[0]["client_name"] == "Photo <b>Book</b>")
        #expect(connections[0]["scope"] == "openid profile email offline_access")
        // A user's token with connections:read works too... but this one lacks it.
        #expect(h.call("GET", "/api/v1/me/connections", headers: [("Authorization", "Bearer \(access)")]).status == 403)
        #expect(b.send("GET", "/api/v1/me/connections/\(client)").json?["client_id"] == .string(client))
        #expect(b.send("GET", "/api/v1/me/connections/unknown-app").status == 404)
        #expect(b.send("DELETE", "/api/v1/me/connections/\(client)", csrf: false).status == 403)
        #expect(b.send("DELETE", "/api/v1/me/connections/\(client)").status == 204)
        #expect(h.form("/oauth2/introspect", [("token", access)], basic: (h.primary.clientID, h.primary.clientSecret)).json == ["active": false])
        #expect(h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"]!.stringValue!), ("client_id", client)]).status == 400)
        // The consent is forgotten: the next authorization asks again.
        #expect(b.authorize(authorizeParams(client, pkce)).headers[.location]?.hasPrefix("/consent/") == true)
        #expect(b.send("GET", "/api/v1/me/connections").json?["connections"] == [])
    }

    @Test func userTokensWithConnectionScopesManageConnections() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let pkce = PKCE()
        let tokens = exchange(h, client: client, code: try code(h, Browser(h), client: client, pkce: pkce,
                                                                 scope: "openid connections:read connections:write"), verifier: pkce.verifier).json!
        let access = try #require(tokens["access_token"]?.stringValue)
        let list = h.call("GET", "/api/v1/me/connections", headers: [("Authorization", "Bearer \(access)")])
        #expect(list.status == 200)
        #expect(list.json?["connections"]?.arrayValue?.count == 1)
        #expect(h.call("DELETE", "/api/v1/me/connections/\(client)", headers: [("Authorization", "Bearer \(access)")]).status == 204)
        #expect(h.call("GET", "/api/v1/me/connections", headers: [("Authorization", "Bearer \(access)")]).status == 401)
    }

    @Test func refreshTokensIntrospectAndRevokeTheirFamily() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: false)
        let pkce = PKCE()
        let tokens = exchange(h, client: client, secret: secret, code: try code(h, Browser(h), client: client, pkce: pkce), verifier: pkce.verifier).json!
        let refresh = try #require(tokens["refresh_token"]?.stringValue)
        let access = try #require(tokens["access_token"]?.stringValue)
        let info = h.form("/oauth2/introspect", [("token", refresh)], basic: (client, secret!)).json
        #expect(info?["active"] == true)
        #expect(info?["token_type"] == "refresh_token")
        #expect(h.form("/oauth2/revoke", [("token", refresh), ("token_type_hint", "refresh_token")], basic: (client, secret!)).status == 200)
        #expect(h.form("/oauth2/introspect", [("token", refresh)], basic: (client, secret!)).json == ["active": false])
        #expect(h.form("/oauth2/introspect", [("token", access)], basic: (client, secret!)).json == ["active": false])
    }
}

import Common
import HTTPCore
import OAuth
import TestSupport
import Testing

/// A NUL (or any control character) in an identifier a caller sends is a
/// 4xx on every store: PostgreSQL's text holds no NUL and answers such a
/// parameter with an error, which must never surface as a 500.
@Suite struct NULInputTests {
    static let nul = "a\u{0}b"
    static let encoded = "a%00b"

    @Test func aNULInAnIdentifierIsNeverA5xx() throws {
        let h = try Harness()
        _ = try h.user()
        let (app, _) = try h.app(public: true)
        let basic = (h.primary.clientID, h.primary.clientSecret)
        let token = try h.token(scope: "clients:read clients:write")
        let json = { (body: String) in Array(body.utf8) }
        var results: [(String, Response)] = [
            ("token, Basic client id", h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (Self.nul, "x"))),
            ("token, form client id", h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", "lkr_x"), ("client_id", Self.nul)])),
            ("token, refresh token", h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", "lkr_" + Self.nul)], basic: basic)),
            ("token, code", h.form("/oauth2/token", [("grant_type", "authorization_code"), ("code", Self.nul), ("redirect_uri", Harness.redirect),
                                                       ("code_verifier", String(repeating: "v", count: 43)), ("client_id", app)])),
            ("token, device code", h.form("/oauth2/token", [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("device_code", Self.nul),
                                                              ("client_id", app)])),
            ("introspect", h.form("/oauth2/introspect", [("token", Self.nul)], basic: basic)),
            ("revoke", h.form("/oauth2/revoke", [("token", "lkr_" + Self.nul)], basic: basic)),
            ("par", h.form("/oauth2/par", [("client_id", Self.nul), ("response_type", "code"), ("redirect_uri", Harness.redirect)])),
            ("device authorization", h.form("/oauth2/device_authorization", [("client_id", Self.nul)])),
            ("authorize", h.call("GET", "/oauth2/authorize", query: "response_type=code&client_id=\(Self.encoded)&redirect_uri=\(FormEncoding.encode(Harness.redirect))")),
            ("authorize, request_uri", h.call("GET", "/oauth2/authorize", query: "client_id=\(app)&request_uri=urn:ietf:params:oauth:request_uri:\(Self.encoded)")),
            ("authorize continue", h.call("GET", "/oauth2/authorize/continue", query: "request=\(Self.encoded)")),
            ("sign-in", h.call("POST", "/api/v1/session", headers: [("Content-Type", "application/json")], body: json(#"{"username":"a\u0000b","password":"x"}"#))),
            ("session cookie", h.call("GET", "/api/v1/session", headers: [("Cookie", "__Host-lk_session=\(Self.encoded)")])),
            ("authorization request", h.call("GET", "/api/v1/authorization-requests/\(Self.nul)")),
            ("registration read", h.call("GET", "/oauth2/register/\(Self.nul)", headers: [("Authorization", "Bearer x")])),
            ("logout hint", h.call("GET", "/oauth2/logout", query: "client_id=\(Self.encoded)")),
            ("userinfo", h.call("GET", "/oauth2/userinfo", headers: [("Authorization", "Bearer \(Self.encoded)")])),
            ("native client read", h.json("GET", "/api/v1/clients/\(Self.nul)", token: token)),
            ("native create with that id", h.json("POST", "/api/v1/clients", token: token, body: ["client_id": .string(Self.nul), "client_name": "n"])),
            ("app API public read", h.call("GET", "/api/oauth/app/id/\(Self.nul)")),
            ("app API ids", h.call("GET", "/api/oauth/app/ids", query: "ids=\(Self.encoded)")),
            ("v3 read", h.json("GET", "/v3/oauth-clients/\(Self.nul)", token: token)),
            ("integration read", h.call("GET", "/external/v1/oauth/client", query: "clientId=\(Self.encoded)", headers: [("Authorization", "Bearer \(token)")])),
            ("workload read", h.call("GET", "/uc/resources/oauthclient", query: "clientid=\(Self.encoded)", headers: [("Authorization", "Bearer \(token)")])),
            ("connections", h.call("DELETE", "/api/v1/me/connections/\(Self.nul)")),
        ]
        // SQLite bound text as a C string, so "id\0anything" was the client "id": with its secret, a token, and each
        // suffix a new account for the failure limits (SPEC 7.1). Now no such client exists, on both stores.
        let suffixed = h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID + "\u{0}x", h.primary.clientSecret))
        #expect(suffixed.status == 401, "\(suffixed.bodyText)")
        let login = h.call("POST", "/api/v1/session", headers: [("Content-Type", "application/json")], body: json(#"{"username":"alice\u0000x","password":"x"}"#))
        #expect(login.status == 401, "\(login.bodyText)")
        // A NUL in the nonce (stored with the code) is refused by the checks, as an error redirect to the client.
        let pkce = PKCE()
        let nonce = h.call("GET", "/oauth2/authorize", query: "response_type=code&client_id=\(app)&redirect_uri=\(FormEncoding.encode(Harness.redirect))"
                            + "&scope=openid&state=s&code_challenge=\(pkce.challenge)&code_challenge_method=S256&nonce=\(Self.encoded)")
        let location = nonce.headers[.location] ?? ""
        #expect(nonce.status.code == 303 && location.hasPrefix(Harness.redirect) && location.contains("error=invalid_request"), "\(nonce.status) \(location)")
        // Written, a NUL is refused the same on both stores (SQLite could store one, PostgreSQL cannot).
        let described = h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "n", "description": .string(Self.nul)])
        #expect(described.status == 400, "\(described.bodyText)")
        let named = h.json("POST", "/v3/oauth-clients", token: token, body: ["name": .string(Self.nul)])
        #expect((400...422).contains(named.status.code), "\(named.status) \(named.bodyText)")
        results.append(("token again", h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: basic)))
        for (name, r) in results {
            #expect(r.status.code < 500, "\(name): \(r.status) \(r.bodyText)")
        }
        #expect(results.last?.1.status == 200, "the server still answers")
    }
}

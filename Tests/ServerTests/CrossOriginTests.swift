import Common
import HTTPCore
import OAuth
import Server
import TestSupport
import Testing

/// Browser-based apps (a single-page app's code flow with PKCE) call the token
/// endpoint, userinfo and revocation from their own origin, and read
/// discovery and the JWKS from anywhere (CORS). Nothing else answers another
/// origin, and nothing ever allows credentials.
@Suite struct CrossOriginTests {
    let flow = UserFlowTests()
    static let allowOrigin = HTTPField.Name("Access-Control-Allow-Origin")!
    static let allowCredentials = HTTPField.Name("Access-Control-Allow-Credentials")!

    func preflight(_ h: Harness, _ path: String, origin: String, method: String, headers: String? = nil) -> Response {
        var fields = [("Origin", origin), ("Access-Control-Request-Method", method)]
        if let headers { fields.append(("Access-Control-Request-Headers", headers)) }
        return h.call("OPTIONS", path, headers: fields)
    }

    @Test func publicDocumentsAnswerAnyOriginAndNothingElseDoes() throws {
        let h = try Harness()
        for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/oauth2/jwks",
                     "/api/oauth/openid-configuration", "/api/oauth/jwks"] {
            let r = h.call("GET", path, headers: [("Origin", "https://anywhere.example")])
            #expect(r.status == 200 && r.headers[Self.allowOrigin] == "*", "\(path)")
            #expect(r.headers[Self.allowCredentials] == nil)
            #expect(preflight(h, path, origin: "https://anywhere.example", method: "GET").headers[Self.allowOrigin] == "*")
        }
        // The management APIs and the browser flow's own routes: no CORS at all, preflight or not.
        let token = try h.token()
        for (method, path) in [("GET", "/api/v1/clients"), ("POST", "/api/v1/session"), ("GET", "/api/v1/me/connections"),
                               ("POST", "/oauth2/introspect"), ("GET", "/v3/oauth-clients")] {
            let p = preflight(h, path, origin: "https://app.example", method: method, headers: "authorization")
            #expect(p.headers[Self.allowOrigin] == nil && p.status.code != 204, "\(method) \(path) preflight \(p.status.code)")
        }
        let list = h.json("GET", "/api/v1/clients", token: token, headers: [("Origin", "https://app.example")])
        #expect(list.status == 200 && list.headers[Self.allowOrigin] == nil)
    }

    @Test func aPublicClientsPageReadsItsTokensUserinfoAndRevocationOthersDoNot() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app(redirectURIs: ["https://spa.example:443/callback", Harness.redirect])
        let pkce = PKCE()
        let code = try flow.code(h, Browser(h), client: client, pkce: pkce)
        // The preflight of a token request with a DPoP proof: answered for the origin (the answer decides).
        let p = preflight(h, "/oauth2/token", origin: "https://spa.example", method: "POST", headers: "content-type, dpop")
        #expect(p.status == 204 && p.headers[Self.allowOrigin] == "https://spa.example")
        #expect(p.headers[HTTPField.Name("Access-Control-Allow-Headers")!]?.contains("DPoP") == true)
        #expect(p.headers[Self.allowCredentials] == nil)
        let tokens = h.form("/oauth2/token", [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Harness.redirect),
                                              ("code_verifier", pkce.verifier), ("client_id", client)], headers: [("Origin", "https://spa.example")])
        #expect(tokens.status == 200 && tokens.headers[Self.allowOrigin] == "https://spa.example")
        #expect(tokens.headers[values: .vary].contains("Origin") && tokens.headers[Self.allowCredentials] == nil)
        let access = try #require(tokens.json?["access_token"]?.stringValue)
        let refresh = try #require(tokens.json?["refresh_token"]?.stringValue)
        // Another origin's page gets the same answer, but its browser will not let it read it.
        let rotated = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)],
                             headers: [("Origin", "https://evil.example")])
        #expect(rotated.status == 200 && rotated.headers[Self.allowOrigin] == nil)
        // The client's other redirect URI's origin is one of its origins too.
        let other = try #require(URIRules.origin(Harness.redirect))
        let userinfo = h.json("GET", "/oauth2/userinfo", token: access, headers: [("Origin", other)])
        #expect(userinfo.status == 200 && userinfo.headers[Self.allowOrigin] == other)
        #expect(h.json("GET", "/oauth2/userinfo", token: access, headers: [("Origin", "https://evil.example")]).headers[Self.allowOrigin] == nil)
        let revoked = h.form("/oauth2/revoke", [("token", access), ("client_id", client)], headers: [("Origin", "https://spa.example")])
        #expect(revoked.status == 200 && revoked.headers[Self.allowOrigin] == "https://spa.example")
    }

    /// Its page reads the errors too (session 33's review: a failed fetch hid `invalid_grant`, and with server DPoP
    /// nonces the page never learnt the nonce it had to send); another origin's page reads neither.
    @Test func aPublicClientsPageReadsItsErrorsAndItsDPoPNonces() throws {
        let h = try Harness(dpopNonces: true)
        let (client, _) = try h.app(redirectURIs: ["https://spa.example/callback"])
        let expose = HTTPField.Name("Access-Control-Expose-Headers")!
        let bad = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", "lkr_unknown"), ("client_id", client)],
                         headers: [("Origin", "https://spa.example")])
        #expect(bad.status == 400 && bad.json?["error"] == "invalid_grant" && bad.headers[Self.allowOrigin] == "https://spa.example")
        #expect(bad.headers[expose]?.contains("DPoP-Nonce") == true)
        let nonce = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", "lkr_unknown"), ("client_id", client)],
                           headers: [("Origin", "https://spa.example"), ("DPoP", "a.b.c")])
        #expect(nonce.status == 400 && nonce.json?["error"] == "use_dpop_nonce" && nonce.headers[Self.allowOrigin] == "https://spa.example",
                "\(nonce.status) \(nonce.bodyText)")
        #expect(nonce.headers[.dpopNonce] != nil)
        let other = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", "lkr_unknown"), ("client_id", client)],
                           headers: [("Origin", "https://evil.example")])
        #expect(other.status == 400 && other.headers[Self.allowOrigin] == nil)
        // Revocation's errors likewise (here a missing token).
        let missing = h.form("/oauth2/revoke", [("client_id", client)], headers: [("Origin", "https://spa.example")])
        #expect(missing.status == 400 && missing.json?["error"] == "invalid_request" && missing.headers[Self.allowOrigin] == "https://spa.example")
        #expect(h.form("/oauth2/revoke", [("client_id", client)], headers: [("Origin", "https://evil.example")]).headers[Self.allowOrigin] == nil)
    }

    /// A client with a secret is no page's: its token answers name no origin, even its own redirect URI's.
    @Test func aConfidentialClientsTokensAreNoPagesToRead() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: false, redirectURIs: ["https://web.example/callback", Harness.redirect])
        let pkce = PKCE()
        let code = try flow.code(h, Browser(h), client: client, pkce: pkce)
        let tokens = h.form("/oauth2/token", [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Harness.redirect),
                                              ("code_verifier", pkce.verifier)], basic: (client, try #require(secret)),
                            headers: [("Origin", "https://web.example")])
        #expect(tokens.status == 200 && tokens.headers[Self.allowOrigin] == nil)
        let cc = h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID, h.primary.clientSecret),
                        headers: [("Origin", "https://web.example")])
        #expect(cc.status == 200 && cc.headers[Self.allowOrigin] == nil)
    }
}

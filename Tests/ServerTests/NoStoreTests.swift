import Common
import HTTPCore
import TestSupport
import Testing

/// RFC 9111 §5.2.2.5 on every surface: a response that carries a secret, a
/// token, a code or one user's data is never stored by a cache (issue 12's
/// one no-store helper, `Response.noStore()`).
@Suite struct NoStoreTests {
    @Test func everySecretTokenCodeAndPersonalAnswerIsNoStore() throws {
        let h = try Harness()
        _ = try h.user()
        let token = try h.token()
        var answers: [(String, Response)] = []
        let native = h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "N", "grant_types": ["client_credentials"]])
        let nativeID = try #require(native.json?["client_id"]?.stringValue)
        answers += [("native create", native), ("native read", h.json("GET", "/api/v1/clients/\(nativeID)", token: token)),
                    ("native list", h.json("GET", "/api/v1/clients", token: token)),
                    ("native rotate", h.json("POST", "/api/v1/clients/\(nativeID)/secret", token: token))]
        answers.append(("identity create", h.json("POST", "/v3/oauth-clients", token: token, body: IdentitySurfaceTests.createBody)))
        let app = h.json("POST", "/api/oauth/app", token: token, body: ["name": "A", "redirect_uri": "https://a.example/cb"])
        let appID = try #require(app.json?["client_id"]?.stringValue)
        answers += [("app create", app), ("app rotate", h.json("PUT", "/api/oauth/app/id/\(appID)/rotate", token: token))]
        let b = Browser(h)
        answers.append(("login", b.login()))
        answers.append(("session", b.send("GET", "/api/v1/session")))
        answers.append(("connections", b.send("GET", "/api/v1/me/connections")))
        answers.append(("profile", b.send("GET", "/api/v1/me/profile")))
        let code = b.json("POST", "/api/oauth/auth/code", ["client_id": .string(appID), "scope": "openid"])
        answers.append(("app code", code))
        // The app API's connections (one user's apps) forgot it once (operator review, session 30): every worker
        // answer without a cache policy of its own is no-store.
        answers.append(("app connections", b.send("GET", "/api/oauth/connection", query: "amount=10&offset=0")))
        answers.append(("app connection", b.send("GET", "/api/oauth/connection/id/\(appID)")))
        answers.append(("identity list", h.json("GET", "/v3/oauth-clients", token: token)))
        answers.append(("health", h.json("GET", "/healthz", token: nil)))
        answers.append(("token", h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID, h.primary.clientSecret))))
        answers.append(("token error", h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID, "wrong"))))
        answers.append(("introspection", h.form("/oauth2/introspect", [("token", token)], basic: (h.primary.clientID, h.primary.clientSecret))))
        for (name, response) in answers {
            #expect((200..<300).contains(response.status.code) || name.hasSuffix("error"), "\(name): \(response.status.code) \(response.bodyText)")
            #expect(response.headers[.cacheControl] == "no-store", "\(name)")
        }
        // What is public keeps its own policy.
        #expect(h.json("GET", "/oauth2/jwks", token: nil).headers[.cacheControl] == "public, max-age=300")
        #expect(h.json("GET", "/.well-known/openid-configuration", token: nil).headers[.cacheControl] == "public, max-age=3600")
        // RFC 6749 §5.1 also asks successful token responses for Pragma: no-cache.
        #expect(answers.filter { $0.0 == "token" || $0.0 == "introspection" }.allSatisfy { $0.1.headers[.pragma] == "no-cache" })
    }
}

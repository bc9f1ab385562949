import Common
import HTTPCore
import JOSE
import OAuth
import TestSupport
import Testing

/// userinfo_signed_response_alg (OIDC Core §5.3.2, Registration §2).
@Suite struct SignedUserinfoTests {
    @Test func aClientThatAsksGetsItsUserinfoAsASignedJWT() throws {
        let h = try Harness()
        _ = try h.user()
        let token = try h.token()
        let body: JSON = ["client_name": "RP", "redirect_uris": [.string(Harness.redirect)], "grant_types": ["authorization_code"],
                          "scope": "openid email", "userinfo_signed_response_alg": "RS256"]
        let created = try #require(h.json("POST", "/api/v1/clients", token: token, body: body).json)
        #expect(created["userinfo_signed_response_alg"] == "RS256")
        let id = try #require(created["client_id"]?.stringValue), secret = try #require(created["client_secret"]?.stringValue)
        let b = Browser(h), pkce = PKCE(), flows = UserFlowTests()
        let code = try flows.code(h, b, client: id, pkce: pkce, scope: "openid email")
        let access = try #require(flows.exchange(h, client: id, secret: secret, code: code, verifier: pkce.verifier).json?["access_token"]?.stringValue)
        let r = h.call("GET", "/oauth2/userinfo", headers: [("Authorization", "Bearer \(access)")])
        #expect(r.status == 200 && r.headers[.contentType] == "application/jwt" && r.headers[.cacheControl] == "no-store")
        let parsed = try #require(JWS.parse(r.bodyText))
        let kid = try #require(parsed.kid)
        let key = try #require(try KeyRing(store: h.store, env: h.env).verificationKey(kid: kid))
        #expect(parsed.algorithm == "RS256" && JWS.verify(parsed, key: key))
        #expect(parsed.payload["iss"] == .string(Harness.issuer) && parsed.payload["aud"] == .string(id) && parsed.payload["email"] == "alice@example.com")
        // Unknown algorithms are refused; discovery lists what can sign.
        let bad = h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "x", "userinfo_signed_response_alg": "HS256"])
        #expect(bad.status == 400 && bad.json?["errors"]?.arrayValue?.first?["field"] == "userinfo_signed_response_alg")
        let discovery = try #require(h.call("GET", "/.well-known/openid-configuration").json)
        #expect(discovery["userinfo_signing_alg_values_supported"]?.arrayValue?.contains("RS256") == true)
    }
}

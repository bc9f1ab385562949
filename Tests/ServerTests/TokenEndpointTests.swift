import Common
import Cryptography
import HTTPCore
import JOSE
import OAuth
import TestSupport
import Testing

@Suite struct TokenEndpointTests {
    @Test func clientCredentialsIssuesAnRFC9068AccessToken() throws {
        let h = try Harness()
        let r = h.form("/oauth2/token", [("grant_type", "client_credentials"), ("scope", "clients:read audit:read")],
                       basic: (h.primary.clientID, h.primary.clientSecret))
        #expect(r.status == 200)
        #expect(r.headers[.cacheControl] == "no-store")
        let body = try #require(r.json)
        #expect(body["token_type"] == "Bearer")
        #expect(body["expires_in"] == 900)
        #expect(body["scope"] == "clients:read audit:read")
        let accessToken = try #require(body["access_token"]?.stringValue)
        let parsed = try #require(JWS.parse(accessToken))
        #expect(parsed.typ == "at+jwt")
        #expect(parsed.algorithm == "ES256")
        #expect(parsed.payload["iss"] == .string(Harness.issuer))
        #expect(parsed.payload["sub"] == .string(h.primary.clientID))
        #expect(parsed.payload["client_id"] == .string(h.primary.clientID))
        #expect(parsed.payload["aud"] == .string(Harness.issuer))
        #expect(parsed.payload["exp"]?.intValue == (parsed.payload["iat"]?.intValue ?? 0) + 900)
        #expect(parsed.payload["jti"]?.stringValue?.isEmpty == false)
        let jwks = try #require(h.call("GET", "/oauth2/jwks").json)
        let jwk = try #require(jwks["keys"]?.arrayValue?.first { $0["kid"]?.stringValue == parsed.kid })
        #expect(jwk["kty"] == "EC", "access tokens are ES256 unless an operator chose otherwise")
        #expect(JWS.verify(parsed, key: try SigningKey(jwk: jwk)))
    }

    @Test func omittedScopeGrantsEveryScopeTheClientHolds() throws {
        let h = try Harness()
        let r = h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID, h.primary.clientSecret))
        #expect(r.json?["scope"]?.stringValue == Scopes.join(Scopes.primary))
    }

    @Test func clientSecretPostWorksWhenRegisteredOrAllowed() throws {
        let h = try Harness()
        // The primary client registered client_secret_basic: the form method is refused.
        let refused = h.form("/oauth2/token", [("grant_type", "client_credentials"), ("client_id", h.primary.clientID),
                                               ("client_secret", h.primary.clientSecret)])
        #expect(refused.status == 401)
        #expect(refused.json?["error"] == "invalid_client")
        #expect(refused.headers[.wwwAuthenticate] == nil)
        var client = try #require(try h.store.client(h.primary.clientID))
        client.authMethod = .clientSecretPost
        try h.store.write { try h.store.updateClient(client) }
        let ok = h.form("/oauth2/token", [("grant_type", "client_credentials"), ("client_id", h.primary.clientID),
                                          ("client_secret", h.primary.clientSecret)])
        #expect(ok.status == 200)
    }

    struct ErrorCase: Sendable, CustomTestStringConvertible {
        let name: String
        let items: [(String, String)]
        let basic: Bool
        let contentType: String
        let status: Int
        let error: String
        var testDescription: String { name }
    }

    static let errorCases: [ErrorCase] = [
        ErrorCase(name: "missing grant_type", items: [], basic: true, contentType: "application/x-www-form-urlencoded", status: 400, error: "invalid_request"),
        ErrorCase(name: "unknown grant", items: [("grant_type", "password")], basic: true, contentType: "application/x-www-form-urlencoded", status: 400, error: "unsupported_grant_type"),
        ErrorCase(name: "duplicate parameter", items: [("grant_type", "client_credentials"), ("grant_type", "client_credentials")], basic: true, contentType: "application/x-www-form-urlencoded", status: 400, error: "invalid_request"),
        ErrorCase(name: "JSON body", items: [("grant_type", "client_credentials")], basic: true, contentType: "application/json", status: 400, error: "invalid_request"),
        ErrorCase(name: "no credentials", items: [("grant_type", "client_credentials")], basic: false, contentType: "application/x-www-form-urlencoded", status: 401, error: "invalid_client"),
        ErrorCase(name: "scope not held", items: [("grant_type", "client_credentials"), ("scope", "clients:read superpower")], basic: true, contentType: "application/x-www-form-urlencoded", status: 400, error: "invalid_scope"),
        ErrorCase(name: "malformed scope", items: [("grant_type", "client_credentials"), ("scope", "clients:read  audit:read")], basic: true, contentType: "application/x-www-form-urlencoded", status: 400, error: "invalid_scope"),
        ErrorCase(name: "both methods", items: [("grant_type", "client_credentials"), ("client_secret", "x")], basic: true, contentType: "application/x-www-form-urlencoded", status: 400, error: "invalid_request"),
        ErrorCase(name: "code grant not registered", items: [("grant_type", "authorization_code"), ("code", "x")], basic: true, contentType: "application/x-www-form-urlencoded", status: 400, error: "unauthorized_client"),
    ]

    @Test(arguments: errorCases)
    func tokenEndpointErrors(_ c: ErrorCase) throws {
        let h = try Harness()
        var headers = [("Content-Type", c.contentType)]
        if c.basic { headers.append(("Authorization", Harness.basic(h.primary.clientID, h.primary.clientSecret))) }
        let r = h.call("POST", "/oauth2/token", headers: headers, body: Array(FormEncoding.serialize(c.items).utf8))
        #expect(r.status.code == c.status)
        #expect(r.json?["error"]?.stringValue == c.error)
        #expect(r.json?["error_description"]?.stringValue?.isEmpty == false)
        #expect(r.headers[.cacheControl] == "no-store")
    }

    @Test func wrongSecretUnknownClientAndMalformedBasicAreInvalidClientWithChallenge() throws {
        let h = try Harness()
        for (id, secret) in [(h.primary.clientID, "lks_wrong"), ("no-such-client", h.primary.clientSecret), (h.primary.clientID, "")] {
            let r = h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (id, secret))
            #expect(r.status == 401)
            #expect(r.json?["error"] == "invalid_client")
            #expect(r.headers[.wwwAuthenticate]?.hasPrefix("Basic") == true)
        }
        let malformed = h.call("POST", "/oauth2/token", headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", "Basic ***")],
                               body: Array("grant_type=client_credentials".utf8))
        #expect(malformed.status == 401)
    }

    @Test func disabledClientsCannotGetTokensAndTheirTokensDie() throws {
        let h = try Harness()
        let token = try h.token()
        var client = try #require(try h.store.client(h.primary.clientID))
        client.enabled = false
        try h.store.write { try h.store.updateClient(client) }
        let r = h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID, h.primary.clientSecret))
        #expect(r.status == 401 && r.json?["error"] == "invalid_client")
        #expect(h.json("GET", "/api/v1/organization", token: token).status == 401)
    }

    @Test func oversizedBodiesAreRefusedBeforeParsing() throws {
        let h = try Harness()
        let body = [UInt8](repeating: UInt8(ascii: "a"), count: 17 * 1024)
        let r = h.call("POST", "/oauth2/token", headers: [("Content-Type", "application/x-www-form-urlencoded")], body: body)
        #expect(r.status == 413)
        #expect(r.json?["error"] == "invalid_request")
        let flagged = h.worker.handle(Request(method: .post, path: "/oauth2/token", bodyTooLarge: true))
        #expect(flagged.status == 413)
    }

    @Test func everyResponseCarriesTheRequestID() throws {
        let h = try Harness()
        #expect(h.call("GET", "/healthz").headers[.xRequestID] == "req-test")
        #expect(h.call("GET", "/nope").headers[.xRequestID] == "req-test")
        #expect(h.call("GET", "/nope").json?["request_id"] == "req-test")
        #expect(h.call("DELETE", "/healthz").status == 405)
    }
}

@Suite struct IntrospectionAndRevocationTests {
    /// A second confidential client in the same organization, with its secret.
    func secondClient(_ h: Harness, scope: [String] = ["clients:read"], org: String? = nil) throws -> (String, String) {
        let hasher = try Provisioning.secretHasher(store: h.store, env: h.env)
        let id = "second-" + h.env.randomID(8)
        let secret = hasher.generate(h.env)
        try h.store.write {
            try h.store.insertClient(Client(clientID: id, organizationID: org ?? h.primary.organizationID, name: "second", scope: scope, createdAt: h.clock.now))
            try h.store.insertSecret(hasher.record(for: secret, clientID: id, at: h.clock.now))
        }
        return (id, secret)
    }

    @Test func introspectionAnswersActiveWithClaims() throws {
        let h = try Harness()
        let token = try h.token(scope: "clients:read")
        let r = h.form("/oauth2/introspect", [("token", token)], basic: (h.primary.clientID, h.primary.clientSecret))
        #expect(r.status == 200)
        let body = try #require(r.json)
        #expect(body["active"] == true)
        #expect(body["scope"] == "clients:read")
        #expect(body["client_id"] == .string(h.primary.clientID))
        #expect(body["token_type"] == "Bearer")
    }

    @Test(arguments: ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."])
    func garbageTokensAreInactive(_ token: String) throws {
        let h = try Harness()
        let r = h.form("/oauth2/introspect", [("token", token)], basic: (h.primary.clientID, h.primary.clientSecret))
        #expect(r.status == 200)
        #expect(r.json == ["active": false])
    }

    @Test func expiredTokensAreInactive() throws {
        let h = try Harness()
        let token = try h.token()
        h.clock.advance(seconds: 901)
        let r = h.form("/oauth2/introspect", [("token", token)], basic: (h.primary.clientID, h.primary.clientSecret))
        #expect(r.json == ["active": false])
    }

    @Test func clientsSeeOnlyTheirOwnTokensUnlessTheyMayIntrospect() throws {
        let h = try Harness()
        let (otherID, otherSecret) = try secondClient(h)
        let primaryToken = try h.token()
        let otherToken = try h.token(clientID: otherID, secret: otherSecret)
        // Without tokens:introspect: only its own.
        #expect(h.form("/oauth2/introspect", [("token", primaryToken)], basic: (otherID, otherSecret)).json == ["active": false])
        #expect(h.form("/oauth2/introspect", [("token", otherToken)], basic: (otherID, otherSecret)).json?["active"] == true)
        // The primary holds tokens:introspect: any token of its organization.
        #expect(h.form("/oauth2/introspect", [("token", otherToken)], basic: (h.primary.clientID, h.primary.clientSecret)).json?["active"] == true)
        // Another organization's introspector sees nothing.
        let org2 = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Other", clientLimit: 10)
        #expect(h.form("/oauth2/introspect", [("token", otherToken)], basic: (org2.clientID, org2.clientSecret)).json == ["active": false])
    }

    @Test func introspectionNeedsClientAuthentication() throws {
        let h = try Harness()
        let token = try h.token()
        let r = h.form("/oauth2/introspect", [("token", token)])
        #expect(r.status == 401)
        #expect(r.json?["error"] == "invalid_client")
        let noToken = h.form("/oauth2/introspect", [], basic: (h.primary.clientID, h.primary.clientSecret))
        #expect(noToken.status == 400 && noToken.json?["error"] == "invalid_request")
    }

    @Test func revocationTakesEffectAtOnceAndAlwaysAnswers200() throws {
        let h = try Harness()
        let token = try h.token()
        let (otherID, otherSecret) = try secondClient(h)
        // Another client cannot revoke it, but is told 200 all the same.
        #expect(h.form("/oauth2/revoke", [("token", token)], basic: (otherID, otherSecret)).status == 200)
        #expect(h.form("/oauth2/introspect", [("token", token)], basic: (h.primary.clientID, h.primary.clientSecret)).json?["active"] == true)
        #expect(h.form("/oauth2/revoke", [("token", token), ("token_type_hint", "access_token")], basic: (h.primary.clientID, h.primary.clientSecret)).status == 200)
        #expect(h.form("/oauth2/introspect", [("token", token)], basic: (h.primary.clientID, h.primary.clientSecret)).json == ["active": false])
        #expect(h.json("GET", "/api/v1/organization", token: token).status == 401)
        #expect(h.form("/oauth2/revoke", [("token", "unknown")], basic: (h.primary.clientID, h.primary.clientSecret)).status == 200)
    }

    @Test func keyRotationKeepsOldTokensVerifying() throws {
        let h = try Harness()
        let before = try h.token()
        let oldKid = try #require(JWS.parse(before)?.kid)
        let rsaKid = try KeyRing(store: h.store, env: h.env).signingKey(for: .rs256).kid
        let newKid = try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .edDSA)
        let after = try h.token()
        #expect(JWS.parse(after)?.kid == newKid)
        #expect(JWS.parse(after)?.algorithm == "EdDSA")
        let kids = try #require(h.call("GET", "/oauth2/jwks").json?["keys"]?.arrayValue).compactMap { $0["kid"]?.stringValue }
        #expect(Set(kids) == [oldKid, rsaKid, newKid], "the other algorithms' keys stay published (SPEC 10.1)")
        #expect(h.form("/oauth2/introspect", [("token", before)], basic: (h.primary.clientID, h.primary.clientSecret)).json?["active"] == true)
        // A rotation of ES256 retires the old ES256 key; past the retention period it is gone from the JWKS.
        _ = try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .es256)
        h.clock.advance(seconds: 86_400 + 301)
        _ = try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .edDSA)
        let later = try #require(h.call("GET", "/oauth2/jwks").json?["keys"]?.arrayValue).compactMap { $0["kid"]?.stringValue }
        #expect(!later.contains(oldKid))
        #expect(later.contains(newKid))
    }

    @Test func tokensWithAForgedOrSwappedAlgorithmAreRejected() throws {
        let h = try Harness()
        let token = try h.token()
        let parts = token.split(separator: ".").map(String.init)
        let kid = try #require(JWS.parse(token)?.kid)
        let none = Base64.urlEncode(Array("{\"alg\":\"none\",\"typ\":\"at+jwt\",\"kid\":\"\(kid)\"}".utf8)) + "." + parts[1] + "."
        #expect(h.json("GET", "/api/v1/organization", token: none).status == 401)
        let rogue = try SigningKey.generate(.es256)
        let forged = try JWS.sign(payload: try #require(JWS.parse(token)?.payload), key: rogue, kid: kid, typ: "at+jwt")
        #expect(h.json("GET", "/api/v1/organization", token: forged).status == 401)
        let wrongType = try JWS.sign(payload: try #require(JWS.parse(token)?.payload), key: rogue, kid: kid, typ: "JWT")
        #expect(h.json("GET", "/api/v1/organization", token: wrongType).status == 401)
    }
}

@Suite struct BearerAuthenticationTests {
    @Test func missingTokenIs401WithChallenge() throws {
        let h = try Harness()
        let r = h.call("GET", "/api/v1/organization")
        #expect(r.status == 401)
        #expect(r.headers[.wwwAuthenticate] == "Bearer realm=\"latchkey\"")
        #expect(r.headers[.contentType] == "application/problem+json")
        let bad = h.json("GET", "/api/v1/organization", token: "not-a-token")
        #expect(bad.status == 401)
        #expect(bad.headers[.wwwAuthenticate]?.contains("invalid_token") == true)
    }

    @Test func insufficientScopeIs403() throws {
        let h = try Harness()
        let token = try h.token(scope: "audit:read")
        let r = h.json("GET", "/api/v1/organization", token: token)
        #expect(r.status == 403)
        #expect(r.json?["code"] == "insufficient_scope")
        #expect(r.headers[.wwwAuthenticate]?.contains("insufficient_scope") == true)
    }

    @Test func healthAndDiscoveryDocuments() throws {
        let h = try Harness()
        #expect(h.call("GET", "/healthz").json == ["status": "ok"])
        let doc = try #require(h.call("GET", "/.well-known/openid-configuration").json)
        #expect(doc["issuer"] == .string(Harness.issuer))
        #expect(doc["token_endpoint"] == .string(Harness.issuer + "/oauth2/token"))
        #expect(doc["code_challenge_methods_supported"] == ["S256"])
        #expect(doc["authorization_response_iss_parameter_supported"] == true)
        #expect(h.call("GET", "/.well-known/oauth-authorization-server").json == doc)
        #expect(h.call("GET", "/oauth2/jwks").headers[.cacheControl]?.hasPrefix("public, max-age=") == true)
    }
}

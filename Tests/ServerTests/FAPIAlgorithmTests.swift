import Common
import Cryptography
import HTTPCore
import JOSE
import OAuth
import Server
import TestSupport
import Testing

/// FAPI 2.0 Security Profile §5.4 ("shall use PS256, ES256, or EdDSA") and
/// §5.3.2.2 item 8 (http redirect URIs only for loopback interface
/// redirection): a FAPI client was allowed RSA keys, RS256 DPoP proofs, RS256
/// ID tokens, RS256 access tokens after `keys rotate --alg RS256`, and
/// `http://localhost` (FAPI/OIDC review, session 30). Latchkey has no PS256,
/// so a FAPI client's JWTs are ES256 or EdDSA.
@Suite struct FAPIAlgorithmTests {
    let dpop = DPoPEndpointTests()

    func body(_ overrides: [String: JSON], key: SigningKey) throws -> JSON {
        var members: [(String, JSON)] = [
            ("client_name", "Bank"), ("grant_types", ["client_credentials", "authorization_code"]), ("redirect_uris", ["https://bank.example/cb"]),
            ("token_endpoint_auth_method", "private_key_jwt"), ("jwks", ["keys": [try JWK.publicJWK(key, kid: "k1")]]),
            ("scope", "openid"), ("fapi2_security_profile", true),
        ]
        for (name, value) in overrides {
            members.removeAll { $0.0 == name }
            members.append((name, value))
        }
        return .object(members)
    }

    func assertion(_ h: Harness, _ key: SigningKey, _ clientID: String) throws -> String {
        let now = h.clock.now / 1000
        return try JWS.sign(payload: ["iss": .string(clientID), "sub": .string(clientID), "aud": .string(Harness.issuer), "exp": .int(now + 60),
                                      "jti": .string(h.env.randomToken(bytes: 12))], key: key, kid: "k1", typ: "JWT")
    }

    func tokenRequest(_ h: Harness, _ key: SigningKey, _ clientID: String, proofKey: SigningKey) throws -> Response {
        h.form("/oauth2/token", [("grant_type", "client_credentials"), ("client_assertion_type", ClientAssertion.type),
                                 ("client_assertion", try assertion(h, key, clientID))],
               headers: [("DPoP", try dpop.proof(h, proofKey, "POST", "/oauth2/token"))])
    }

    @Test func aFAPIClientRegistersNoRS256AndNoLocalhostRedirect() throws {
        let h = try Harness()
        let token = try h.token()
        let key = try SigningKey.generate(.es256)
        let rsa = try JWK.publicJWK(try SigningKey.generate(.rs256), kid: "r1")
        let refused: [(String, [String: JSON], String)] = [
            ("an RSA key", ["jwks": ["keys": [rsa]]], "jwks"),
            ("RS256 ID tokens", ["id_token_signed_response_alg": "RS256"], "id_token_signed_response_alg"),
            ("RS256 userinfo", ["userinfo_signed_response_alg": "RS256"], "userinfo_signed_response_alg"),
            ("http://localhost", ["redirect_uris": ["http://localhost:8080/cb"]], "redirect_uris[0]"),
        ]
        for (name, overrides, field) in refused {
            let r = h.json("POST", "/api/v1/clients", token: token, body: try body(overrides, key: key))
            #expect(r.status == 400, "\(name): \(r.status) \(r.bodyText)")
            #expect(r.bodyText.contains(field), "\(name): \(r.bodyText)")
            // The same metadata without the profile is a client like any other.
            var plain = overrides
            plain["fapi2_security_profile"] = false
            #expect(h.json("POST", "/api/v1/clients", token: token, body: try body(plain, key: key)).status == 201, "\(name) without FAPI")
        }
        for accepted in [["redirect_uris": ["http://127.0.0.1:8080/cb", "http://[::1]/cb"]], ["id_token_signed_response_alg": "ES256"], [:]] as [[String: JSON]] {
            let r = h.json("POST", "/api/v1/clients", token: token, body: try body(accepted, key: key))
            #expect(r.status == 201 && r.json?["id_token_signed_response_alg"] != "RS256", "\(accepted): \(r.bodyText)")
        }
        // Dynamic registration (RFC 7591): OpenID's default ID token algorithm is RS256; a FAPI client naming
        // none gets ES256, on registration and on an RFC 7592 replacement that leaves the profile out.
        let registered = try #require(h.json("POST", "/oauth2/register", token: token, body: [
            "redirect_uris": ["https://bank.example/cb"], "token_endpoint_auth_method": "private_key_jwt",
            "jwks": ["keys": [try JWK.publicJWK(key, kid: "k1")]], "fapi2_security_profile": true]).json)
        #expect(registered["id_token_signed_response_alg"] == "ES256", "\(registered)")
        let rid = try #require(registered["client_id"]?.stringValue), rat = try #require(registered["registration_access_token"]?.stringValue)
        let replaced = h.json("PUT", "/oauth2/register/\(rid)", token: rat, body: [
            "client_id": .string(rid), "redirect_uris": ["https://bank.example/cb"], "token_endpoint_auth_method": "private_key_jwt",
            "jwks": ["keys": [try JWK.publicJWK(key, kid: "k1")]]])
        #expect(replaced.status == 200 && replaced.json?["id_token_signed_response_alg"] == "ES256", "\(replaced.bodyText)")
        #expect(h.json("POST", "/oauth2/register", token: token, body: ["redirect_uris": ["https://rp.example/cb"]]).json?["id_token_signed_response_alg"] == "RS256")

        // Turning the profile on for a client that holds an RSA key is refused the same way.
        let plain = try #require(h.json("POST", "/api/v1/clients", token: token, body: try body(["fapi2_security_profile": false, "jwks": ["keys": [rsa]]], key: key)).json)
        let id = try #require(plain["client_id"]?.stringValue)
        let on = h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: ["fapi2_security_profile": true], contentType: "application/merge-patch+json")
        #expect(on.status == 400 && on.bodyText.contains("jwks"), "\(on.bodyText)")
    }

    @Test func aFAPIClientsProofsAndAccessTokensAreNeverRS256() throws {
        let h = try Harness()
        let key = try SigningKey.generate(.es256)
        let created = h.json("POST", "/api/v1/clients", token: try h.token(), body: try body([:], key: key))
        let clientID = try #require(created.json?["client_id"]?.stringValue, "\(created.bodyText)")

        let rs256 = try tokenRequest(h, key, clientID, proofKey: try SigningKey.generate(.rs256))
        #expect(rs256.status == 400 && rs256.json?["error"] == "invalid_dpop_proof", "\(rs256.bodyText)")
        let pushed = h.form("/oauth2/par", [("client_assertion_type", ClientAssertion.type), ("client_assertion", try assertion(h, key, clientID)),
                                            ("response_type", "code"), ("redirect_uri", "https://bank.example/cb"), ("scope", "openid")],
                            headers: [("DPoP", try dpop.proof(h, try SigningKey.generate(.rs256), "POST", "/oauth2/par"))])
        #expect(pushed.status == 400 && pushed.json?["error"] == "invalid_dpop_proof", "\(pushed.bodyText)")
        // An http://localhost redirect URI stored before the rule is not used (FAPI 2.0 §5.3.2.2 item 8).
        try h.store.write {
            var c = try #require(try h.store.client(clientID))
            c.redirectURIs.append("http://localhost:8080/cb")
            try h.store.updateClient(c)
        }
        for (uri, status) in [("http://localhost:8080/cb", 400), ("https://bank.example/cb", 201)] {
            let r = h.form("/oauth2/par", [("client_assertion_type", ClientAssertion.type), ("client_assertion", try assertion(h, key, clientID)),
                                           ("response_type", "code"), ("redirect_uri", uri), ("scope", "openid"),
                                           ("code_challenge", PKCE().challenge), ("code_challenge_method", "S256")])
            #expect(r.status.code == status && (status == 201 || r.bodyText.contains("redirect_uri")), "\(uri): \(r.bodyText)")
        }
        for alg in [SignatureAlgorithm.es256, .edDSA] {
            let r = try tokenRequest(h, key, clientID, proofKey: try SigningKey.generate(alg))
            #expect(r.status == 200 && r.json?["token_type"] == "DPoP", "\(alg): \(r.bodyText)")
        }

        // Where RS256 signs access tokens, a FAPI client's are ES256 all the same; other clients' follow the choice.
        try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .rs256)
        let fapi = try tokenRequest(h, key, clientID, proofKey: try SigningKey.generate(.es256))
        let token = try #require(fapi.json?["access_token"]?.stringValue, "\(fapi.bodyText)")
        #expect(JWS.parse(token)?.algorithm == "ES256")
        #expect(JWS.parse(try h.token())?.algorithm == "RS256")
        // And it verifies: introspection finds it active.
        let introspected = h.form("/oauth2/introspect", [("token", token)], basic: (h.primary.clientID, h.primary.clientSecret))
        #expect(introspected.json?["active"] == true, "\(introspected.bodyText)")
    }
}

import Common
import Cryptography
import HTTPCore
import JOSE
import OAuth
import TestSupport
import Testing

/// SPEC 10.1 at the HTTP surface: the ID token algorithm in client
/// metadata, discovery listing exactly the algorithms with a key, what the
/// code flow can grant, and the JWKS media type.
@Suite struct IDTokenAlgorithmTests {
    @Test func theNativeAPIAcceptsAndReturnsTheAlgorithm() throws {
        let h = try Harness()
        let token = try h.token()
        let created = h.json("POST", "/api/v1/clients", token: token, body: [
            "client_name": "RS app", "redirect_uris": ["https://rs.example/cb"], "grant_types": ["authorization_code"],
            "id_token_signed_response_alg": "RS256",
        ])
        #expect(created.status == 201, "\(created.bodyText)")
        #expect(created.json?["id_token_signed_response_alg"] == "RS256")
        let id = try #require(created.json?["client_id"]?.stringValue)
        #expect(h.json("GET", "/api/v1/clients/\(id)", token: token).json?["id_token_signed_response_alg"] == "RS256")
        // A merge patch that does not name it keeps it; one that does changes it.
        let patched = h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: ["client_name": "RS app 2"], contentType: "application/merge-patch+json")
        #expect(patched.json?["id_token_signed_response_alg"] == "RS256")
        // Defaults to ES256; unknown values and an algorithm without a key are field errors.
        let plain = h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "Plain"])
        #expect(plain.json?["id_token_signed_response_alg"] == "ES256")
        for (alg, message) in [("HS256", "must be one of ES256, RS256, EdDSA"), ("EdDSA", "no EdDSA key is published")] {
            let refused = h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "X", "id_token_signed_response_alg": .string(alg)])
            #expect(refused.status == 400)
            #expect(refused.json?["errors"]?.arrayValue?.first?["field"] == "id_token_signed_response_alg")
            #expect(refused.json?["errors"]?.arrayValue?.first?["message"]?.stringValue?.hasPrefix(message) == true, "\(refused.bodyText)")
        }
    }

    @Test func discoveryListsTheAlgorithmsWithAKeyAndTheScopesTheCodeFlowGrants() throws {
        let h = try Harness()
        let document = try #require(h.call("GET", "/.well-known/openid-configuration").json)
        #expect(document["id_token_signing_alg_values_supported"] == ["ES256", "RS256"])
        let scopes = try #require(document["scopes_supported"]?.arrayValue).compactMap(\.stringValue)
        #expect(scopes.contains("openid") && scopes.contains("offline_access"))
        #expect(!scopes.contains(where: Scopes.isPrivileged), "management scopes are not granted to users")
        try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .edDSA)
        #expect(h.call("GET", "/.well-known/openid-configuration").json?["id_token_signing_alg_values_supported"] == ["ES256", "RS256", "EdDSA"])
    }

    @Test func theJWKSIsJSONUnlessTheCallerAsksForTheJWKSetType() throws {
        let h = try Harness()
        let plain = h.call("GET", "/oauth2/jwks")
        #expect(plain.headers[.contentType] == "application/json")
        #expect(plain.headers[.vary] == "Accept")
        let asked = h.call("GET", "/oauth2/jwks", headers: [("Accept", "application/jwk-set+json")])
        #expect(asked.headers[.contentType] == "application/jwk-set+json")
        #expect(asked.json == plain.json)
        #expect(Set(try #require(plain.json?["keys"]?.arrayValue).compactMap { $0["alg"]?.stringValue }) == ["ES256", "RS256"])
    }
}

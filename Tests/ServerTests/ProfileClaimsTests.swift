import Common
import HTTPCore
import JOSE
import OAuth
import TestSupport
import Testing

/// The profile, phone and address scopes through the code flow: the ID
/// token and userinfo release what the granted scopes cover, `amr` says
/// how the user signed in.
@Suite struct ProfileClaimsTests {
    let flow = UserFlowTests()

    @Test func theGrantedScopesDecideTheClaimsAndAmrIsPwd() throws {
        let h = try Harness()
        _ = try h.user()
        try Provisioning(env: h.env, store: h.store).setProfile(username: "alice") { $0 = UserProfileFixtures.full }
        let (client, _) = try h.app(scope: ["openid", "profile", "phone", "address", "email"])
        let pkce = PKCE()
        let code = try flow.code(h, Browser(h), client: client, pkce: pkce, scope: "openid phone address")
        let tokens = flow.exchange(h, client: client, code: code, verifier: pkce.verifier)
        let idTokenText = try #require(tokens.json?["id_token"]?.stringValue)
        let idToken = try #require(JWS.parse(idTokenText)).payload
        #expect(idToken["amr"] == ["pwd"])
        #expect(idToken["phone_number"] == "+44 20 7946 0958" && idToken["phone_number_verified"] == false)
        #expect(idToken["address"]?["locality"] == "Oxford")
        #expect(idToken["given_name"] == nil && idToken["email"] == nil, "profile and email were not granted")
        let access = try #require(tokens.json?["access_token"]?.stringValue)
        let info = try #require(h.call("GET", "/oauth2/userinfo", headers: [("Authorization", "Bearer \(access)")]).json)
        #expect(info["phone_number"] == "+44 20 7946 0958" && info["address"]?["country"] == "GB" && info["name"] == nil)
    }

    @Test func discoveryListsTheScopesAndClaims() throws {
        let h = try Harness()
        let doc = try #require(h.call("GET", "/.well-known/openid-configuration").json)
        let scopes = try #require(doc["scopes_supported"]?.arrayValue).compactMap(\.stringValue)
        #expect(scopes.contains("phone") && scopes.contains("address"))
        let claims = try #require(doc["claims_supported"]?.arrayValue).compactMap(\.stringValue)
        #expect(["amr", "given_name", "family_name", "locale", "zoneinfo", "phone_number", "address"].allSatisfy(claims.contains))
    }
}

enum UserProfileFixtures {
    static let full = UserProfile(givenName: "Alice", familyName: "Liddell", locale: "en-GB", zoneinfo: "Europe/London",
                                  phoneNumber: "+44 20 7946 0958",
                                  address: ["street_address": "1 Rabbit Hole", "locality": "Oxford", "postal_code": "OX1 1AA", "country": "GB"])
}

import Common
@testable import Cryptography
import HTTPCore
import JOSE
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

    /// A refused token is verified once: the answer for a deleted client's
    /// token (AU0006) comes from that one verification, so a forged token,
    /// which anyone can send, does not cost a second signature check to find
    /// that it is not one (it did, session 31's note).
    @Test func aRefusedTokenCostsOneVerification() throws {
        let h = try Harness()
        let primary = try h.token()
        let doomed = try h.createClient(["client_name": "doomed", "scope": "manageExternalClients"], token: primary)
        let deleted = try h.token(clientID: doomed.id, secret: doomed.secret)
        #expect(h.json("DELETE", "/api/v1/clients/\(doomed.id)", token: primary).status == 204)
        // The primary's token with the deleted client's signature: our key's kid, a well-formed signature, not this one's.
        let forged = primary.split(separator: ".").prefix(2).joined(separator: ".") + "." + deleted.split(separator: ".")[2]
        let kid = try #require(JWS.parse(primary)?.kid)
        let key = try #require(try h.worker.context.keys.verificationKey(kid: kid))
        for (token, status, code): (String, HTTPResponse.Status, String) in [(forged, 401, "AU0001"), (deleted, 404, "AU0006")] {
            let before = key.verifications
            let r = h.json("GET", "/external/v1/oauth/client/current", token: token)
            #expect(r.status == status && r.json?["code"] == .string(code))
            #expect(key.verifications - before <= 1, "\(code): \(key.verifications - before) verifications")
        }
        // Every other surface, a forged token: one verification and a 401.
        for path in ["/api/v1/clients", "/v3/oauth-clients", "/api/oauth/app"] {
            let before = key.verifications
            #expect(h.json("GET", path, token: forged).status == 401, "\(path)")
            #expect(key.verifications - before == 1, "\(path): \(key.verifications - before) verifications")
        }
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
        // The message names the field as this surface calls it (SPEC 6.2), not the registry's name for it.
        let emptyName = h.json("POST", "/external/v1/oauth/client", token: token, body: ["password": "long-enough", "application": ""])
        #expect(emptyName.json?["message"]?.stringValue?.hasPrefix("The payload you have supplied is invalid. application:") == true,
                "\(emptyName.bodyText)")
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
        // At most 100 operations (review, session 20: the patch runs with the client's row held).
        let renames = { (n: Int) in JSON.array((0..<n).map { ["op": "replace", "path": "/name", "value": .string("Reports \($0)")] }) }
        let tooMany = h.json("PATCH", "/v3/oauth-clients/\(id)", token: token, body: renames(101), contentType: "application/json-patch+json")
        #expect(tooMany.status == 400, "\(tooMany.bodyText)")
        #expect(h.json("GET", "/v3/oauth-clients/\(id)", token: token).json?["name"] == "Reports")
        let hundred = h.json("PATCH", "/v3/oauth-clients/\(id)", token: token, body: renames(100), contentType: "application/json-patch+json")
        #expect(hundred.status == 200 && hundred.json?["name"] == "Reports 99", "\(hundred.bodyText)")
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

    /// SPEC audit, session 9: a client made on another surface (no description, a grant /v3 cannot name) patches
    /// like any other, and keeps what /v3 does not show.
    @Test func aClientMadeElsewherePatchesAndKeepsWhatThisSurfaceCannotName() throws {
        let h = try Harness()
        let token = try h.token()
        let created = try #require(h.json("POST", "/api/v1/clients", token: token, body: [
            "client_name": "Native", "grant_types": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
            "token_endpoint_auth_method": "none", "scope": "openid"]).json)
        let id = try #require(created["client_id"]?.stringValue)
        for target in [id, h.primary.clientID] {
            let r = h.json("PATCH", "/v3/oauth-clients/\(target)", token: token, body: [["op": "replace", "path": "/accessTokenValiditySeconds", "value": 600]],
                           contentType: "application/json-patch+json")
            #expect(r.status == 200, "\(target): \(r.bodyText)")
        }
        let native = try #require(h.json("GET", "/api/v1/clients/\(id)", token: token).json)
        #expect(native["grant_types"] == ["refresh_token", "urn:ietf:params:oauth:grant-type:device_code"] || native["grant_types"] == ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
                "\(native["grant_types"] ?? .null)")
        #expect(native["description"] == nil || native["description"] == .null)
        #expect(native["access_token_ttl"] == 600)
        // Create still wants its description.
        var body = IdentitySurfaceTests.createBody.objectValue ?? []
        body.removeAll { $0.0 == "description" }
        #expect(h.json("POST", "/v3/oauth-clients", token: token, body: .object(body)).status == 400)
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

import Common
import Cryptography
import Foundation
import Synchronization
import HTTPCore
import Imaging
import JOSE
import OAuth
import Server
import TestSupport
import Testing

/// The findings of the outside security review (issue 10), one test per
/// rule, each at the place the rule lives. Each failed on the code before.
@Suite struct SecurityReviewTests {
    let flow = UserFlowTests()

    /// A confidential client that holds client_credentials, the code flow and
    /// management scopes, plus a user token issued to it through the code flow.
    func userTokenOfAManagingClient(_ h: Harness) throws -> (client: String, secret: String, userToken: String) {
        _ = try h.user()
        let created = try #require(h.json("POST", "/api/v1/clients", token: try h.token(), body: [
            "client_name": "Dual use", "redirect_uris": .array([.string(Harness.redirect)]),
            "grant_types": ["authorization_code", "client_credentials"],
            "scope": "openid clients:read clients:write manageExternalClients sp:oauth-client:manage gov.user.oauth.app:write",
        ]).json)
        let id = try #require(created["client_id"]?.stringValue)
        let secret = try #require(created["client_secret"]?.stringValue)
        let pkce = PKCE()
        let code = try flow.code(h, Browser(h), client: id, pkce: pkce, scope: "openid")
        let tokens = flow.exchange(h, client: id, secret: secret, code: code, verifier: pkce.verifier)
        let userToken = try #require(tokens.json?["access_token"]?.stringValue)
        return (id, secret, userToken)
    }

    // 1. A user's token is never a management caller.
    @Test func aUsersTokenCannotTakeOverItsClient() throws {
        let h = try Harness()
        let (id, secret, userToken) = try userTokenOfAManagingClient(h)
        let calls: [(String, String, JSON?)] = [
            ("POST", "/api/v1/clients/current/secret", nil),
            ("GET", "/api/v1/clients/current", nil),
            ("GET", "/api/v1/clients", nil),
            ("PUT", "/external/v1/oauth/password", ["password": "attacker-chosen-1"]),
            ("GET", "/external/v1/oauth/client/current", nil),
            ("GET", "/v3/oauth-clients", nil),
            ("POST", "/api/oauth/app", ["name": "x", "redirect_uri": "https://x.example/cb"]),
            ("PUT", "/api/oauth/app/id/\(id)/rotate", nil),
        ]
        for (method, path, body) in calls {
            let r = h.json(method, path, token: userToken, body: body)
            #expect(r.status == 401, "\(method) \(path) answered \(r.status)")
        }
        // The secret still works: nothing was rotated.
        #expect(try h.token(clientID: id, secret: secret, scope: "clients:read").isEmpty == false)
        // And the client's own token is a management caller.
        let own = try h.token(clientID: id, secret: secret)
        #expect(h.json("GET", "/api/v1/clients/current", token: own).status == 200)
    }

    /// Every bearer-protected management route (SPEC 6.1–6.4), with a body
    /// that would be valid for the primary, and the scope the route needs.
    static func managementRoutes(target: String) -> [(method: String, path: String, body: JSON?, scope: String?)] {
        [
            ("GET", "/api/v1/organization", nil, "clients:read"), ("GET", "/api/v1/audit", nil, "audit:read"),
            ("POST", "/api/v1/clients", ["client_name": "m"], "clients:write"), ("GET", "/api/v1/clients", nil, "clients:read"),
            ("GET", "/api/v1/clients/current", nil, nil), ("POST", "/api/v1/clients/current/secret", nil, nil),
            ("GET", "/api/v1/clients/\(target)", nil, "clients:read"), ("PATCH", "/api/v1/clients/\(target)", ["description": "d"], "clients:write"),
            ("PUT", "/api/v1/clients/\(target)", ["client_name": "m"], "clients:write"), ("POST", "/api/v1/clients/\(target)/secret", nil, "clients:write"),
            ("DELETE", "/api/v1/clients/\(target)/logo", nil, "clients:write"), ("DELETE", "/api/v1/clients/\(target)", nil, "clients:write"),
            ("POST", "/external/v1/oauth/client", ["password": "long-enough", "application": "m"], "manageExternalClients"),
            ("PUT", "/external/v1/oauth/client", ["clientId": .string(target), "application": "m"], "manageExternalClients"),
            ("GET", "/external/v1/oauth/client", nil, "manageExternalClients"),
            ("PUT", "/external/v1/oauth/client/password-reset", ["clientId": .string(target), "password": "long-enough"], "manageExternalClients"),
            ("GET", "/external/v1/oauth/client/current", nil, nil), ("PUT", "/external/v1/oauth/password", ["password": "long-enough"], nil),
            ("DELETE", "/external/v1/oauth/client/\(target)", nil, "manageExternalClients"),
            ("POST", "/v3/oauth-clients", IdentitySurfaceTests.createBody, "sp:oauth-client:manage"),
            ("GET", "/v3/oauth-clients", nil, "sp:oauth-client:read"), ("GET", "/v3/oauth-clients/\(target)", nil, "sp:oauth-client:read"),
            ("DELETE", "/v3/oauth-clients/\(target)", nil, "sp:oauth-client:manage"),
            ("GET", "/api/oauth/app", nil, "gov.user.oauth.app:read"),
            ("POST", "/api/oauth/app", ["name": "m", "redirect_uri": "https://m.example/cb"], "gov.user.oauth.app:write"),
            ("PUT", "/api/oauth/app/id/\(target)", ["name": "m", "redirect_uri": "https://m.example/cb"], "gov.user.oauth.app:write"),
            ("PUT", "/api/oauth/app/id/\(target)/rotate", nil, "gov.user.oauth.app:write"),
            ("DELETE", "/api/oauth/app/id/\(target)", nil, "gov.user.oauth.app:write"),
        ]
    }

    /// Every management route, with every kind of token that must not pass:
    /// a user's (401), a deleted client's (401; AU0006 404 on the integration
    /// surface, as its source says), another organization's (404 for the
    /// target, nothing changed), a narrowed one without the route's scope (403).
    @Test func everyManagementRouteRefusesEveryWrongKindOfToken() throws {
        let h = try Harness()
        let (_, _, userToken) = try userTokenOfAManagingClient(h)
        let primary = try h.token()
        let target = try #require(h.json("POST", "/api/oauth/app", token: primary, body: ["name": "target", "redirect_uri": "https://t.example/cb"]).json?["client_id"]?.stringValue)
        let doomed = try #require(h.json("POST", "/api/v1/clients", token: primary, body: ["client_name": "doomed", "scope": .string(Scopes.join(Scopes.primary.filter { $0 != "keys:manage" }))]).json)
        let doomedID = try #require(doomed["client_id"]?.stringValue)
        let deletedToken = try h.token(clientID: doomedID, secret: try #require(doomed["client_secret"]?.stringValue))
        #expect(h.json("DELETE", "/api/v1/clients/\(doomedID)", token: primary).status == 204)
        let orgB = try Provisioning(env: h.env, store: h.store).createOrganization(name: "B", clientLimit: 10)
        let foreign = try h.token(clientID: orgB.clientID, secret: orgB.clientSecret)
        let before = try h.store.client(target)
        for route in SecurityReviewTests.managementRoutes(target: target) {
            let label = "\(route.method) \(route.path)"
            #expect(h.json(route.method, route.path, token: userToken, body: route.body).status == 401, "user token: \(label)")
            let deleted = h.json(route.method, route.path, token: deletedToken, body: route.body)
            #expect(deleted.status == (route.path.hasPrefix("/external/") ? 404 : 401), "deleted client's token: \(label)")
            if route.path.contains(target) {
                let r = h.json(route.method, route.path, token: foreign, body: route.body)
                #expect(r.status == (route.path.hasPrefix("/external/") ? 403 : 404), "another organization: \(label) answered \(r.status)")
            }
            if let scope = route.scope {
                let other = ["clients:read", "manageExternalClients"].first { $0 != scope && !(scope == "clients:write" && $0 == "clients:read") } ?? "keys:manage"
                let narrow = try h.token(scope: other)
                #expect(h.json(route.method, route.path, token: narrow, body: route.body).status == 403, "narrowed to \(other): \(label)")
            }
        }
        #expect(try h.store.client(target) == before)
    }

    // 2. What a caller may grant is its token's scope claim.
    @Test func aNarrowedTokenGivesNoMoreThanItCarries() throws {
        let h = try Harness()
        let narrow = try h.token(scope: "clients:write")
        let native = h.json("POST", "/api/v1/clients", token: narrow, body: ["client_name": "x", "scope": "audit:read"])
        #expect(native.status == 403)
        #expect(h.json("POST", "/api/v1/clients", token: narrow, body: ["client_name": "x", "scope": "clients:write openid"]).status == 201)
        let integrationToken = try h.token(scope: "manageExternalClients")
        let integration = h.json("POST", "/external/v1/oauth/client", token: integrationToken,
                                 body: ["password": "long-enough", "application": "x", "accessScopes": ["keys:manage"]])
        #expect(integration.status == 403)
        #expect(integration.json?["code"] == "AU0002")
        let v3Token = try h.token(scope: "sp:oauth-client:manage")
        let v3 = h.json("POST", "/v3/oauth-clients", token: v3Token, body: IdentitySurfaceTests.createBody)
        #expect(v3.status == 200)
        #expect(v3.json?["scope"] == ["sp:oauth-client:manage"])
    }

    // Attacker review, session 9: setting a client's credential gives away its privileged scopes (SPEC 6.0).
    @Test func settingAnotherClientsCredentialNeedsThePrimaryAndEveryPrivilegedScopeItHolds() throws {
        let h = try Harness()
        let full = try h.token()
        func create(_ body: JSON) throws -> (String, String) {
            let r = try #require(h.json("POST", "/api/v1/clients", token: full, body: body).json)
            return (try #require(r["client_id"]?.stringValue), try #require(r["client_secret"]?.stringValue))
        }
        let (ops, opsSecret) = try create(["client_name": "Ops", "grant_types": ["client_credentials"], "scope": "keys:manage audit:read clients:read"])
        let (bot, botSecret) = try create(["client_name": "Provisioner", "grant_types": ["client_credentials"], "scope": "clients:write"])
        let key = try SigningKey.generate(.es256)
        let takeOver: JSON = ["token_endpoint_auth_method": "private_key_jwt", "jwks": ["keys": [try JWK.publicJWK(key, kid: "k1")]]]
        let merge = "application/merge-patch+json"

        // A secondary with clients:write: not the primary, so another client's way of authenticating is not its to set.
        let botToken = try h.token(clientID: bot, secret: botSecret)
        let bySecondary = h.json("PATCH", "/api/v1/clients/\(ops)", token: botToken, body: takeOver, contentType: merge)
        #expect(bySecondary.status == 403 && bySecondary.json?["code"] == "primary_only", "\(bySecondary.bodyText)")
        // The primary, narrowed to one surface's scope: no credential of a client holding scopes the token lacks, on any surface.
        let narrowed: [(String, String, String, JSON?, String)] = [
            ("clients:write", "PATCH", "/api/v1/clients/\(ops)", takeOver, merge),
            ("clients:write", "POST", "/api/v1/clients/\(ops)/secret", [:], "application/json"),
            ("manageExternalClients", "PUT", "/external/v1/oauth/client/password-reset", ["clientId": .string(ops), "password": "attacker-chosen"],
             "application/json"),
            ("gov.user.oauth.app:write", "PUT", "/api/oauth/app/id/\(ops)/rotate", nil, "application/json"),
        ]
        for (scope, method, path, body, type) in narrowed {
            let r = h.json(method, path, token: try h.token(scope: scope), body: body, contentType: type)
            #expect(r.status == 403, "\(scope) \(method) \(path): \(r.status) \(r.bodyText)")
        }
        // Nothing changed: the old secret still works, and only it.
        #expect(h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (ops, opsSecret)).status == 200)
        // With every privileged scope the target holds, the primary may.
        let enough = try h.token(scope: "clients:write keys:manage audit:read clients:read")
        #expect(h.json("POST", "/api/v1/clients/\(ops)/secret", token: enough, body: [:]).status == 200)
        #expect(h.json("PATCH", "/api/v1/clients/\(ops)", token: enough, body: takeOver, contentType: merge).status == 200)
        // A client without privileged scopes: any primary token that may write clients.
        let (plain, _) = try create(["client_name": "Plain", "grant_types": ["client_credentials"], "scope": "createSubscription"])
        #expect(h.json("POST", "/api/v1/clients/\(plain)/secret", token: try h.token(scope: "clients:write"), body: [:]).status == 200)
    }

    // Attacker review, session 13: a secondary that may edit a public app added its own redirect URI, and the users who
    // had ticked "remember" were sent there with a code, without a screen (the app's PKCE is the attacker's own). An added
    // redirect URI now ends every remembered approval of the client; other edits keep them.
    @Test func anAddedRedirectURIAsksEveryUserAgain() throws {
        let flow = UserFlowTests()
        let (h, _, client, pkce, b) = try flow.started()
        _ = try flow.code(h, b, client: client, pkce: pkce)
        func next(_ redirect: String = Harness.redirect) -> String {
            var params = flow.authorizeParams(client, pkce)
            params.removeAll { $0.0 == "redirect_uri" }
            return b.authorize(params + [("redirect_uri", redirect)]).headers[.location] ?? ""
        }
        #expect(next().hasPrefix(Harness.redirect + "?"), "remembered: straight back")
        let full = try h.token()
        let merge = "application/merge-patch+json"
        #expect(h.json("PATCH", "/api/v1/clients/\(client)", token: full, body: ["client_name": "Renamed app"], contentType: merge).status == 200)
        #expect(next().hasPrefix(Harness.redirect + "?"), "a rename keeps the approvals")
        let bot = try #require(h.json("POST", "/api/v1/clients", token: full, body: [
            "client_name": "Provisioner", "grant_types": ["client_credentials"], "scope": "clients:read clients:write"]).json)
        let botToken = try h.token(clientID: try #require(bot["client_id"]?.stringValue), secret: try #require(bot["client_secret"]?.stringValue))
        let evil = "https://evil.example/cb"
        let added = h.json("PATCH", "/api/v1/clients/\(client)", token: botToken, body: ["redirect_uris": [.string(Harness.redirect), .string(evil)]],
                           contentType: merge)
        #expect(added.status == 200, "\(added.bodyText)")
        #expect(next(evil).hasPrefix("/consent/"), "the new redirect URI: the user is asked")
        #expect(next().hasPrefix("/consent/"), "and for the old one too: every approval of the client ended")
    }

    // Attacker review, session 13: a client the primary disabled (after an incident) was re-enabled by a secondary, on
    // the native API and on /v3, and its old secret held its privileged scopes again. Re-enabling is the primary's.
    @Test func reEnablingAnotherClientNeedsThePrimary() throws {
        let h = try Harness()
        let full = try h.token()
        let (ops, opsSecret) = try h.createClient(["client_name": "Key ops", "grant_types": ["client_credentials"], "scope": "keys:manage audit:read"],
                                                  token: full)
        let merge = "application/merge-patch+json"
        #expect(h.json("PATCH", "/api/v1/clients/\(ops)", token: full, body: ["enabled": false], contentType: merge).status == 200)
        let bot = try #require(h.json("POST", "/api/v1/clients", token: full, body: [
            "client_name": "Provisioner", "grant_types": ["client_credentials"], "scope": "clients:read clients:write sp:oauth-client:manage"]).json)
        let botToken = try h.token(clientID: try #require(bot["client_id"]?.stringValue), secret: try #require(bot["client_secret"]?.stringValue))
        let native = h.json("PATCH", "/api/v1/clients/\(ops)", token: botToken, body: ["enabled": true], contentType: merge)
        #expect(native.status == 403 && native.json?["code"] == "primary_only", "\(native.status) \(native.bodyText)")
        let v3 = h.json("PATCH", "/v3/oauth-clients/\(ops)", token: botToken, body: [["op": "replace", "path": "/enabled", "value": true]],
                        contentType: "application/json-patch+json")
        #expect(v3.status == 403, "\(v3.status) \(v3.bodyText)")
        #expect(h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (ops, opsSecret)).status == 401, "still disabled")
        // The primary may, and the client's secret works again.
        #expect(h.json("PATCH", "/api/v1/clients/\(ops)", token: full, body: ["enabled": true], contentType: merge).status == 200)
        #expect(h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (ops, opsSecret)).status == 200)
    }

    // Attacker review, session 17: taking client_credentials from a client holding a management scope ended none of its
    // tokens, and a secondary with clients:write could give the grant back, so that the old secret minted them again.
    @Test func clientCredentialsTakenAwayEndsItsTokensAndComesBackOnlyThroughThePrimary() throws {
        let h = try Harness()
        let full = try h.token()
        let (reader, secret) = try h.createClient(["client_name": "Reader", "grant_types": ["client_credentials"], "scope": "clients:read"], token: full)
        let old = try h.token(clientID: reader, secret: secret)
        #expect(h.json("GET", "/api/v1/clients", token: old).status == 200)
        let merge = "application/merge-patch+json"
        #expect(h.json("PATCH", "/api/v1/clients/\(reader)", token: full, body: ["grant_types": ["authorization_code"],
                                                                                 "redirect_uris": [.string(Harness.redirect)]],
                       contentType: merge).status == 200)
        #expect(h.json("GET", "/api/v1/clients", token: old).status == 401, "its client_credentials token ended with the grant")
        let bot = try #require(h.json("POST", "/api/v1/clients", token: full, body: [
            "client_name": "Provisioner", "grant_types": ["client_credentials"], "scope": "clients:read clients:write"]).json)
        let botToken = try h.token(clientID: try #require(bot["client_id"]?.stringValue), secret: try #require(bot["client_secret"]?.stringValue))
        let back = h.json("PATCH", "/api/v1/clients/\(reader)", token: botToken, body: ["grant_types": ["client_credentials"]], contentType: merge)
        #expect(back.status == 403 && back.json?["code"] == "primary_only", "\(back.status) \(back.bodyText)")
        #expect(h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (reader, secret)).status != 200)
        // A client without management scopes is anyone's with clients:write to change so; the primary may give it back here.
        #expect(h.json("PATCH", "/api/v1/clients/\(reader)", token: full, body: ["grant_types": ["client_credentials"]], contentType: merge).status == 200)
        #expect(h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (reader, secret)).status == 200)
    }

    // Attacker review, session 13: a secondary with clients:write made a FAPI 2.0 client public and switched its profile
    // off, and the client's refresh token then worked with its client_id alone, no assertion and no DPoP proof.
    // Taking away what a client's tokens and requests must show is setting its credential (SPEC 6.0, 10.2).
    @Test(arguments: [
        (["token_endpoint_auth_method": "none"], false), (["token_endpoint_auth_method": "none"], true),
        (["fapi2_security_profile": false], true), (["dpop_bound_access_tokens": false], true),
        (["require_pushed_authorization_requests": false], true), (["fapi2_security_profile": false, "token_endpoint_auth_method": "none"], true),
    ] as [(JSON, Bool)])
    func loweringAnotherClientsAuthenticationNeedsThePrimary(_ lowering: JSON, _ strict: Bool) throws {
        let h = try Harness()
        let full = try h.token()
        let key = try SigningKey.generate(.es256)
        let created = h.json("POST", "/api/v1/clients", token: full, body: [
            "client_name": "Bank app", "redirect_uris": [.string(Harness.redirect)], "grant_types": ["authorization_code", "refresh_token"],
            "scope": "openid offline_access", "token_endpoint_auth_method": "private_key_jwt",
            "jwks": ["keys": [try JWK.publicJWK(key, kid: "k1")]], "fapi2_security_profile": .bool(strict),
            "dpop_bound_access_tokens": .bool(strict), "require_pushed_authorization_requests": .bool(strict),
        ])
        #expect(created.status == 201, "\(created.bodyText)")
        let bank = try #require(created.json?["client_id"]?.stringValue)
        let bot = try #require(h.json("POST", "/api/v1/clients", token: full, body: [
            "client_name": "Provisioner", "grant_types": ["client_credentials"], "scope": "clients:read clients:write"]).json)
        let botToken = try h.token(clientID: try #require(bot["client_id"]?.stringValue), secret: try #require(bot["client_secret"]?.stringValue))
        let merge = "application/merge-patch+json"
        let before = try #require(h.json("GET", "/api/v1/clients/\(bank)", token: full).json)
        let refused = h.json("PATCH", "/api/v1/clients/\(bank)", token: botToken, body: lowering, contentType: merge)
        if strict && lowering["token_endpoint_auth_method"] != nil && lowering["fapi2_security_profile"] == nil {
            // A FAPI 2.0 client cannot be public at all: refused for what it is, before who asks.
            #expect(refused.status == 400, "\(refused.status) \(refused.bodyText)")
            return
        }
        #expect(refused.status == 403 && refused.json?["code"] == "primary_only", "\(refused.status) \(refused.bodyText)")
        #expect(h.json("GET", "/api/v1/clients/\(bank)", token: full).json == before, "nothing changed")
        // What asks more stays the secondary's to change (a name, a redirect URI), and the primary may lower it.
        #expect(h.json("PATCH", "/api/v1/clients/\(bank)", token: botToken, body: ["client_name": "Bank app 2"], contentType: merge).status == 200)
        #expect(h.json("PATCH", "/api/v1/clients/\(bank)", token: full, body: lowering, contentType: merge).status == 200)
    }

    @Test func aNarrowedTokenCannotMintItsOwnClientsFullCredential() throws {
        let h = try Harness()
        for (method, path, body) in [("POST", "/api/v1/clients/current/secret", JSON.object([])),
                                     ("PUT", "/external/v1/oauth/password", ["password": "attacker-chosen"])] {
            let r = h.json(method, path, token: try h.token(scope: "tokens:introspect"), body: body)
            #expect(r.status == 403, "\(path): \(r.status) \(r.bodyText)")
        }
        #expect(h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID, h.primary.clientSecret)).status == 200)
        // A token with the client's scopes (what it gets without asking for fewer) may.
        #expect(h.json("POST", "/api/v1/clients/current/secret", token: try h.token(), body: [:]).status == 200)
    }

    @Test func takingAPrivilegedScopeAwayEndsTheClientsTokens() throws {
        let h = try Harness()
        let created = try #require(h.json("POST", "/api/v1/clients", token: try h.token(),
                                          body: ["client_name": "Auditor", "grant_types": ["client_credentials"], "scope": "audit:read createSubscription"]).json)
        let id = try #require(created["client_id"]?.stringValue), secret = try #require(created["client_secret"]?.stringValue)
        let before = try h.token(clientID: id, secret: secret)
        #expect(h.json("GET", "/api/v1/audit", token: before).status == 200)
        // A free scope changed: the tokens stay.
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: try h.token(), body: ["scope": "audit:read createSubscription openid"],
                       contentType: "application/merge-patch+json").status == 200)
        #expect(h.json("GET", "/api/v1/audit", token: before).status == 200)
        // The privileged one taken away: the token out is dead at once, and a new one carries what is left.
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: try h.token(), body: ["scope": "createSubscription"],
                       contentType: "application/merge-patch+json").status == 200)
        #expect(h.json("GET", "/api/v1/audit", token: before).status == 401)
        let after = try h.token(clientID: id, secret: secret)
        #expect(h.json("GET", "/api/v1/audit", token: after).status == 403)
    }

    /// Review of session 9's fix: a registration access token carried its client's privileged scopes, so a secondary
    /// that registered a client could take it over once an operator gave it one. It carries none now.
    @Test func aRegistrationAccessTokenCannotSetTheCredentialOfAClientGivenAPrivilegedScopeLater() throws {
        let h = try Harness()
        let full = try h.token()
        let s = try #require(h.json("POST", "/api/v1/clients", token: full, body: [
            "client_name": "Registrar", "grant_types": ["client_credentials"], "scope": "clients:write clients:read"]).json)
        let sToken = try h.token(clientID: try #require(s["client_id"]?.stringValue), secret: try #require(s["client_secret"]?.stringValue))
        let registered = try #require(h.json("POST", "/oauth2/register", token: sToken, body: [
            "grant_types": ["client_credentials"], "scope": "createSubscription", "client_name": "Worker", "redirect_uris": []]).json)
        let id = try #require(registered["client_id"]?.stringValue), rat = try #require(registered["registration_access_token"]?.stringValue)
        let secret = try #require(registered["client_secret"]?.stringValue)
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: full, body: ["scope": "createSubscription keys:manage"],
                       contentType: "application/merge-patch+json").status == 200)
        let key = try SigningKey.generate(.es256)
        let base: [(String, JSON)] = [("client_id", .string(id)), ("grant_types", ["client_credentials"]), ("client_name", "Worker"),
                                      ("scope", "createSubscription keys:manage")]
        let takeOver = h.json("PUT", "/oauth2/register/\(id)", token: rat, body: .object(base + [
            ("token_endpoint_auth_method", "private_key_jwt"), ("jwks", ["keys": [try JWK.publicJWK(key, kid: "k1")]])]))
        #expect(takeOver.status == 400 || takeOver.status == 403, "\(takeOver.status) \(takeOver.bodyText)")
        #expect(h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (id, secret)).status == 200)
        // Switching between the secret methods hands over nothing, and stays allowed (no new secret comes with it).
        let post = h.json("PUT", "/oauth2/register/\(id)", token: rat, body: .object(base + [("token_endpoint_auth_method", "client_secret_post")]))
        #expect(post.status == 200 && post.json?["client_secret"] == nil, "\(post.bodyText)")
        // And a secondary with clients:write may switch another client's secret method, as any writable field.
        let other = try #require(h.json("POST", "/api/v1/clients", token: full, body: [
            "client_name": "Other", "grant_types": ["client_credentials"], "scope": "audit:read", "token_endpoint_auth_method": "client_secret_post"]).json)
        let otherID = try #require(other["client_id"]?.stringValue)
        #expect(h.json("PATCH", "/api/v1/clients/\(otherID)", token: sToken, body: ["token_endpoint_auth_method": "client_secret_basic"],
                       contentType: "application/merge-patch+json").status == 200)
    }

    /// Attacker review, session 18: keys stored on a client that authenticates with a secret (set at its creation by a
    /// secondary, or by its registration access token while it held no privileged scope) lay dormant; switching the
    /// method alone to private_key_jwt woke them, unchecked, after an operator had given the client a privileged
    /// scope and rotated its secret to cut the key holder off. The switch is setting a credential now.
    @Test func switchingToPrivateKeyJWTWithKeysStoredEarlierIsSettingACredential() throws {
        let h = try Harness()
        let full = try h.token()
        let merge = "application/merge-patch+json"
        let secondary = try h.createClient(["client_name": "Secondary", "grant_types": ["client_credentials"], "scope": "clients:read clients:write"],
                                           token: full)
        let sToken = try h.token(clientID: secondary.id, secret: secondary.secret)
        let key = try SigningKey.generate(.es256)
        let jwks: JSON = ["keys": [try JWK.publicJWK(key, kid: "k1")]]

        // A secondary's client, its keys stored while it uses a secret; then the operator's privileged scope and cut.
        let (worker, _) = try h.createClient(["client_name": "Worker", "grant_types": ["client_credentials"], "scope": "openid", "jwks": jwks],
                                             token: sToken)
        #expect(h.json("PATCH", "/api/v1/clients/\(worker)", token: full, body: ["scope": "openid audit:read"], contentType: merge).status == 200)
        let rotated = h.json("POST", "/api/v1/clients/\(worker)/secret", token: full, body: ["grace_period_seconds": 0])
        #expect(rotated.status == 200)
        let switchOver = h.json("PATCH", "/api/v1/clients/\(worker)", token: sToken, body: ["token_endpoint_auth_method": "private_key_jwt"],
                                contentType: merge)
        #expect(switchOver.status == 403 && switchOver.json?["code"] == "primary_only", "\(switchOver.status) \(switchOver.bodyText)")
        let newSecret = try #require(rotated.json?["client_secret"]?.stringValue)
        #expect(h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (worker, newSecret)).status == 200, "nothing changed")

        // The same through RFC 7592: keys put while the client held no privileged scope, the method switched after one.
        let registered = try #require(h.json("POST", "/oauth2/register", token: full, body: [
            "grant_types": ["client_credentials"], "scope": "openid", "client_name": "Registered", "redirect_uris": []]).json)
        let id = try #require(registered["client_id"]?.stringValue), rat = try #require(registered["registration_access_token"]?.stringValue)
        let base: [(String, JSON)] = [("client_id", .string(id)), ("grant_types", ["client_credentials"]), ("client_name", "Registered")]
        #expect(h.json("PUT", "/oauth2/register/\(id)", token: rat, body: .object(base + [("scope", "openid"), ("jwks", jwks)])).status == 200)
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: full, body: ["scope": "openid audit:read"], contentType: merge).status == 200)
        let viaToken = h.json("PUT", "/oauth2/register/\(id)", token: rat, body: .object(base + [
            ("scope", "openid audit:read"), ("jwks", jwks), ("token_endpoint_auth_method", "private_key_jwt")]))
        #expect(viaToken.status == 400 || viaToken.status == 403, "\(viaToken.status) \(viaToken.bodyText)")
        #expect(try h.store.read { try h.store.client(id) }?.authMethod == .clientSecretBasic)
        // The primary may, holding the scope.
        #expect(h.json("PATCH", "/api/v1/clients/\(worker)", token: full, body: ["token_endpoint_auth_method": "private_key_jwt"],
                       contentType: merge).status == 200)
    }

    /// Attacker review, session 28: an operator's cut-off (the primary rotating a leaked secret without grace, setting
    /// the client's password, or giving it keys instead) left the leaked secret's access tokens alive, and one of them
    /// could mint a credential of its own (`POST /api/v1/clients/current/secret`, the integration password, or switch
    /// the method back) and push out the operator's. Those tokens now end with the credential they were issued for.
    @Test func anOperatorsCutOffEndsTheTokensOfTheOldCredential() throws {
        let h = try Harness()
        let full = try h.token()
        let merge = "application/merge-patch+json"
        func worker() throws -> (id: String, token: String) {
            let c = try h.createClient(["client_name": "Worker", "grant_types": ["client_credentials"],
                                        "scope": "clients:read clients:write manageExternalClients"], token: full)
            return (c.id, try h.token(clientID: c.id, secret: c.secret))
        }
        func works(_ token: String) -> Bool { h.json("GET", "/api/v1/clients/current", token: token).status == 200 }

        // The primary's rotation without grace: the old secret's token mints nothing any more.
        let a = try worker()
        let rotated = h.json("POST", "/api/v1/clients/\(a.id)/secret", token: full, body: ["grace_period_seconds": 0])
        #expect(rotated.status == 200)
        #expect(!works(a.token))
        #expect(h.json("POST", "/api/v1/clients/current/secret", token: a.token, body: ["grace_period_seconds": 0]).status == 401)
        #expect(h.json("PUT", "/external/v1/oauth/password", token: a.token, body: ["password": "attacker-chosen-pw"]).status == 401)
        let operatorSecret = try #require(rotated.json?["client_secret"]?.stringValue)
        #expect(works(try h.token(clientID: a.id, secret: operatorSecret)), "the operator's secret works, and its tokens")

        // The primary's password for the client (the integration surface's reset): the same.
        let b = try worker()
        #expect(h.json("PUT", "/external/v1/oauth/client/password-reset", token: full,
                       body: ["clientId": .string(b.id), "password": "operator-chosen-pw"]).status == 204)
        #expect(!works(b.token))

        // The primary's keys instead of the secret: the secret's tokens end, and cannot switch the method back.
        let c = try worker()
        let key = try SigningKey.generate(.es256)
        #expect(h.json("PATCH", "/api/v1/clients/\(c.id)", token: full, body: [
            "token_endpoint_auth_method": "private_key_jwt", "jwks": ["keys": [try JWK.publicJWK(key, kid: "k1")]]], contentType: merge).status == 200)
        #expect(!works(c.token))
        #expect(h.json("PATCH", "/api/v1/clients/current", token: c.token, body: ["token_endpoint_auth_method": "client_secret_basic"],
                       contentType: merge).status == 401)

        // What cuts nothing off keeps the tokens: a rotation with grace (planned), the client's own rotation (it holds
        // the new secret), and switching between the secret methods (the same secret).
        let d = try worker()
        #expect(h.json("POST", "/api/v1/clients/\(d.id)/secret", token: full, body: ["grace_period_seconds": 600]).status == 200)
        #expect(works(d.token))
        #expect(h.json("POST", "/api/v1/clients/current/secret", token: d.token, body: ["grace_period_seconds": 0]).status == 200)
        #expect(works(d.token))
        #expect(h.json("PATCH", "/api/v1/clients/\(d.id)", token: full, body: ["token_endpoint_auth_method": "client_secret_post"],
                       contentType: merge).status == 200)
        #expect(works(d.token))
    }

    /// Independent review, session 28: an operator's planned key rollover (a key added beside the one the client signs
    /// with, or the same keys reordered) takes nothing away and keeps the tokens, as a rotation with grace does; taking
    /// the key away is a cut-off and ends them.
    @Test func anOperatorsKeyRolloverKeepsTokensUntilTheOldKeyGoes() throws {
        let h = try Harness()
        let full = try h.token()
        let merge = "application/merge-patch+json"
        let old = try SigningKey.generate(.es256), new = try SigningKey.generate(.es256)
        let oldJWK = try JWK.publicJWK(old, kid: "old"), newJWK = try JWK.publicJWK(new, kid: "new")
        let created = h.json("POST", "/api/v1/clients", token: full, body: [
            "client_name": "Signed", "grant_types": ["client_credentials"], "scope": "clients:read",
            "token_endpoint_auth_method": "private_key_jwt", "jwks": ["keys": [oldJWK]]])
        let id = try #require(created.json?["client_id"]?.stringValue, "\(created.bodyText)")
        let now = h.clock.now / 1000
        let claims: JSON = ["iss": .string(id), "sub": .string(id), "aud": .string(Harness.issuer + "/oauth2/token"), "exp": .int(now + 60),
                            "jti": "rollover"]
        let issued = h.form("/oauth2/token", [("grant_type", "client_credentials"),
                                              ("client_assertion", try JWS.sign(payload: claims, key: old, kid: "old", typ: "JWT")),
                                              ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")])
        let token = try #require(issued.json?["access_token"]?.stringValue, "\(issued.bodyText)")
        func works() -> Bool { h.json("GET", "/api/v1/clients/current", token: token).status == 200 }
        func setKeys(_ keys: [JSON]) -> Int {
            h.json("PATCH", "/api/v1/clients/\(id)", token: full, body: ["jwks": ["keys": .array(keys)]], contentType: merge).status.code
        }
        #expect(works())
        #expect(setKeys([oldJWK, newJWK]) == 200)
        #expect(works(), "a key added")
        #expect(setKeys([newJWK, oldJWK]) == 200)
        #expect(works(), "the same keys reordered")
        #expect(setKeys([newJWK]) == 200)
        #expect(!works(), "the key it signed with taken away")
    }
}

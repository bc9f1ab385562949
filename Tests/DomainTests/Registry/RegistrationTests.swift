import Common
import Foundation
import OAuth
import Synchronization
import TestSupport
import Testing

/// RFC 7591 and RFC 7592 over the registry (SPEC 10.1): who may register
/// into which organization, OIDC Registration's defaults, the 6.0 rules, and
/// the registration access token.
@Suite struct RegistrationTests {
    struct Setup {
        let h: StoreFixture
        let registration: ClientRegistration
        init() throws {
            h = try StoreFixture()
            registration = ClientRegistration(registry: try h.registry())
        }
        func initial(_ scopes: [String] = ["clients:write"]) throws -> Caller { try h.caller(scopes: scopes) }
    }

    static let web: JSON = ["redirect_uris": ["https://rp.example/cb"], "client_name": "RP", "unknown_metadata": "ignored"]

    @Test func anInitialAccessTokenRegistersIntoItsOrganizationWithOIDCDefaults() throws {
        let s = try Setup()
        let r = try s.registration.register(Self.web, caller: try s.initial())
        #expect(r.client.organizationID == s.h.primary.organizationID)
        #expect(r.client.idTokenAlg == .rs256, "OIDC Registration §2: RS256 unless asked")
        #expect(r.client.grantTypes == [.authorizationCode] && r.client.authMethod == .clientSecretBasic)
        #expect(r.client.scope == ClientRegistration.defaultScope)
        #expect(r.secret?.hasPrefix("lks_") == true)
        let token = try #require(r.registrationToken)
        #expect(token.hasPrefix("lkg_"))
        let stored = try #require(try s.h.store.read { try s.h.store.registrationTokenHash(clientID: r.client.clientID) })
        #expect(stored != token && !stored.contains(token), "stored hashed")
        let json = ClientRegistration.json(r, issuer: StoreFixture.issuer)
        #expect(json["unknown_metadata"] == nil, "RFC 7591 §2: unknown metadata is ignored")
        #expect(json["registration_client_uri"] == .string("\(StoreFixture.issuer)/oauth2/register/\(r.client.clientID)"))
        #expect(json["response_types"] == ["code"] && json["client_secret_expires_at"] == 0)
    }

    @Test(arguments: [
        ("a redirect URI with a fragment", ["redirect_uris": ["https://rp.example/cb#x"]] as JSON, ClientRegistration.Refusal.invalidRedirectURI("")),
        ("the code grant without a redirect URI", ["client_name": "x"] as JSON, .invalidRedirectURI("")),
        ("a response type other than code", ["redirect_uris": ["https://rp.example/cb"], "response_types": ["token"]] as JSON, .invalidMetadata("")),
        ("an unknown ID token algorithm", ["redirect_uris": ["https://rp.example/cb"], "id_token_signed_response_alg": "none"] as JSON, .invalidMetadata("")),
        ("a scope the caller's token does not hold", ["redirect_uris": ["https://rp.example/cb"], "scope": "openid keys:manage"] as JSON, .invalidMetadata("")),
        ("redirect_uris not an array", ["redirect_uris": "https://rp.example/cb"] as JSON, .invalidMetadata("")),
    ] as [(String, JSON, ClientRegistration.Refusal)])
    func badMetadataIsRefusedAndNothingIsStored(_ name: String, _ metadata: JSON, _ kind: ClientRegistration.Refusal) throws {
        let s = try Setup()
        let before = try s.h.store.read { try s.h.store.clientCount(organizationID: s.h.primary.organizationID) }
        do {
            _ = try s.registration.register(metadata, caller: try s.initial())
            Issue.record("\(name): registered")
        } catch let refusal as ClientRegistration.Refusal {
            switch (refusal, kind) {
            case (.invalidRedirectURI, .invalidRedirectURI), (.invalidMetadata, .invalidMetadata): break
            default: Issue.record("\(name): \(refusal)")
            }
        }
        #expect(try s.h.store.read { try s.h.store.clientCount(organizationID: s.h.primary.organizationID) } == before)
    }

    @Test func anonymousRegistrationsNeedAnOpenOrganizationAndGetNoPrivilegedScope() throws {
        let s = try Setup()
        #expect(throws: ClientRegistration.Refusal.notAllowed) { _ = try s.registration.openRegistrant(requestID: nil) }
        let open = try Provisioning(env: s.h.env, store: s.h.store).createOrganization(name: "Open", clientLimit: 2)
        try ClientRegistration.setOpen(true, organizationID: open.organizationID, store: s.h.store)
        let anonymous = try s.registration.openRegistrant(requestID: nil)
        #expect(anonymous.scopes.isEmpty)
        #expect(throws: ClientRegistration.Refusal.self) {
            _ = try s.registration.register(["redirect_uris": ["https://rp.example/cb"], "scope": "openid clients:read"], caller: anonymous)
        }
        // Nothing that reaches the organization's other apps: only the OpenID scopes and a relying party's grants.
        #expect(throws: ClientRegistration.Refusal.self) {
            _ = try s.registration.register(["redirect_uris": ["https://rp.example/cb"], "scope": "openid gov.user.oauth.authorize"], caller: anonymous)
        }
        #expect(throws: ClientRegistration.Refusal.self) {
            _ = try s.registration.register(["redirect_uris": ["https://rp.example/cb"], "grant_types": ["authorization_code", "client_credentials"]],
                                            caller: anonymous)
        }
        let r = try s.registration.register(Self.web, caller: anonymous)
        #expect(r.client.organizationID == open.organizationID)
        let audit = try s.h.store.read { try s.h.store.auditEvents(organizationID: open.organizationID, limit: 10, offset: 0) }
        #expect(audit.events.contains { $0.action == "client.created" && $0.actor == "anonymous" && $0.surface == "registration" })
        // The organization's client limit (2: its primary and this one) counts registrations too.
        #expect(throws: ClientRegistration.Refusal.invalidMetadata(RegistryError.Conflict.limitReached.message)) {
            _ = try s.registration.register(Self.web, caller: anonymous)
        }
        try ClientRegistration.setOpen(false, organizationID: open.organizationID, store: s.h.store)
        #expect(throws: ClientRegistration.Refusal.notAllowed) { _ = try s.registration.openRegistrant(requestID: nil) }
    }

    @Test func theRegistrationTokenReadsReplacesAndDeletesItsClientOnly() throws {
        let s = try Setup()
        let a = try s.registration.register(Self.web, caller: try s.initial())
        let b = try s.registration.register(Self.web, caller: try s.initial())
        let id = a.client.clientID, token = try #require(a.registrationToken)
        #expect(try s.registration.authorized(id, token: token).clientID == id)
        for wrong in [nil, "", "lkg_wrong", b.registrationToken] {
            #expect(throws: ClientRegistration.Refusal.invalidToken) { _ = try s.registration.authorized(id, token: wrong) }
        }
        #expect(throws: ClientRegistration.Refusal.invalidToken) { _ = try s.registration.authorized("no-such-client", token: token) }
        #expect(throws: ClientRegistration.Refusal.invalidToken) { _ = try s.registration.authorized(s.h.primary.clientID, token: token) }
        let replaced = try s.registration.replace(id, token: token, metadata: ["client_id": .string(id), "redirect_uris": ["https://rp.example/new"],
                                                                                "client_name": "RP 2", "id_token_signed_response_alg": "ES256"])
        #expect(replaced.client.redirectURIs == ["https://rp.example/new"] && replaced.client.name == "RP 2" && replaced.client.idTokenAlg == .es256)
        #expect(throws: ClientRegistration.Refusal.self) { _ = try s.registration.replace(id, token: token, metadata: ["client_id": "other"]) }
        #expect(throws: ClientRegistration.Refusal.self) {
            _ = try s.registration.replace(id, token: token, metadata: ["client_id": .string(id), "redirect_uris": ["https://rp.example/cb"],
                                                                          "scope": "openid clients:write"])
        }
        #expect(throws: ClientRegistration.Refusal.self, "RFC 7592 §2.2: the body names the client") {
            _ = try s.registration.replace(id, token: token, metadata: ["redirect_uris": ["https://rp.example/cb"]])
        }
        try s.registration.delete(id, token: token)
        #expect(try s.h.store.read { try s.h.store.client(id) } == nil)
        #expect(throws: ClientRegistration.Refusal.invalidToken) { _ = try s.registration.authorized(id, token: token) }
        #expect(try s.h.store.read { try s.h.store.isClientIDRetired(id) }, "SPEC 4.5: never given again")
    }
}

/// What the configuration endpoint may not do (an attacker's review of it).
@Suite struct RegistrationReplaceTests {
    @Test func aReplaceKeepsWhatTheOperatorSetAndADisabledClientCannotManageItself() throws {
        let s = try RegistrationTests.Setup()
        let r = try s.registration.register(RegistrationTests.web, caller: try s.initial())
        let id = r.client.clientID, token = try #require(r.registrationToken)
        let registry = try s.h.registry()
        let admin = try s.h.caller(scopes: Scopes.primary)
        _ = try registry.update(id, caller: admin, expected: nil) { current in
            var spec = ClientSpec(current)
            (spec.accessTokenTTL, spec.description, spec.extraData) = (120, "quarantine pending", ["ticket": "INC-1"])
            return spec
        }
        let replaced = try s.registration.replace(id, token: token, metadata: ["client_id": .string(id), "redirect_uris": ["https://rp.example/2"]])
        #expect(replaced.client.accessTokenTTL == 120 && replaced.client.description == "quarantine pending" && replaced.client.extraData["ticket"] == "INC-1")
        _ = try registry.update(id, caller: admin, expected: nil) { current in
            var spec = ClientSpec(current)
            spec.enabled = false
            return spec
        }
        #expect(throws: ClientRegistration.Refusal.invalidToken) {
            _ = try s.registration.replace(id, token: token, metadata: ["client_id": .string(id), "redirect_uris": ["https://rp.example/2"]])
        }
        #expect(try s.h.store.read { try s.h.store.client(id) }?.enabled == false, "it stays disabled")
    }

    /// Another connection (an operator on another node) disables the client
    /// and commits while the PUT waits for the write: the PUT replaces the
    /// disabled client, so it is refused and the client stays off (attacker
    /// review: the PUT used to write back the `enabled` it had read before).
    @Test func aReplaceRacingAnOperatorsDisableDoesNotSwitchItBackOn() throws {
        let s = try RegistrationTests.Setup()
        let r = try s.registration.register(RegistrationTests.web, caller: try s.initial())
        let id = r.client.clientID, token = try #require(r.registrationToken)
        let failure = try StoreContractTests.whileAnotherConnectionHolds(s.h, StoreContractTests.changingClient(id) { $0.enabled = false }) {
            #expect(throws: ClientRegistration.Refusal.invalidToken) {
                _ = try s.registration.replace(id, token: token, metadata: ["client_id": .string(id), "redirect_uris": ["https://rp.example/2"]])
            }
        }
        #expect(failure == nil)
        #expect(try s.h.store.read { try s.h.store.client(id) }?.enabled == false, "it stays disabled")
    }

    /// A PUT whose new secret is refused (the client holds a privileged scope
    /// the registration access token does not carry) changes nothing: the
    /// method and grants it sent are not left behind without a secret.
    @Test func aRefusedSecretLeavesTheClientAsItWas() throws {
        let s = try RegistrationTests.Setup()
        let body: JSON = ["redirect_uris": ["https://rp.example/cb"], "scope": "openid clients:read",
                          "grant_types": ["authorization_code", "client_credentials"]]
        let r = try s.registration.register(body, caller: try s.initial(["clients:write", "clients:read"]))
        let id = r.client.clientID, token = try #require(r.registrationToken)
        // Made public by its operator (the registration access token may not: taking a client's authentication away
        // is setting its credential, and this one holds a privileged scope the token lacks).
        var publicBody: JSON = ["client_id": .string(id), "redirect_uris": ["https://rp.example/cb"], "scope": "openid clients:read"]
        publicBody.set("token_endpoint_auth_method", "none")
        #expect(throws: ClientRegistration.Refusal.self) { _ = try s.registration.replace(id, token: token, metadata: publicBody) }
        _ = try s.h.registry().update(id, caller: try s.h.caller(scopes: Scopes.primary), expected: nil) { current in
            var spec = ClientSpec(current)
            spec.authMethod = "none"
            spec.grantTypes = ["authorization_code"]
            return spec
        }
        let before = try #require(try s.h.store.read { try s.h.store.client(id) })
        var back = body
        back.set("client_id", .string(id))
        #expect(throws: ClientRegistration.Refusal.self) { _ = try s.registration.replace(id, token: token, metadata: back) }
        let after = try #require(try s.h.store.read { try s.h.store.client(id) })
        #expect(after.authMethod == before.authMethod && !after.authMethod.usesSecret && after.grantTypes == before.grantTypes && after.version == before.version)
    }

    /// Disabling a client ends its registration access token for good, as it
    /// ends its tokens (SPEC 4.5): re-enabled after an incident, the client
    /// is managed by its operator, not by whoever held the old token.
    @Test func disablingAClientEndsItsRegistrationToken() throws {
        let s = try RegistrationTests.Setup()
        let r = try s.registration.register(RegistrationTests.web, caller: try s.initial())
        let id = r.client.clientID, token = try #require(r.registrationToken)
        let registry = try s.h.registry()
        let admin = try s.h.caller(scopes: Scopes.primary)
        for enabled in [false, true] {
            _ = try registry.update(id, caller: admin, expected: nil) { current in
                var spec = ClientSpec(current)
                spec.enabled = enabled
                return spec
            }
        }
        #expect(try s.h.store.read { try s.h.store.client(id) }?.enabled == true)
        #expect(throws: ClientRegistration.Refusal.invalidToken) { _ = try s.registration.authorized(id, token: token) }
    }

    @Test func becomingConfidentialAgainIssuesASecret() throws {
        let s = try RegistrationTests.Setup()
        let r = try s.registration.register(RegistrationTests.web, caller: try s.initial())
        let id = r.client.clientID, token = try #require(r.registrationToken)
        let body: JSON = ["client_id": .string(id), "redirect_uris": ["https://rp.example/cb"]]
        var publicBody = body
        publicBody.set("token_endpoint_auth_method", "none")
        #expect(try s.registration.replace(id, token: token, metadata: publicBody).secret == nil)
        let back = try s.registration.replace(id, token: token, metadata: body)
        #expect(back.secret?.hasPrefix("lks_") == true, "a confidential client without a secret would be locked out")
    }
}

import Common
import OAuth
import TestSupport
import Testing

/// The registry's named operations that the compatible surfaces call
/// instead of reading the store themselves (issue 12), and who may do what
/// with them (SPEC 6.0, 6.2, 6.4).
@Suite struct RegistryTests {
    /// The fixture's organization plus a second one, each with a secondary client.
    struct TwoOrganizations {
        let h: StoreFixture
        let registry: ClientRegistry
        let primaryA: Caller, secondaryA: Caller, primaryB: Caller
        let clientA: String, clientB: String

        init() throws {
            h = try StoreFixture()
            registry = try h.registry()
            let b = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Beta", clientLimit: 10)
            primaryA = try h.caller(scopes: Scopes.primary)
            primaryB = try h.caller(b.clientID, scopes: Scopes.primary)
            clientA = try registry.create(ClientSpec(name: "A machine", grantTypes: ["client_credentials"], scope: ["clients:read"]), caller: primaryA).client.clientID
            clientB = try registry.create(ClientSpec(name: "B machine", grantTypes: ["client_credentials"]), caller: primaryB).client.clientID
            secondaryA = try h.caller(clientA, scopes: ["clients:read"])
        }
    }

    @Test func locateTellsAnotherOrganizationApartWhereGetDoesNot() throws {
        let t = try TwoOrganizations()
        #expect(try t.h.store.read { try t.registry.locate(t.clientA, caller: t.primaryA) }.clientID == t.clientA)
        #expect(throws: RegistryError.forbidden(.otherOrganization)) { try t.h.store.read { try t.registry.locate(t.clientB, caller: t.primaryA) } }
        #expect(throws: RegistryError.notFound) { try t.h.store.read { try t.registry.locate("no-such-client", caller: t.primaryA) } }
        #expect(throws: RegistryError.notFound) { try t.h.store.read { try t.registry.get(t.clientB, caller: t.primaryA) } }
    }

    /// The integration surface's password reset: the primary only, even on
    /// itself; another organization's client is told apart; nothing hashed
    /// or written on a refusal.
    @Test func aPasswordResetIsThePrimarysAlone() throws {
        let t = try TwoOrganizations()
        let before = try t.h.store.read { try t.h.store.secrets(clientID: t.clientA) }
        #expect(throws: RegistryError.primaryOnly) { try t.registry.resetPassword(t.clientA, caller: t.secondaryA, password: "a long enough password") }
        #expect(throws: RegistryError.forbidden(.otherOrganization)) {
            try t.registry.resetPassword(t.clientB, caller: t.primaryA, password: "a long enough password")
        }
        #expect(try t.h.store.read { try t.h.store.secrets(clientID: t.clientA) } == before)
        // A client may still change its own password.
        try t.registry.setPassword(t.clientA, caller: t.secondaryA, password: "a long enough password")
        try t.registry.resetPassword(t.clientA, caller: t.primaryA, password: "another long password")
        #expect(try t.h.store.read { try t.h.store.secrets(clientID: t.clientA) }.map(\.kind) == [.scrypt])
    }

    @Test func onlyThePrimaryDeletesAndNeverItself() throws {
        let t = try TwoOrganizations()
        #expect(throws: RegistryError.primaryUndeletable) { try t.registry.delete(t.primaryA.client.clientID, caller: t.primaryA) }
        #expect(throws: RegistryError.primaryOnly) { try t.registry.delete(t.clientA, caller: t.secondaryA) }
        #expect(throws: RegistryError.notFound) { try t.registry.delete(t.clientB, caller: t.primaryA) }
        try t.registry.delete(t.clientA, caller: t.primaryA)
        #expect(try t.h.store.read { try t.h.store.client(t.clientA) } == nil)
    }

    /// SPEC 6.4: what the consent screen and the app surface's public reads may show.
    @Test func onlyClientsThatCanAskForConsentArePublic() throws {
        let t = try TwoOrganizations()
        let (app, _) = try t.h.app()
        #expect(try t.h.store.read { try t.registry.consentable(app) }?.clientID == app)
        #expect(try t.h.store.read { try t.registry.consentable(t.clientA) } == nil, "a machine client")
        #expect(try t.h.store.read { try t.registry.consentable(t.primaryA.client.clientID) } == nil, "a primary client")
        _ = try t.registry.update(app, caller: t.primaryA, expected: nil) { current in
            var spec = ClientSpec(current)
            spec.enabled = false
            return spec
        }
        #expect(try t.h.store.read { try t.registry.consentable(app) } == nil, "a disabled client")
        #expect(try t.h.store.read { try t.registry.consentableLogo(app) } == nil)
    }

    /// SPEC 6.4's `/auth/code`: an enabled client with the code grant and one redirect URI, in the caller's organization.
    @Test func anAppForACodeHasOneRedirectURIAndTheCallersOrganization() throws {
        let t = try TwoOrganizations()
        let (app, _) = try t.h.app()
        let (twoURIs, _) = try t.h.app(redirectURIs: [StoreFixture.redirect, "https://app.example/other"])
        let organization = t.primaryA.organizationID
        #expect(try t.h.store.read { try t.registry.app(forCode: app, organization: organization) }?.clientID == app)
        #expect(try t.h.store.read { try t.registry.app(forCode: app, organization: nil) }?.clientID == app)
        #expect(try t.h.store.read { try t.registry.app(forCode: app, organization: t.primaryB.organizationID) } == nil)
        #expect(try t.h.store.read { try t.registry.app(forCode: twoURIs, organization: organization) } == nil)
        #expect(try t.h.store.read { try t.registry.app(forCode: t.clientA, organization: organization) } == nil)
    }
}

/// An organization's name is shown on consent screens (SPEC 7.1), so it
/// follows the client name's rules: something visible, nothing that hides.
@Suite struct OrganizationNameTests {
    @Test(arguments: ["", "   ", "\u{2800}", "\u{00A0}\u{3000}", "\u{0301}", "Ev\u{202E}il", "a\u{200B}b"])
    func aNameThatShowsNothingOrHidesSomethingIsRefused(_ name: String) throws {
        let h = try StoreFixture()
        #expect(throws: ProvisioningError.self, "\(name.unicodeScalars.map(\.value))") {
            _ = try Provisioning(env: h.env, store: h.store).createOrganization(name: name, clientLimit: 10)
        }
    }

    @Test func aVisibleNameIsKeptTrimmed() throws {
        let h = try StoreFixture()
        let created = try Provisioning(env: h.env, store: h.store).createOrganization(name: "  Ünïcødé 名前 ", clientLimit: 10)
        #expect(try h.store.organization(created.organizationID)?.name == "Ünïcødé 名前")
    }
}

import Common
import OAuth
import Testing

/// The token endpoint's grants at the domain level (issue 12): values in,
/// a token response or an exact OAuth error out, no HTTP.
@Suite struct GrantTests {
    func exchange(_ h: Harness, _ grantType: String, _ parameters: [String: String], as credentials: PresentedCredentials) throws -> TokenResponse {
        let hasher = try Provisioning.secretHasher(store: h.store, env: h.env)
        let service = TokenService(env: h.env, store: h.store, keys: KeyRing(store: h.store, env: h.env))
        let exchange = TokenExchange(service: service, authenticator: ClientAuthenticator(env: h.env, store: h.store, hasher: hasher, guards: nil))
        return try exchange.exchange(TokenRequest(grantType: grantType, parameters: parameters), credentials: credentials)
    }

    func refused(_ body: () throws -> TokenResponse) -> (code: String, status: Int, description: String)? {
        do {
            _ = try body()
            return nil
        } catch let e as OAuthError {
            return (e.code, e.status, e.publicDescription)
        } catch {
            return ("unexpected \(error)", 0, "")
        }
    }

    @Test func everyGrantIsListedOnceUnderItsType() {
        #expect(Set(TokenExchange.grants.keys) == ["client_credentials", "authorization_code", "refresh_token"])
        for (type, grant) in TokenExchange.grants { #expect(grant.type == type) }
        #expect(TokenExchange.grants["client_credentials"]?.allowsPublicClients == false)
        #expect(TokenExchange.grants["client_credentials"]?.readsOnly == true)
        #expect(TokenExchange.grants["authorization_code"]?.allowsPublicClients == true)
        #expect(TokenExchange.grants["refresh_token"]?.readsOnly == false)
    }

    /// The grant type is checked once, by the exchange, for every grant.
    @Test(arguments: [
        ("password", [:], "unsupported_grant_type", "The grant type is not supported."),
        ("authorization_code", ["code": "lkc_x"], "unauthorized_client", "The client is not allowed to use this grant type."),
        ("refresh_token", ["refresh_token": "lkr_x"], "unauthorized_client", "The client is not allowed to use this grant type."),
    ] as [(String, [String: String], String, String)])
    func aMachineClientGetsOnlyItsGrant(grantType: String, parameters: [String: String], code: String, description: String) throws {
        let h = try Harness()
        let primary = PresentedCredentials.basic(clientID: h.primary.clientID, secret: h.primary.clientSecret)
        let error = refused { try exchange(h, grantType, parameters, as: primary) }
        #expect(error?.code == code && error?.status == 400 && error?.description == description)
    }

    @Test(arguments: [
        ("authorization_code", [:], "code is required."),
        ("refresh_token", [:], "refresh_token is required."),
    ] as [(String, [String: String], String)])
    func aMissingParameterIsInvalidRequest(grantType: String, parameters: [String: String], description: String) throws {
        let h = try Harness()
        let (client, _) = try h.app()
        let error = refused { try exchange(h, grantType, parameters, as: .publicClient(clientID: client)) }
        #expect(error?.code == "invalid_request" && error?.status == 400 && error?.description == description)
    }

    @Test func clientCredentialsNarrowsTheScopeAndRefusesAWiderOne() throws {
        let h = try Harness()
        let primary = PresentedCredentials.basic(clientID: h.primary.clientID, secret: h.primary.clientSecret)
        #expect(try exchange(h, "client_credentials", ["scope": "clients:read"], as: primary).scope == ["clients:read"])
        let wider = refused { try exchange(h, "client_credentials", ["scope": "clients:read no-such-scope"], as: primary) }
        #expect(wider?.code == "invalid_scope")
        // A public client never gets client_credentials: authentication refuses it before the grant runs.
        let (app, _) = try h.app()
        #expect(refused { try exchange(h, "client_credentials", [:], as: .publicClient(clientID: app)) }?.code == "invalid_client")
    }

    /// Authentication comes first: an unknown client learns nothing about codes.
    @Test func anUnauthenticatedCallerLearnsNothingAboutTheGrant() throws {
        let h = try Harness()
        let error = refused { try exchange(h, "authorization_code", ["code": "lkc_unknown"], as: .publicClient(clientID: "no-such-client")) }
        #expect(error?.code == "invalid_client" && error?.status == 401)
    }
}

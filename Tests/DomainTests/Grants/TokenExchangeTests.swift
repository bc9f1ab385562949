import Common
import OAuth
import TestSupport
import Testing

/// The token exchange (issue 12): the grants it lists, and the checks it
/// makes once for every grant (authentication, then the client's grant
/// types) before dispatching. Each grant has its own suite beside this one.
@Suite struct TokenExchangeTests {
    func exchange(_ h: StoreFixture, _ grantType: String, _ parameters: [String: String], as credentials: PresentedCredentials) throws -> TokenResponse {
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
        #expect(GrantType.known.map(\.rawValue) == ["authorization_code", "refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:device_code"])
        #expect(TokenExchange.grants.count == GrantType.known.count, "one grant per type")
        #expect(GrantType(known: "password") == nil && GrantType(known: "refresh_token") == .refreshToken)
        for (type, grant) in TokenExchange.grants { #expect(grant.type == type) }
        #expect(TokenExchange.grants[.clientCredentials]?.allowsPublicClients == false)
        #expect(TokenExchange.grants[.clientCredentials]?.readsOnly == true)
        #expect(TokenExchange.grants[.authorizationCode]?.allowsPublicClients == true)
        #expect(TokenExchange.grants[.refreshToken]?.readsOnly == false)
    }

    /// The grant type is checked once, by the exchange, for every grant.
    @Test(arguments: [
        ("password", [:], "unsupported_grant_type", "The grant type is not supported."),
        ("authorization_code", ["code": "lkc_x"], "unauthorized_client", "The client is not allowed to use this grant type."),
        ("refresh_token", ["refresh_token": "lkr_x"], "unauthorized_client", "The client is not allowed to use this grant type."),
    ] as [(String, [String: String], String, String)])
    func aMachineClientGetsOnlyItsGrant(grantType: String, parameters: [String: String], code: String, description: String) throws {
        let h = try StoreFixture()
        let primary = PresentedCredentials.basic(clientID: h.primary.clientID, secret: h.primary.clientSecret)
        let error = refused { try exchange(h, grantType, parameters, as: primary) }
        #expect(error?.code == code && error?.status == 400 && error?.description == description)
    }

    @Test(arguments: [
        ("authorization_code", [:], "code is required."),
        ("refresh_token", [:], "refresh_token is required."),
    ] as [(String, [String: String], String)])
    func aMissingParameterIsInvalidRequest(grantType: String, parameters: [String: String], description: String) throws {
        let h = try StoreFixture()
        let (client, _) = try h.app()
        let error = refused { try exchange(h, grantType, parameters, as: .publicClient(clientID: client)) }
        #expect(error?.code == "invalid_request" && error?.status == 400 && error?.description == description)
    }

    /// Authentication comes first: an unknown client learns nothing about codes.
    @Test func anUnauthenticatedCallerLearnsNothingAboutTheGrant() throws {
        let h = try StoreFixture()
        let error = refused { try exchange(h, "authorization_code", ["code": "lkc_unknown"], as: .publicClient(clientID: "no-such-client")) }
        #expect(error?.code == "invalid_client" && error?.status == 401)
    }
}

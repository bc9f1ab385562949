import Common
import Cryptography
import OAuth
import TestSupport
import Testing

/// What the grant suites share: the token exchange over a fixture, and an
/// exchange's outcome as the exact body the token endpoint would send.
struct GrantTesting {
    let h: StoreFixture

    init() throws { h = try StoreFixture() }

    var service: TokenService { TokenService(env: h.env, store: h.store, keys: KeyRing(store: h.store, env: h.env)) }

    func exchange(_ grantType: String, _ parameters: [String: String], as credentials: PresentedCredentials) throws -> TokenResponse {
        let hasher = try Provisioning.secretHasher(store: h.store, env: h.env)
        let exchange = TokenExchange(service: service, authenticator: ClientAuthenticator(env: h.env, store: h.store, hasher: hasher, guards: nil))
        return try exchange.exchange(TokenRequest(grantType: grantType, parameters: parameters), credentials: credentials)
    }

    /// The refusal's status and RFC 6749 §5.2 body; nil when a token was issued.
    func refusal(_ grantType: String, _ parameters: [String: String], as credentials: PresentedCredentials) -> Refusal? {
        do {
            _ = try exchange(grantType, parameters, as: credentials)
            return nil
        } catch let e as OAuthError {
            return Refusal(status: e.status, body: e.json)
        } catch {
            return Refusal(status: 0, body: .string("unexpected \(error)"))
        }
    }

    var primary: PresentedCredentials { .basic(clientID: h.primary.clientID, secret: h.primary.clientSecret) }

    /// A code for `client` as the consent screen issues it, with PKCE (S256) unless `challenge` is nil.
    func code(client: String, user: String, verifier: String? = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
              scope: [String] = ["openid", "offline_access"], session: SessionRecord? = nil, claims: ClaimsRequest? = nil) throws -> String {
        let challenge = verifier.map { Base64.urlEncode(Digest.sha256($0)) }
        var request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true, scope: scope, state: nil,
                                           nonce: "n-1", codeChallenge: challenge, prompt: [], maxAge: nil, claims: claims)
        // As the authorization checks set it from the client.
        request.backchannel = try h.store.read { try h.store.client(client) }?.backchannelLogoutURI != nil
        let person = try #require(try h.store.read { try h.store.user(id: user) })
        return try AuthorizationService(env: h.env, store: h.store).issueCode(request, user: person, authTime: h.clock.now / 1000, session: session, scope: scope,
                                                                              consent: .replace, answering: nil)
    }
}

struct Refusal: Equatable, CustomStringConvertible {
    var status: Int
    var body: JSON

    static func invalidGrant(_ description: String = "The grant is invalid, expired or revoked.") -> Refusal {
        Refusal(status: 400, body: ["error": "invalid_grant", "error_description": .string(description)])
    }

    static func invalidRequest(_ description: String) -> Refusal {
        Refusal(status: 400, body: ["error": "invalid_request", "error_description": .string(description)])
    }

    var description: String { "\(status) \(String(decoding: body.serialized(), as: UTF8.self))" }
}

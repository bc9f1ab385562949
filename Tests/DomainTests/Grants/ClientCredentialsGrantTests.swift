import Common
import Cryptography
import JOSE
import OAuth
import TestSupport
import Testing

/// RFC 6749 §4.4: a confidential client's own token, with the scope it
/// asks for within what it is registered for.
@Suite struct ClientCredentialsGrantTests {
    @Test(arguments: [
        ("nothing asked: every registered scope", nil, Optional(Scopes.primary)),
        ("a narrower scope", "clients:read", ["clients:read"]),
        ("the same scope twice", "clients:read clients:read", ["clients:read"]),
        ("an unknown scope", "clients:read no-such-scope", nil),
        ("an empty scope: a token that may do nothing", "", []),
    ] as [(String, String?, [String]?)])
    func theScopeIsTheRegisteredOneOrNarrower(_ name: String, _ asked: String?, _ granted: [String]?) throws {
        let t = try GrantTesting()
        let parameters = asked.map { ["scope": $0] } ?? [:]
        if let granted {
            #expect(Set(try t.exchange("client_credentials", parameters, as: t.primary).scope) == Set(granted), "\(name)")
        } else {
            #expect(t.refusal("client_credentials", parameters, as: t.primary)
                    == Refusal(status: 400, body: ["error": "invalid_scope", "error_description": "The requested scope is invalid or exceeds what the client may request."]),
                    "\(name)")
        }
    }

    @Test func aTokenCarriesNoRefreshTokenAndNoIDToken() throws {
        let t = try GrantTesting()
        let issued = try t.exchange("client_credentials", [:], as: t.primary)
        #expect(issued.refreshToken == nil && issued.idToken == nil && issued.accessToken.split(separator: ".").count == 3)
    }

    /// A worker thread keeps one key ring and encodes an access-token
    /// header once per key: after each rotation, by another process, its
    /// tokens name the new key and algorithm, and verify.
    @Test func tokensNameTheKeyThatSignedThemAcrossRotations() throws {
        let t = try GrantTesting()
        let hasher = try Provisioning.secretHasher(store: t.h.store, env: t.h.env)
        let service = t.service
        let exchange = TokenExchange(service: service, authenticator: ClientAuthenticator(env: t.h.env, store: t.h.store, hasher: hasher, guards: nil))
        let verifier = AccessTokens(env: t.h.env, store: t.h.store, keys: KeyRing(store: t.h.store, env: t.h.env))
        func header(_ token: String) throws -> (alg: String?, kid: String?, typ: String?) {
            let parsed = try #require(JWS.parse(token))
            return (parsed.algorithm, parsed.kid, parsed.typ)
        }
        var kids: [String] = []
        for rotation in [nil, SignatureAlgorithm.es256, .rs256, .rs256] {
            var expected = try KeyRing(store: t.h.store, env: t.h.env).signingKey()
            if let rotation {
                _ = try KeyManagement.rotate(store: t.h.store, env: t.h.env, algorithm: rotation)
                expected = try KeyRing(store: t.h.store, env: t.h.env).signingKey()
            }
            for _ in 0..<2 {
                let token = try exchange.exchange(TokenRequest(grantType: "client_credentials", parameters: [:]), credentials: t.primary).accessToken
                let (alg, kid, typ) = try header(token)
                #expect(kid == expected.kid && alg == expected.key.algorithm.rawValue && typ == AccessTokens.type)
                #expect(try t.h.store.read { try verifier.validate(token) } != nil)
            }
            kids.append(expected.kid)
        }
        #expect(Set(kids).count == 4, "each rotation made a new access-token key")
    }

    /// A public client never gets client_credentials: authentication refuses it before the grant runs.
    @Test func aPublicClientIsRefusedAsAClient() throws {
        let t = try GrantTesting()
        let (app, _) = try t.h.app()
        #expect(t.refusal("client_credentials", [:], as: .publicClient(clientID: app))
                == Refusal(status: 401, body: ["error": "invalid_client", "error_description": "Client authentication failed."]))
    }
}

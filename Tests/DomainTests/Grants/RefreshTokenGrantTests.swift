import Common
import OAuth
import TestSupport
import Testing

/// RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2): each
/// way a refresh is refused, with the exact body.
@Suite struct RefreshTokenGrantTests {
    /// A public app's first refresh token, from a redeemed code.
    func firstRefreshToken(_ t: GrantTesting) throws -> (client: String, token: String) {
        let user = try t.h.user()
        let (client, _) = try t.h.app()
        let code = try t.code(client: client, user: user, scope: ["openid", "offline_access", "profile"])
        let issued = try t.exchange("authorization_code", ["code": code, "redirect_uri": StoreFixture.redirect,
                                                           "code_verifier": AuthorizationCodeGrantTests.verifier], as: .publicClient(clientID: client))
        return (client, try #require(issued.refreshToken))
    }

    @Test(arguments: [
        ("no refresh_token", ["refresh_token": nil], Refusal.invalidRequest("refresh_token is required.")),
        ("unknown refresh_token", ["refresh_token": "lkr_unknown"], .invalidGrant()),
        ("a wider scope", ["scope": "openid offline_access profile email"],
         Refusal(status: 400, body: ["error": "invalid_scope", "error_description": "The requested scope is invalid or exceeds what the client may request."])),
    ] as [(String, [String: String?], Refusal)])
    func aRefreshIsRefused(_ name: String, _ change: [String: String?], _ expected: Refusal) throws {
        let t = try GrantTesting()
        let (client, token) = try firstRefreshToken(t)
        var parameters = ["refresh_token": token]
        for (key, value) in change { parameters[key] = value }
        #expect(t.refusal("refresh_token", parameters, as: .publicClient(clientID: client)) == expected, "\(name)")
        // A refusal rotates nothing: the token still works.
        #expect(try t.exchange("refresh_token", ["refresh_token": token], as: .publicClient(clientID: client)).refreshToken != nil)
    }

    @Test func aNarrowerScopeIsGrantedAndTheTokenRotates() throws {
        let t = try GrantTesting()
        let (client, token) = try firstRefreshToken(t)
        let narrowed = try t.exchange("refresh_token", ["refresh_token": token, "scope": "openid"], as: .publicClient(clientID: client))
        #expect(narrowed.scope == ["openid"])
        #expect(narrowed.idToken == nil, "OIDC Core §12.2: the client already has one")
        let next = try #require(narrowed.refreshToken)
        #expect(next != token)
        // The rotated token keeps the family's whole scope.
        #expect(try t.exchange("refresh_token", ["refresh_token": next], as: .publicClient(clientID: client)).scope == ["openid", "offline_access", "profile"])
    }

    @Test func reusingARotatedTokenRevokesTheFamily() throws {
        let t = try GrantTesting()
        let (client, token) = try firstRefreshToken(t)
        let next = try #require(try t.exchange("refresh_token", ["refresh_token": token], as: .publicClient(clientID: client)).refreshToken)
        #expect(t.refusal("refresh_token", ["refresh_token": token], as: .publicClient(clientID: client)) == .invalidGrant())
        #expect(t.refusal("refresh_token", ["refresh_token": next], as: .publicClient(clientID: client)) == .invalidGrant())
    }

    @Test func anotherClientsTokenAndAnExpiredTokenAreRefused() throws {
        let t = try GrantTesting()
        let (client, token) = try firstRefreshToken(t)
        let (other, _) = try t.h.app()
        #expect(t.refusal("refresh_token", ["refresh_token": token], as: .publicClient(clientID: other)) == .invalidGrant())
        let ttl = try #require(try t.h.store.read { try t.h.store.client(client) }).refreshTokenTTL
        t.h.clock.advance(seconds: Int64(ttl) + 1)
        #expect(t.refusal("refresh_token", ["refresh_token": token], as: .publicClient(clientID: client)) == .invalidGrant())
    }
}

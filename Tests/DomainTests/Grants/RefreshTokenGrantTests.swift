import Common
import Cryptography
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

    /// Every rotation leaves its token behind (for reuse detection) and every
    /// code flow a family: both are purged a day (and five minutes) after they expire
    /// (`TokenFamilies`), at a later insert, and not before.
    @Test func expiredRefreshTokensAndFamiliesArePurgedADayAfterTheyExpire() throws {
        let t = try GrantTesting()
        let (client, first) = try firstRefreshToken(t)
        let day: Int64 = 86_400, kept = TokenFamilies.keptAfterExpiryMillis / 1000, ttl = Int64(try #require(try t.h.store.read { try t.h.store.client(client) }).refreshTokenTTL)
        func column(_ table: String, _ name: String) throws -> Set<String> { Set(try t.h.texts(table, name)) }
        func hash(_ token: String) -> String { Base64.urlEncode(Digest.sha256(token)) }
        func rotate(_ token: String) throws -> String {
            try #require(try t.exchange("refresh_token", ["refresh_token": token], as: .publicClient(clientID: client)).refreshToken)
        }
        let family = try #require(try t.h.store.read { try t.h.store.refreshToken(hash: hash(first)) }).familyID
        let second = try rotate(first)
        t.h.clock.advance(seconds: 20 * day)
        let third = try rotate(second)
        // first and second expired (ttl after they were made) `kept` and a second ago: the next rotation takes them.
        t.h.clock.advance(seconds: ttl - 20 * day + kept + 1)
        let fourth = try rotate(third)
        #expect(try column("refresh_tokens", "token_hash") == [hash(third), hash(fourth)])
        #expect(try column("token_families", "id").contains(family), "its last token lives: the family too")

        // A family without a refresh token expires as it is made: kept a while, then taken by the next code flow.
        let bob = try t.h.user("bob")
        let (shortLived, _) = try t.h.app(scope: ["openid"], grantTypes: [.authorizationCode])
        func codeFlow() throws -> String {
            let code = try t.code(client: shortLived, user: bob, scope: ["openid"])
            _ = try t.exchange("authorization_code", ["code": code, "redirect_uri": StoreFixture.redirect,
                                                      "code_verifier": AuthorizationCodeGrantTests.verifier], as: .publicClient(clientID: shortLived))
            return try #require(try t.h.store.read { try t.h.store.code(hash: hash(code)) }?.familyID)
        }
        let once = try codeFlow()
        t.h.clock.advance(seconds: kept)
        let twice = try codeFlow()
        #expect(try column("token_families", "id").isSuperset(of: [once, twice, family]), "not yet")
        t.h.clock.advance(seconds: 1)
        _ = try codeFlow()
        #expect(try !column("token_families", "id").contains(once))
        #expect(try column("token_families", "id").isSuperset(of: [twice, family]))

        // The first family's last token (fourth) expired a second ago. The family is kept twice `kept` more (its
        // expiry is moved `kept` past its newest token's, and only when it falls short), then the next code flow
        // takes it and its tokens.
        t.h.clock.advance(seconds: ttl - kept)
        _ = try codeFlow()
        t.h.clock.advance(seconds: 2 * kept - 1)
        _ = try codeFlow()
        #expect(try column("token_families", "id").contains(family))
        t.h.clock.advance(seconds: 1)
        _ = try codeFlow()
        #expect(try !column("token_families", "id").contains(family))
        #expect(try column("refresh_tokens", "token_hash").isDisjoint(with: [hash(third), hash(fourth)]))
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

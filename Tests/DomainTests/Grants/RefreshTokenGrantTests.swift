import Common
import Cryptography
import Foundation
import JOSE
import OAuth
import Synchronization
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

    /// FAPI 2.0 Security Profile §5.3.2.1 item 10: rotation only where a retry with the previous token succeeds when
    /// the client never got the new one (a lost response revoked the user's whole grant: FAPI/OIDC review, session 30).
    /// The unused token is withdrawn; once the new one has been used, the old one is reuse as for any client.
    @Test func aFAPIClientMayRetryARefreshWhoseAnswerItNeverGot() throws {
        let t = try GrantTesting()
        let user = try t.h.user()
        let key = try SigningKey.generate(.es256)
        let spec = ClientSpec(name: "Bank", redirectURIs: [StoreFixture.redirect], grantTypes: ["authorization_code", "refresh_token"],
                              authMethod: "private_key_jwt", scope: ["openid"], jwks: ["keys": [try JWK.publicJWK(key, kid: "k1")]], fapi2: true)
        let client = try t.h.registry().create(spec, caller: try t.h.caller()).client.clientID
        let (env, clock) = (t.h.env, t.h.clock)
        func family(_ name: String) throws -> String {
            try t.h.insertRefreshToken(hash: Base64.urlEncode(Digest.sha256("lkr_" + name)), family: name, client: client, user: user)
            return "lkr_" + name
        }
        func refresh(_ token: String) throws -> String {
            try Self.fapiRefresh(token, client: client, key: key, env: env, now: clock.now, store: t.h.store)
        }
        func refused(_ token: String) -> Bool { (try? refresh(token)) == nil }
        func revoked(_ family: String) throws -> Bool { try t.h.store.read { try t.h.store.isFamilyRevoked(id: family) } }

        // The answer to a rotation is lost: the client retries with the old token, twice; each retry withdraws the
        // token the one before issued. Once the newest has been used, the old token is reuse and ends the family.
        let first = try family("first")
        let lost = try refresh(first)
        clock.advance(seconds: 1)
        let retried = try refresh(first)
        let again = try refresh(first)
        #expect(Set([lost, retried, again]).count == 3)
        clock.advance(seconds: 1)
        let next = try refresh(again)
        #expect(try !revoked("first"))
        #expect(try refused(first) && refused(next) && revoked("first"))

        // A token a retry withdrew, presented again, is reuse (whoever holds it raced the client).
        let second = try family("second")
        let withdrawn = try refresh(second)
        let current = try refresh(second)
        #expect(try refused(withdrawn) && refused(current) && revoked("second"))

        // A retry a minute after the rotation is reuse.
        let third = try family("third")
        let late = try refresh(third)
        clock.advance(seconds: RefreshTokenGrant.retryWindowMillis / 1000 + 1)
        #expect(try refused(third) && refused(late) && revoked("third"))

        // A retry sent while the first request is still in its transaction (on PostgreSQL its claim reads the token
        // current, then waits for that commit): a retry all the same, and the family lives.
        let fourth = try family("fourth")
        let hash = Base64.urlEncode(Digest.sha256(fourth)), now = clock.now
        var answered: String?
        let failure = try StoreContractTests.whileAnotherConnectionHolds(t.h, for: 0.5, { other in
            _ = try other.claimRefreshToken(hash: hash, clientID: client, jkt: nil, at: now)
            try other.insertRefreshToken(RefreshTokenRecord(tokenHash: "first-answer", familyID: "fourth", clientID: client, userID: user,
                                                            scope: ["openid"], authTime: now / 1000, createdAt: now, expiresAt: now + 60_000,
                                                            parentHash: hash))
        }) { answered = try refresh(fourth) }
        #expect(try failure == nil && answered != nil && !revoked("fourth"))
        #expect(try t.h.store.read { try t.h.store.refreshToken(hash: "first-answer") }?.withdrawnAt != nil)

        // Retries racing on several connections (nodes) never end the family: they take turns, each withdrawing what
        // the one before it issued, and the last one's token works.
        let fifth = try family("fifth")
        _ = try refresh(fifth)
        clock.advance(seconds: 1)
        let factory = t.h.storeFactory
        let issued = Mutex<[String]>([])
        let start = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        for _ in 0..<6 {
            Thread.detachNewThread {
                let store = try? factory()
                start.wait()
                if let store, let token = try? Self.fapiRefresh(fifth, client: client, key: key, env: env, now: clock.now, store: store) {
                    issued.withLock { $0.append(token) }
                }
                done.signal()
            }
        }
        for _ in 0..<6 { start.signal() }
        for _ in 0..<6 { done.wait() }
        #expect(try !revoked("fifth"))
        #expect(issued.withLock { $0 }.count == 6)
        let unused = try issued.withLock { $0 }.filter { token in
            try t.h.store.read { try t.h.store.refreshToken(hash: Base64.urlEncode(Digest.sha256(token))) }?.rotatedAt == nil
        }
        #expect(unused.count == 1, "the last retry's token, the others withdrawn")
        #expect(try unused.first.map(refresh) != nil)
        // Any other client's retry is reuse, as before (SPEC 4.2): `reusingARotatedTokenRevokesTheFamily`.
    }

    /// A FAPI client's refresh: a private_key_jwt assertion and a DPoP proof taken as verified; the new refresh token.
    static func fapiRefresh(_ token: String, client: String, key: SigningKey, env: OAuth.Environment, now: Int64, store: any Store) throws -> String {
        let exchange = TokenExchange(service: TokenService(env: env, store: store, keys: KeyRing(store: store, env: env)),
                                     authenticator: ClientAuthenticator(env: env, store: store, hasher: try Provisioning.secretHasher(store: store, env: env),
                                                                        guards: nil))
        let assertion = try JWS.sign(payload: ["iss": .string(client), "sub": .string(client), "aud": .string(StoreFixture.issuer),
                                               "exp": .int(now / 1000 + 60), "jti": .string(env.randomToken(bytes: 12))], key: key, kid: "k1", typ: "JWT")
        let proof = DPoPProof(jkt: "jkt-1", jti: env.randomToken(bytes: 12), expiresAt: now + 120_000, verifiedAt: now)
        return try #require(try exchange.exchange(TokenRequest(grantType: "refresh_token", parameters: ["refresh_token": token]),
                                                  credentials: .assertion(clientID: client, assertion: assertion), proof: { proof }).refreshToken)
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

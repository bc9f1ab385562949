import Common
import Cryptography
import Foundation
import JOSE
import OAuth
import Postgres
import SQLite
import SQLiteStore
import TestSupport
import Testing

/// SPEC 10.1: one current key per algorithm, ES256 and RS256 always
/// published, one algorithm signing access tokens, each client's ID tokens
/// signed with the algorithm it chose.
@Suite struct KeyManagementTests {
    func current(_ store: any Store) throws -> [String: String] {
        var kids: [String: String] = [:]
        for key in try store.read({ try store.signingKeys() }) where key.retiredAt == nil { kids[key.algorithm] = kids[key.algorithm] ?? key.kid }
        return kids
    }

    /// A leaked key ends at once (`latchkey keys revoke`), not 24 hours later: what it signed stops verifying on
    /// every ring, those that had verified and remembered a token included (cross-node review, session 29).
    @Test func revokingAKeyEndsWhatItSignedAtOnceEverywhere() throws {
        let h = try StoreFixture()
        let (id, _) = try h.app(public: false)
        let client = try #require(try h.store.read { try h.store.client(id) })
        // Two threads (or nodes), each with its key ring and its cache of verified tokens.
        let rings = [KeyRing(store: h.store, env: h.env), KeyRing(store: h.store, env: h.env)]
        let tokens = rings.map { AccessTokens(env: h.env, store: h.store, keys: $0, cache: VerifiedTokenCache()) }
        let leaked = try #require(current(h.store)["ES256"])
        let token = try tokens[0].issue(client: client, subject: id, scope: [], ttl: 900).token
        // Verified, then answered from each ring's cache (which reads whether the keys lost one).
        for t in tokens { #expect(try t.validate(token) != nil && t.validate(token) != nil) }

        // No time passes: the next request of each ring, its cache's included, sees the revocation.
        let revoked = try KeyManagement.revoke(store: h.store, env: h.env, kid: leaked)
        #expect(revoked.algorithm == .es256)
        let replacement = try #require(revoked.replacement)
        #expect(try current(h.store) == ["ES256": replacement, "RS256": try #require(current(h.store)["RS256"])])
        #expect(try !h.store.signingKeys().contains { $0.kid == leaked })
        for (ring, t) in zip(rings, tokens) {
            #expect(try t.validate(token) == nil, "remembered as verified, and ended all the same")
            #expect(try ring.verificationKey(kid: leaked) == nil)
            #expect(try ring.jwkSet()["keys"]?.arrayValue?.contains { $0["kid"] == .string(leaked) } == false)
            #expect(try ring.algorithms() == [.es256, .rs256] && ring.signingKey().kid == replacement)
        }
        #expect(try tokens[1].validate(try tokens[0].issue(client: client, subject: id, scope: [], ttl: 900).token) != nil)

        // A retired key is revoked without a replacement; an unknown kid is refused and changes nothing.
        let rotated = try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .es256)
        let retired = try KeyManagement.revoke(store: h.store, env: h.env, kid: replacement)
        #expect(try retired.replacement == nil && current(h.store)["ES256"] == rotated)
        let kids = try h.store.signingKeys().map(\.kid)
        #expect(throws: ProvisioningError.self) { try KeyManagement.revoke(store: h.store, env: h.env, kid: "no-such-kid") }
        #expect(try h.store.signingKeys().map(\.kid) == kids)
    }

    /// A retired key leaves a loaded ring when its retention ends, whether or not the keys changed since.
    @Test func aRetiredKeyLeavesTheRingWhenItsRetentionEnds() throws {
        let h = try StoreFixture()
        let ring = KeyRing(store: h.store, env: h.env)
        let old = try #require(current(h.store)["ES256"])
        _ = try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .es256)
        #expect(try ring.verificationKey(kid: old) != nil)
        h.clock.advance(seconds: KeyRing.retentionMillis / 1000 - 1)
        #expect(try ring.verificationKey(kid: old) != nil)
        h.clock.advance(seconds: 1)
        #expect(try ring.verificationKey(kid: old) == nil)
        #expect(try ring.jwkSet()["keys"]?.arrayValue?.contains { $0["kid"] == .string(old) } == false)
    }

    /// No token Latchkey signs lives longer than a day: one that says it does was not made here.
    @Test func aTokenClaimingALongerLifeThanAnyClientHasIsRefused() throws {
        let h = try StoreFixture()
        let (id, _) = try h.app(public: false)
        let client = try #require(try h.store.read { try h.store.client(id) })
        let tokens = AccessTokens(env: h.env, store: h.store, keys: KeyRing(store: h.store, env: h.env), cache: VerifiedTokenCache())
        #expect(try tokens.validate(try tokens.issue(client: client, subject: id, scope: [], ttl: ClientSpec.maxAccessTokenTTL).token) != nil)
        #expect(try tokens.validate(try tokens.issue(client: client, subject: id, scope: [], ttl: ClientSpec.maxAccessTokenTTL + 1).token) == nil)
    }

    @Test func initPublishesES256AndRS256AndSignsAccessTokensWithES256() throws {
        let h = try StoreFixture()
        let ring = KeyRing(store: h.store, env: h.env)
        #expect(try ring.algorithms() == [.es256, .rs256])
        #expect(try ring.signingKey().key.algorithm == .es256)
        #expect(try ring.signingKey(for: .rs256).key.algorithm == .rs256)
        #expect(throws: KeyRingError.self) { try ring.signingKey(for: .edDSA) }
        let published = try #require(try ring.jwkSet()["keys"]?.arrayValue)
        #expect(Set(published.compactMap { $0["kty"]?.stringValue }) == ["EC", "RSA"])
    }

    /// Once a KEK seals the keys, no key is made without it (review, session 20): it would sign in clear.
    @Test func noKeyIsMadeInClearWhereTheKeysAreSealed() throws {
        let h = try StoreFixture()
        let clock = h.clock
        let kek = OAuth.Environment(issuer: h.env.issuer, now: { clock.now }, kek: Array(repeating: 7, count: 32))
        try Provisioning.sealAtRest(store: h.store, env: kek)
        #expect(try h.store.signingKeys().allSatisfy(\.encrypted))
        let before = try h.store.signingKeys()
        #expect(throws: ProvisioningError.self) { try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .es256) }
        // A missing algorithm's key is not made in clear either (serve without the KEK).
        try h.store.write { try h.store.retireSigningKeys(algorithm: "RS256", at: clock.now) }
        #expect(throws: ProvisioningError.self) { try KeyManagement.ensurePublished(store: h.store, env: h.env) }
        #expect(try h.store.signingKeys().map(\.kid) == before.map(\.kid))
        // With the KEK, a rotation makes a sealed key.
        let kid = try KeyManagement.rotate(store: h.store, env: kek, algorithm: .es256)
        #expect(try h.store.signingKeys().first { $0.kid == kid }?.encrypted == true)
        // Nor a pepper: a deployment without one, its keys sealed, gets none made in clear.
        try h.store.write { try h.store.deleteMeta("secret_pepper_sealed") }
        #expect(throws: ProvisioningError.self) { _ = try Provisioning.secretHasher(store: h.store, env: h.env) }
        #expect(try h.store.meta("secret_pepper") == nil)
        _ = try Provisioning.secretHasher(store: h.store, env: kek)
        #expect(try h.store.meta("secret_pepper_sealed") != nil)
        // Where nothing was ever sealed, no KEK is needed.
        let plain = try StoreFixture()
        _ = try KeyManagement.rotate(store: plain.store, env: plain.env, algorithm: .es256)
    }

    @Test func rotatingOneAlgorithmKeepsTheOthersAndTakesAccessTokens() throws {
        let h = try StoreFixture()
        #expect(try KeyManagement.accessAlgorithm(store: h.store) == .es256)
        let before = try current(h.store)
        let kid = try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .rs256)
        let after = try current(h.store)
        #expect(after["ES256"] == before["ES256"], "the other algorithm's key stays current")
        #expect(after["RS256"] == kid && kid != before["RS256"])
        let ring = KeyRing(store: h.store, env: h.env)
        #expect(try ring.signingKey().kid == kid, "the rotated algorithm now signs access tokens")
        // The retired RS256 key stays published until its tokens have expired.
        #expect(try ring.verificationKey(kid: try #require(before["RS256"])) != nil)
        // Rotating without --alg's choice changing keeps the access algorithm with its new key.
        let again = try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .rs256)
        #expect(try KeyRing(store: h.store, env: h.env).signingKey().kid == again)
        // What `keys rotate` without --alg rotates (SPEC 10.1): the access-token algorithm, ES256 on a fresh deployment.
        #expect(try KeyManagement.accessAlgorithm(store: h.store) == .rs256)
    }

    /// A deployment from before SPEC 10.1 had one current key and no
    /// `access_token_alg`: `serve` adds the missing algorithm's key without
    /// letting it take over access tokens.
    @Test func aDeploymentWithOneKeyGainsTheOtherWithoutChangingItsAccessAlgorithm() throws {
        let directory = NSTemporaryDirectory() + "latchkey-keys-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try SQLiteStore(path: directory + "/old.db")
        let clock = TestClock()
        let env = OAuth.Environment(issuer: StoreFixture.issuer, now: { clock.now })
        let old = try SigningKey.generate(.rs256)
        try store.write {
            try store.insertSigningKey(SigningKeyRecord(kid: try JWK.thumbprint(old), algorithm: "RS256", privateKey: try old.privateKeyDER(),
                                                        encrypted: false, publicKey: try old.publicKeyDER(), createdAt: clock.now))
        }
        clock.advance(seconds: 10)
        let made = try KeyManagement.ensurePublished(store: store, env: env)
        #expect(made.count == 1)
        #expect(try current(store).keys.sorted() == ["ES256", "RS256"])
        #expect(try KeyRing(store: store, env: env).signingKey().kid == (try JWK.thumbprint(old)), "RS256 still signs access tokens")
        #expect(try KeyManagement.ensurePublished(store: store, env: env).isEmpty, "a second run makes nothing")
    }

    /// An ID token algorithm needs a published key: EdDSA only once one was made.
    @Test func aClientMayChooseEdDSAOnlyOnceAKeyExists() throws {
        let h = try StoreFixture()
        let registry = try h.registry()
        let caller = try h.caller(scopes: Scopes.primary)
        let spec = ClientSpec(name: "Ed", redirectURIs: [StoreFixture.redirect], scope: ["openid"], idTokenAlg: "EdDSA")
        #expect(throws: RegistryError.self) { _ = try registry.create(spec, caller: caller) }
        var unknown = spec
        unknown.idTokenAlg = "HS256"
        #expect(unknown.problems().map(\.field) == ["id_token_signed_response_alg"])
        try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .edDSA)
        #expect(try registry.create(spec, caller: caller).client.idTokenAlg == .edDSA)
    }

    /// The ID token is signed with the client's algorithm and the current key
    /// of that algorithm; the access token with the access-token algorithm.
    @Test(arguments: [SignatureAlgorithm.es256, .rs256, .edDSA])
    func anIDTokenIsSignedWithTheClientsAlgorithm(_ algorithm: SignatureAlgorithm) throws {
        let t = try GrantTesting()
        if algorithm == .edDSA {
            // An EdDSA key without making EdDSA the access-token algorithm: rotate it, then ES256 back.
            try KeyManagement.rotate(store: t.h.store, env: t.h.env, algorithm: .edDSA)
            try KeyManagement.rotate(store: t.h.store, env: t.h.env, algorithm: .es256)
        }
        let user = try t.h.user()
        let (client, _) = try t.h.app()
        try t.h.store.write {
            var c = try #require(try t.h.store.client(client))
            c.idTokenAlg = algorithm
            try t.h.store.updateClient(c)
        }
        let code = try t.code(client: client, user: user)
        let issued = try t.exchange("authorization_code", ["code": code, "redirect_uri": StoreFixture.redirect,
                                                           "code_verifier": AuthorizationCodeGrantTests.verifier], as: .publicClient(clientID: client))
        let ring = KeyRing(store: t.h.store, env: t.h.env)
        let idTokenText = try #require(issued.idToken)
        let idToken = try #require(JWS.parse(idTokenText))
        #expect(idToken.algorithm == algorithm.rawValue)
        #expect(idToken.kid == (try ring.signingKey(for: algorithm).kid))
        let kid = try #require(idToken.kid)
        let verification = try #require(try ring.verificationKey(kid: kid))
        #expect(JWS.verify(idToken, key: verification))
        let access = try #require(JWS.parse(issued.accessToken))
        #expect(access.algorithm == "ES256", "access tokens keep the access-token algorithm")
        // OIDC Core §3.1.3.6: at_hash with the ID token algorithm's hash (SHA-512 for EdDSA).
        let digest = algorithm == .edDSA ? Digest.sha512(Array(issued.accessToken.utf8)) : Digest.sha256(issued.accessToken)
        #expect(idToken.payload["at_hash"] == .string(Base64.urlEncode(Array(digest.prefix(digest.count / 2)))))
    }

    /// Attacker review, session 13: two nodes changing the keys at once (one rotating, one starting and publishing a
    /// missing algorithm's key) read the same version, and counted up they wrote the same next one, so a node that
    /// loaded the first change never loaded the second; a failover to a standby behind came back to a loaded version
    /// over other keys. A new version owes nothing to the old.
    @Test func aKeysVersionIsNeverWrittenTwice() throws {
        let h = try StoreFixture()
        var versions: Set<String> = []
        for _ in 0..<3 {
            try h.store.write { try h.store.setMeta("keys_version", "5") }
            try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .es256)
            versions.insert(try #require(try h.store.read { try h.store.meta("keys_version") }))
        }
        #expect(versions.count == 3 && !versions.contains("5"))
    }

    /// Makes every insert into the audit log fail, through a second connection (another process, on either store).
    func refuseAuditRows(_ h: StoreFixture) throws {
        if let postgres = h.postgres {
            let c = try PGConnection(postgres.url)
            _ = try c.run("CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$")
            _ = try c.run("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit()")
        } else {
            _ = try SQLite.Connection(path: h.directory + "/test.db").run("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'injected'); END")
        }
    }

    /// A key-encryption key other than the one that sealed the secrets here changes nothing: a key sealed under it
    /// would become current on every node, which could not open it (operator review, session 30: every token 500,
    /// `/healthz` 503 and no `serve` starting, after `keys rotate` with a mistyped `--kek-file`).
    @Test func aKeyEncryptionKeyThatDoesNotOpenTheSealedSecretsChangesNoKey() throws {
        let h = try StoreFixture()
        let clock = h.clock
        let kek = OAuth.Environment(issuer: h.env.issuer, now: { clock.now }, kek: Array(repeating: 7, count: 32))
        let wrong = OAuth.Environment(issuer: h.env.issuer, now: { clock.now }, kek: Array(repeating: 8, count: 32))
        try Provisioning.sealAtRest(store: h.store, env: kek)
        let kids = try h.store.read { try h.store.signingKeys().map(\.kid) }
        let version = try h.store.read { try h.store.meta("keys_version") }
        let es256 = try #require(current(h.store)["ES256"])
        #expect(throws: ProvisioningError.self) { try KeyManagement.rotate(store: h.store, env: wrong, algorithm: .es256, auditedFor: "cli") }
        #expect(throws: ProvisioningError.self) { try KeyManagement.revoke(store: h.store, env: wrong, kid: es256, auditedFor: "cli") }
        try h.store.write { try h.store.retireSigningKeys(algorithm: "RS256", at: clock.now) }
        #expect(throws: ProvisioningError.self) { try KeyManagement.ensurePublished(store: h.store, env: wrong) }
        #expect(try h.store.read { try h.store.signingKeys().map(\.kid) } == kids)
        #expect(try h.store.read { try h.store.meta("keys_version") } == version)
        // The keys the nodes load still open, and the right KEK goes on working.
        _ = try KeyRing(store: h.store, env: kek).signingKey()
        #expect(try KeyManagement.ensurePublished(store: h.store, env: kek).count == 1)
        // With the pepper alone sealed (the keys still in clear), the pepper decides.
        let fresh = try StoreFixture()
        _ = try Provisioning.secretHasher(store: fresh.store, env: kek)
        #expect(try fresh.store.meta("secret_pepper_sealed") != nil && !fresh.store.signingKeys().contains(where: \.encrypted))
        #expect(throws: ProvisioningError.self) { try KeyManagement.rotate(store: fresh.store, env: wrong, algorithm: .es256) }
        _ = try KeyManagement.rotate(store: fresh.store, env: kek, algorithm: .es256)
    }

    /// `latchkey keys rotate` and `keys revoke` record themselves in the transaction that changes the keys: a change
    /// is never left without its audit row (they were two transactions: noticed in session 29, mended in session 30).
    @Test func aKeyChangeAndItsAuditRowAreOneWrite() throws {
        let h = try StoreFixture()
        let es256 = try #require(current(h.store)["ES256"])
        let rotated = try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .es256, auditedFor: "cli")
        let revoked = try KeyManagement.revoke(store: h.store, env: h.env, kid: es256, auditedFor: "cli")
        let rows = try h.rows("audit_events").filter { $0["action"] == .text("keys.rotated") || $0["action"] == .text("keys.revoked") }
        #expect(rows.map { $0["target"] } == [.text(rotated), .text(es256)])
        #expect(rows.allSatisfy { $0["actor"] == .text("cli") && $0["surface"] == .text("cli") && $0["organization_id"] == .null })
        #expect(rows.last?["details"] == .text(#"{"alg":"ES256","replacement":null}"#), "a retired key has no replacement")

        // When the audit row cannot be written, the keys stay as they were.
        try refuseAuditRows(h)
        let keys = try h.store.read { try h.store.signingKeys().map(\.kid) }
        let version = try h.store.read { try h.store.meta("keys_version") }
        #expect(throws: (any Error).self) { try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .es256, auditedFor: "cli") }
        #expect(throws: (any Error).self) { try KeyManagement.revoke(store: h.store, env: h.env, kid: rotated, auditedFor: "cli") }
        #expect(try h.store.read { try h.store.signingKeys().map(\.kid) } == keys)
        #expect(try h.store.read { try h.store.meta("keys_version") } == version)
    }
}

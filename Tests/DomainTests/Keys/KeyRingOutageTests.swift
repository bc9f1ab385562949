import Common
import OAuth
import Synchronization
import TestSupport
import Testing

/// The key ring while the database is gone a moment (attacker review,
/// session 18): a grant's tokens are signed after its transaction commits,
/// and a read failing then answered 503 for a grant that existed, whose
/// retry was a replay that revoked it. Keys loaded before sign on.
@Suite struct KeyRingOutageTests {
    /// A store whose transactions fail while `down`, as a database that stopped answering; otherwise the fixture's.
    final class FlakyStore: MetaStorage, CredentialStorage, @unchecked Sendable {
        let base: any Store
        let isDown = Mutex(false)
        init(_ base: any Store) { self.base = base }
        var down: Bool {
            get { isDown.withLock { $0 } }
            set { isDown.withLock { $0 = newValue } }
        }
        func checked() throws { if down { throw StoreError.unavailable("the test stopped the database") } }

        func write<T>(_ body: () throws -> T) throws -> T { try checked(); return try base.write(body) }
        func writeOne<T>(_ body: () throws -> T) throws -> T { try checked(); return try base.writeOne(body) }
        func read<T>(_ body: () throws -> T) throws -> T { try checked(); return try base.read(body) }
        func beginRequest(abandoned: @escaping @Sendable () -> Bool) { base.beginRequest(abandoned: abandoned) }
        func endRequest() { base.endRequest() }
        func beginBatch() { base.beginBatch() }
        func endBatch() { base.endBatch() }

        func meta(_ key: String) throws -> String? { try base.meta(key) }
        func setMeta(_ key: String, _ value: String) throws { try base.setMeta(key, value) }
        func deleteMeta(_ key: String) throws { try base.deleteMeta(key) }
        func insertSecret(_ secret: ClientSecret) throws { try base.insertSecret(secret) }
        func secrets(clientID: String) throws -> [ClientSecret] { try base.secrets(clientID: clientID) }
        func deleteSecret(id: Int64) throws { try base.deleteSecret(id: id) }
        func setSecretExpiry(id: Int64, expiresAt: Int64?) throws { try base.setSecretExpiry(id: id, expiresAt: expiresAt) }
        func useAssertion(clientID: String, jti: String, expiresAt: Int64, now: Int64) throws -> Bool {
            try base.useAssertion(clientID: clientID, jti: jti, expiresAt: expiresAt, now: now)
        }
        func useProof(jkt: String, jti: String, expiresAt: Int64, now: Int64) throws -> Bool {
            try base.useProof(jkt: jkt, jti: jti, expiresAt: expiresAt, now: now)
        }
        func insertSigningKey(_ key: SigningKeyRecord) throws { try base.insertSigningKey(key) }
        func signingKeys() throws -> [SigningKeyRecord] { try base.signingKeys() }
        func retireSigningKeys(algorithm: String, at: Int64) throws { try base.retireSigningKeys(algorithm: algorithm, at: at) }
        func deleteSigningKeys(retiredBefore: Int64) throws { try base.deleteSigningKeys(retiredBefore: retiredBefore) }
        func deleteSigningKey(kid: String) throws { try base.deleteSigningKey(kid: kid) }
        func sealSigningKey(kid: String, privateKey: [UInt8]) throws { try base.sealSigningKey(kid: kid, privateKey: privateKey) }
        func revokeAccessToken(jti: String, expiresAt: Int64, now: Int64) throws { try base.revokeAccessToken(jti: jti, expiresAt: expiresAt, now: now) }
        func isAccessTokenRevoked(jti: String) throws -> Bool { try base.isAccessTokenRevoked(jti: jti) }
    }

    @Test func keysLoadedBeforeTheDatabaseWentAwaySignOn() throws {
        let h = try StoreFixture()
        let store = FlakyStore(h.store)
        let ring = KeyRing(store: store, env: h.env)
        store.down = true
        // Nothing loaded yet: nothing to sign with, and the outage is the answer (a 503 before any write).
        #expect(throws: StoreError.self) { try ring.signingKey() }
        store.down = false
        let loaded = try ring.signingKey().kid, idTokens = try ring.signingKey(for: .rs256).kid
        store.down = true
        #expect(try ring.signingKey().kid == loaded)
        #expect(try ring.signingKey(for: .rs256).kid == idTokens)
        // A token's kid among the loaded keys verifies; another may be a key made since on another node: the
        // outage is the answer (a 503), not "no such key" (a 401 its client would act on).
        #expect(try ring.verificationKey(kid: loaded) != nil)
        #expect(throws: StoreError.self) { try ring.verificationKey(kid: "made-elsewhere-meanwhile") }
        // Back, it reads again: a rotation made meanwhile is picked up.
        store.down = false
        try KeyManagement.rotate(store: h.store, env: h.env, algorithm: .es256)
        #expect(try ring.signingKey().kid != loaded)
        #expect(try ring.verificationKey(kid: "never-made") == nil)
    }
}

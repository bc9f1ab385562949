import Common
import JOSE
@testable import OAuth
import TestSupport
import Testing

/// FAPI 2.0 §5.4 at signing time: a FAPI client stored with RS256 (a node of the version before may store one
/// during a rolling upgrade: upgrade review, session 30) gets ES256 logout and ID tokens all the same.
@Suite struct FAPISigningTests {
    @Test func aFAPIClientStoredWithRS256GetsES256() throws {
        let h = try StoreFixture()
        var client = try #require(try h.store.read { try h.store.client(h.primary.clientID) })
        client.idTokenAlg = .rs256
        let delivery = LogoutDelivery(id: "d1", clientID: client.clientID, share: h.primary.organizationID, subject: "alice", sid: nil,
                                      nextAttemptAt: h.clock.now, createdAt: h.clock.now)
        let keys = KeyRing(store: h.store, env: h.env)
        func alg(_ c: Client) throws -> String? { JWS.parse(try BackchannelLogout.token(delivery, client: c, keys: keys, env: h.env))?.algorithm }
        #expect(try alg(client) == "RS256")
        client.fapi2 = true
        #expect(try alg(client) == "ES256")
        #expect(client.signingAlgorithm(.rs256) == .es256 && client.signingAlgorithm(.edDSA) == .edDSA)
    }
}

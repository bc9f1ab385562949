import Common
import Foundation
import SQLiteStore
import OAuth
import Synchronization
import PostgresStore
import TestSupport
import Testing

/// Exactly-once rules under races between connections (SPEC 9): the
/// threads here stand for workers and nodes, each with its own connection.
/// The suite runs on SQLite and, under `LATCHKEY_TEST_STORE=postgres`, on
/// PostgreSQL (scripts/test runs both).
/// SPEC 9 "moving data": SQLite → PostgreSQL → SQLite keeps every client,
/// secret hash, key, user, grant and audit event, and tokens issued before
/// the move still verify after it.
@Suite(.enabled(if: TestDatabase.available, "needs LATCHKEY_TEST_DATABASE_URL"))
struct StateTransferTests {
    @Test func aRoundTripThroughPostgreSQLKeepsEverythingAndOldTokensVerify() throws {
        let directory = NSTemporaryDirectory() + "latchkey-transfer-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A SQLite deployment with some of everything.
        let sqlite = try SQLiteStore(path: directory + "/origin.db")
        let env = OAuth.Environment(issuer: StoreFixture.issuer, now: { 1_796_000_000_000 })
        let org = try Provisioning(env: env, store: sqlite).initialize(issuer: StoreFixture.issuer, organizationName: "Acme", clientLimit: 10)
        _ = try Provisioning(env: env, store: sqlite).addUser(username: "alice", email: "a@example.com", name: "Alice", password: "long enough pw")
        let hasher = try Provisioning.secretHasher(store: sqlite, env: env)
        let caller = Caller(client: try #require(try sqlite.client(org.clientID)), scopes: Scopes.primary, requestID: "r", surface: "test")
        let registry = ClientRegistry(env: env, store: sqlite, hasher: hasher)
        let created = try registry.create(ClientSpec(name: "Kept", redirectURIs: ["https://k.example/cb"], scope: ["openid"]), caller: caller)
        try registry.delete(try registry.create(ClientSpec(name: "Gone"), caller: caller).client.clientID, caller: caller)
        let token = try ClientCredentialsGrant().exchange(TokenRequest(grantType: "client_credentials", parameters: [:]),
                                                          client: try #require(try sqlite.client(org.clientID)),
                                                          service: TokenService(env: env, store: sqlite, keys: KeyRing(store: sqlite, env: env))).accessToken
        let original = try sqlite.dumpAll()

        // Into an empty PostgreSQL schema, and back into a new SQLite file.
        let fixture = try PostgresSchemaFixture()
        let postgres = try PostgresStore(url: fixture.url)
        let counts = try StateTransfer.copy(from: sqlite, to: postgres)
        #expect(counts["clients"] == 2 && counts["retired_client_ids"] == 1 && counts["users"] == 1)
        #expect(throws: ProvisioningError.self) { _ = try StateTransfer.copy(from: sqlite, to: postgres) }
        let back = try SQLiteStore(path: directory + "/back.db")
        _ = try StateTransfer.copy(from: postgres, to: back)
        for (a, b) in zip(original, try back.dumpAll()) {
            #expect(a.table == b.table)
            #expect(a.rows.count == b.rows.count, "\(a.table)")
            if a.table != "organizations" { #expect(a == b, "\(a.table) differs after the round trip") }
        }
        // Counts, sequences and keys work on every copy.
        for store in [postgres as any Store, back as any Store] {
            #expect(try store.clientCount(organizationID: org.organizationID) == 2)
            #expect(try store.isClientIDRetired(try #require(original.first { $0.table == "retired_client_ids" }?.rows.first.map { row -> String in
                if case let .text(t) = row[0] { return t } else { return "" } })))
            let validated = try AccessTokens(env: env, store: store, keys: KeyRing(store: store, env: env)).validate(token)
            #expect(validated?.client.clientID == org.clientID, "a token from before the move verifies after it")
            let authenticated = try ClientAuthenticator(env: env, store: store, hasher: try Provisioning.secretHasher(store: store, env: env), guards: nil)
                .authenticate(.basic(clientID: created.client.clientID, secret: try #require(created.secret)), allowPublic: false)
            #expect(authenticated.clientID == created.client.clientID)
            let again = try ClientRegistry(env: env, store: store, hasher: try Provisioning.secretHasher(store: store, env: env))
                .create(ClientSpec(name: "After the move"), caller: caller)
            #expect(again.secret != nil)
        }
    }
}

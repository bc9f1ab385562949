import Common
import Foundation
import SQLiteStore
import OAuth
import Synchronization
import PostgresStore
import Testing

/// Exactly-once rules under races between connections (SPEC 9): the
/// threads here stand for workers and nodes, each with its own connection.
/// The suite runs on SQLite and, under `LATCHKEY_TEST_STORE=postgres`, on
/// PostgreSQL (scripts/test runs both).
@Suite struct StoreContractTests {
    /// Runs `body` on `count` threads at once, each with its own connection.
    func race<T: Sendable>(_ h: Harness, _ count: Int, _ body: @escaping @Sendable (any Store, Int) throws -> T) -> [Result<T, any Error>] {
        let factory = h.storeFactory
        let results = Mutex<[Result<T, any Error>]>([])
        let start = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        for i in 0..<count {
            Thread.detachNewThread {
                let store = Result { try factory() }
                start.wait()
                let outcome = store.flatMap { s in Result { try body(s, i) } }
                results.withLock { $0.append(outcome) }
                done.signal()
            }
        }
        for _ in 0..<count { start.signal() }
        for _ in 0..<count { done.wait() }
        return results.withLock { $0 }
    }

    @Test func aCodeIsConsumedOnceHoweverManyConnectionsRace() throws {
        let h = try Harness()
        let user = try h.user()
        let (client, _) = try h.app()
        let now = h.clock.now
        try h.store.write {
            try h.store.insertCode(AuthorizationCodeRecord(codeHash: "race-code", clientID: client, userID: user, redirectURI: Harness.redirect,
                                                           redirectURISent: true, scope: ["openid"], nonce: nil, codeChallenge: nil,
                                                           authTime: now / 1000, createdAt: now, expiresAt: now + 60_000))
        }
        let outcomes = race(h, 8) { store, i in try store.write { try store.consumeCode(hash: "race-code", at: now, familyID: "family-\(i)") } }
        let wins = outcomes.filter { (try? $0.get()) == true }.count
        let refused = outcomes.filter { if case .failure = $0 { return true } else { return false } }
        #expect(wins == 1, "\(outcomes)")
        // A connection may be told to retry (503) but never wins a second time.
        #expect(refused.allSatisfy { if case .failure(let e) = $0 { return (e as? StoreError)?.isTransient == true } else { return false } })
    }

    @Test func aRefreshTokenRotatesOnceHoweverManyConnectionsRace() throws {
        let h = try Harness()
        let user = try h.user()
        let (client, _) = try h.app()
        let now = h.clock.now
        try h.store.write {
            try h.store.insertFamily(id: "fam", clientID: client, userID: user, createdAt: now)
            try h.store.insertRefreshToken(RefreshTokenRecord(tokenHash: "race-refresh", familyID: "fam", clientID: client, userID: user,
                                                              scope: ["openid"], authTime: now / 1000, createdAt: now, expiresAt: now + 60_000))
        }
        let outcomes = race(h, 8) { store, _ in try store.write { try store.rotateRefreshToken(hash: "race-refresh", at: now) } }
        #expect(outcomes.filter { (try? $0.get()) == true }.count == 1, "\(outcomes)")
    }

    @Test func anAuthorizationRequestIsAnsweredOnce() throws {
        let h = try Harness()
        let (client, _) = try h.app()
        let now = h.clock.now
        let request = AuthorizationRequest(clientID: client, redirectURI: Harness.redirect, redirectURISent: true, scope: ["openid"], state: nil,
                                           nonce: nil, codeChallenge: nil, prompt: [], maxAge: nil)
        try h.store.write { try h.store.insertAuthorizationRequest(idHash: "race-request", request: request, createdAt: now, expiresAt: now + 60_000) }
        let outcomes = race(h, 8) { store, _ in try store.write { try store.markAuthorizationRequestAnswered(idHash: "race-request", at: now) } }
        #expect(outcomes.filter { (try? $0.get()) == true }.count == 1, "\(outcomes)")
    }

    @Test func theClientLimitHoldsUnderConcurrentCreates() throws {
        let h = try Harness()
        let org = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Limited", clientLimit: 5)
        let primary = try #require(try h.store.client(org.clientID))
        let env = h.env
        let pepper = try #require(Hex.decode(String(repeating: "ab", count: 32)))
        let outcomes = race(h, 10) { store, i in
            let caller = Caller(client: primary, scopes: primary.scope, requestID: nil, surface: "test")
            return try ClientRegistry(env: env, store: store, hasher: SecretHasher(pepper: pepper))
                .create(ClientSpec(name: "racer \(i)"), caller: caller).client.clientID
        }
        let created = outcomes.compactMap { try? $0.get() }
        #expect(created.count == 4, "\(outcomes)")
        #expect(outcomes.allSatisfy {
            if case .failure(let e) = $0 { return (e as? RegistryError) == .limitReached || (e as? StoreError)?.isTransient == true } else { return true }
        })
        #expect(try h.store.clientCount(organizationID: org.organizationID) == 5)
        #expect(try h.store.clients(organizationID: org.organizationID, namePrefix: nil, limit: 50, offset: 0).clients.count == 5)
    }

    @Test func aRevocationOnOneConnectionIsSeenByEveryOtherAtOnce() throws {
        let h = try Harness()
        let token = try h.token()
        let other = try h.anotherStore()
        let claims = try #require(try AccessTokens(env: h.env, store: other, keys: KeyRing(store: other, env: h.env)).validate(token)?.claims)
        try h.store.write { try h.store.revokeAccessToken(jti: claims.jti, expiresAt: claims.expiresAt * 1000) }
        #expect(try other.read { try AccessTokens(env: h.env, store: other, keys: KeyRing(store: other, env: h.env)).validate(token) } == nil)
    }

    /// A blind write that fails at the COMMIT fails the whole transaction:
    /// nothing of it is stored, and the caller gets the error.
    /// Listings are filtered and paged by the store (issue 12): a page costs a page.
    @Test func clientListingsAreFilteredAndPagedInTheStore() throws {
        let h = try Harness()
        let store = h.store
        try store.write {
            try store.insertOrganization(Organization(id: "org-list", name: "Listed", clientLimit: 100, primaryClientID: nil, createdAt: 1))
            for (i, used) in [nil, 1_000, 5_000, nil, 9_000].enumerated() {
                var c = Client(clientID: "list-\(i)", organizationID: "org-list", name: i < 3 ? "alpha \(i)" : "beta \(i)",
                               redirectURIs: [], grantTypes: ["client_credentials"], authMethod: "client_secret_basic", scope: [], createdAt: Int64(10 + i))
                c.lastUsedAt = used.map(Int64.init)
                try store.insertClient(c)
            }
        }
        func ids(_ filter: ClientFilter, limit: Int = 50, offset: Int = 0) throws -> ([String], Int) {
            let page = try store.read { try store.clients(organizationID: "org-list", filter: filter, limit: limit, offset: offset) }
            return (page.clients.map(\.clientID), page.total)
        }
        #expect(try ids(ClientFilter()) == (["list-0", "list-1", "list-2", "list-3", "list-4"], 5))
        #expect(try ids(ClientFilter(lastUsed: .never)) == (["list-0", "list-3"], 2))
        #expect(try ids(ClientFilter(lastUsed: .atOrBefore(5_000))) == (["list-1", "list-2"], 2))
        #expect(try ids(ClientFilter(namePrefix: "alpha", lastUsed: .atOrBefore(9_000))) == (["list-1", "list-2"], 2))
        #expect(try ids(ClientFilter(lastUsed: .atOrBefore(9_000)), limit: 1, offset: 1) == (["list-2"], 3))
    }

    @Test func aFailingBlindWriteFailsTheWholeTransaction() throws {
        let h = try Harness()
        let userID = try h.user()
        let (client, _) = try h.app()
        let store = h.store
        let now = h.clock.now
        let token = RefreshTokenRecord(tokenHash: "dup-hash", familyID: "fam-1", clientID: client, userID: userID, scope: ["openid"],
                                       authTime: now / 1000, createdAt: now, expiresAt: now + 60_000)
        try store.write {
            try store.insertFamily(id: "fam-1", clientID: client, userID: userID, createdAt: now)
            try store.insertRefreshToken(token)
        }
        #expect(throws: StoreError.self) {
            try store.write {
                try store.insertFamily(id: "fam-2", clientID: client, userID: userID, createdAt: now)
                _ = try store.rotateRefreshToken(hash: "dup-hash", at: now)
                try store.insertRefreshToken(token)  // the same hash again: refused, at the latest at the COMMIT
            }
        }
        #expect(try store.read { try store.refreshToken(hash: "dup-hash")?.rotatedAt } == nil, "the rotation was rolled back")
        // The connection goes on: the next write works.
        try store.write { try store.insertFamily(id: "fam-3", clientID: client, userID: userID, createdAt: now) }
    }
}

/// The PostgreSQL store's memo (SPEC 9): exact across nodes at the cost of
/// one round trip per request while nothing changed.
@Suite(.enabled(if: TestStore.kind == .postgres, "the PostgreSQL run of scripts/test"))
struct PostgresMemoTests {
    @Test func anUnchangedConfigurationCostsOneRoundTripARead() throws {
        let h = try Harness()
        let store = try #require(h.store as? PostgresStore)
        let id = h.primary.clientID
        let read = { try store.read { (try store.client(id), try store.secrets(clientID: id), try store.meta("keys_version"), try store.isAccessTokenRevoked(jti: "j")) } }
        _ = try read()
        let before = store.roundTrips
        _ = try read()
        #expect(store.roundTrips - before == 1, "the generation row only")
        // A token-only write (a refresh rotation, a code) keeps the memo; a revocation elsewhere ends its revocation part.
        let other = try h.anotherStore()
        try other.write { try other.revokeAccessToken(jti: "j", expiresAt: Int64.max / 4) }
        #expect(try store.read { try store.isAccessTokenRevoked(jti: "j") })
        // A configuration write elsewhere ends the configuration part.
        var client = try #require(try store.read { try store.client(id) })
        client.name = "renamed on another node"
        try other.write { try other.updateClient(client) }
        #expect(try store.read { try store.client(id)?.name } == "renamed on another node")
    }

    /// SPEC 9: memoized reads cost the exactness round trip and nothing more,
    /// through the whole handler (client authentication, key ring, claims).
    /// SPEC 9: validated each request, once: the second read of a request
    /// costs nothing; the next request sees what another node committed.
    @Test func theMemoIsValidatedOncePerRequest() throws {
        let h = try Harness()
        let store = try #require(h.store as? PostgresStore)
        let id = h.primary.clientID
        let other = try h.anotherStore()
        _ = try store.read { try store.client(id) }
        store.beginRequest()
        var before = store.roundTrips
        _ = try store.read { try store.client(id) }
        _ = try store.read { try store.client(id) }
        #expect(store.roundTrips - before == 1)
        store.endRequest()
        var client = try #require(try other.read { try other.client(id) })
        client.name = "renamed between requests"
        try other.write { try other.updateClient(client) }
        store.beginRequest()
        before = store.roundTrips
        #expect(try store.read { try store.client(id)?.name } == "renamed between requests")
        store.endRequest()
        // Outside a request (the CLI, tests), every read validates.
        before = store.roundTrips
        _ = try store.read { try store.client(id) }
        _ = try store.read { try store.client(id) }
        #expect(store.roundTrips - before == 2)
    }

    @Test func aTokenAndAnIntrospectionCostOneRoundTripEach() throws {
        let h = try Harness()
        let store = try #require(h.store as? PostgresStore)
        let basic = (h.primary.clientID, h.primary.clientSecret)
        // The first token of the day notes the client's use (a write, once a day), which the next read reloads.
        _ = try h.token()
        _ = try h.token()
        var before = store.roundTrips
        let token = try h.token()
        #expect(store.roundTrips - before == 1)
        before = store.roundTrips
        for _ in 0..<200 { _ = try h.token() }
        #expect(store.roundTrips - before == 200)
        _ = h.form("/oauth2/introspect", [("token", token)], basic: basic)
        before = store.roundTrips
        let r = h.form("/oauth2/introspect", [("token", token)], basic: basic)
        #expect(r.status == 200 && r.json?["active"]?.boolValue == true)
        #expect(store.roundTrips - before == 1)
    }

    /// The round trips of a code flow by a signed-in user who is asked
    /// again (prompt=consent), as the benchmark runs it: the authorize (the
    /// generation, the request stored in one, the session with its user,
    /// the connection), the accept (the generation, the session with its
    /// user, the request; BEGIN + answered, the code + the connection, the
    /// connection + COMMIT) and the exchange (the generation, BEGIN + the code
    /// with its user and connection, the redemption, the grant + COMMIT).
    @Test func aCodeFlowCostsFourteenRoundTrips() throws {
        let h = try Harness()
        let store = try #require(h.store as? PostgresStore)
        _ = try h.user()
        let (client, _) = try h.app()
        let flow = UserFlowTests()
        let b = Browser(h)
        // A first flow: signs in, and notes the client's first use of the day (a write of its own).
        let warm = PKCE()
        #expect(flow.exchange(h, client: client, code: try flow.code(h, b, client: client, pkce: warm), verifier: warm.verifier).status == 200)
        for _ in 0..<2 {
            let pkce = PKCE()
            var before = store.roundTrips
            let first = b.authorize(flow.authorizeParams(client, pkce, extra: [("prompt", "consent")]))
            let location = try #require(first.headers[.location])
            let request = try #require(queryItems(location)["request"])
            #expect(store.roundTrips - before == 4)
            before = store.roundTrips
            let accepted = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid"], "remember": true])
            let redirect = try #require(accepted.json?["redirect_to"]?.stringValue)
            let code = try #require(queryItems(redirect)["code"])
            #expect(store.roundTrips - before == 6)
            before = store.roundTrips
            #expect(flow.exchange(h, client: client, code: code, verifier: pkce.verifier).status == 200)
            #expect(store.roundTrips - before == 4)
        }
    }

    /// PLATFORM-POSTGRES 3: the BEGIN travels with the first statement and
    /// the writes nobody reads (the new refresh token, the use of the
    /// connection) with the COMMIT, and a request validates the memo once. A
    /// rotation: the generation read (the client is memoized), then three
    /// round trips (BEGIN + the token with its family, the rotation, the
    /// rest + COMMIT); the signature after it reads nothing. Eight before.
    @Test func aRefreshRotationCostsFourRoundTrips() throws {
        let h = try Harness()
        let store = try #require(h.store as? PostgresStore)
        _ = try h.user()
        let (client, _) = try h.app()
        let flow = UserFlowTests()
        let pkce = PKCE()
        let first = flow.exchange(h, client: client, code: try flow.code(h, Browser(h), client: client, pkce: pkce), verifier: pkce.verifier)
        var refresh = try #require(first.json?["refresh_token"]?.stringValue)
        for round in 0..<3 {
            let before = store.roundTrips
            let r = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)])
            #expect(r.status == 200)
            refresh = try #require(r.json?["refresh_token"]?.stringValue)
            if round > 0 { #expect(store.roundTrips - before == 4) }
        }
    }
}

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
        let env = OAuth.Environment(issuer: Harness.issuer, now: { 1_796_000_000_000 })
        let org = try Provisioning(env: env, store: sqlite).initialize(issuer: Harness.issuer, organizationName: "Acme", clientLimit: 10)
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

import Common
import Cryptography
import Foundation
import OAuth
import Postgres
import PostgresStore
import SQLiteStore
import Synchronization

// What every test target shares: a clock moved by hand, the store the run
// is on (SQLite or PostgreSQL) and a fresh, provisioned database for one
// test. No HTTP here: the server tests wrap this in their Harness.

/// A clock tests move by hand.
package final class TestClock: Sendable {
    private let millis: Mutex<Int64>
    package init(_ start: Int64 = 1_796_000_000_000) { millis = Mutex(start) }
    package var now: Int64 { millis.withLock { $0 } }
    package func advance(seconds: Int64) { millis.withLock { $0 += seconds * 1000 } }
    package func advance(millis step: Int64) { millis.withLock { $0 += step } }
}

/// A seeded random source (SplitMix64): a fixture's ids, secrets and codes
/// are the same on every run, so a failure reproduces. Key generation and
/// hashing salts stay OpenSSL's own.
package final class SeededRandom: Sendable {
    private let state: Mutex<UInt64>
    package init(seed: UInt64) { state = Mutex(seed) }

    package func bytes(_ count: Int) -> [UInt8] {
        state.withLock { s in
            var out: [UInt8] = []
            out.reserveCapacity(count + 8)
            while out.count < count {
                s &+= 0x9E37_79B9_7F4A_7C15
                var z = s
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                z ^= z >> 31
                withUnsafeBytes(of: z.littleEndian) { out.append(contentsOf: $0) }
            }
            return Array(out.prefix(count))
        }
    }
}

/// The ES256 and RS256 keys every fixture's `init` publishes, made once per
/// process: an RSA key generation costs ~0.1 s, which each of hundreds of
/// fixtures would otherwise spend. Rotations inside a test make fresh keys.
package enum TestKeys {
    private static let shared: [SignatureAlgorithm: SigningKey] = {
        var keys: [SignatureAlgorithm: SigningKey] = [:]
        for alg in KeyManagement.alwaysPublished { keys[alg] = try? SigningKey.generate(alg) }
        return keys
    }()

    package static func key(_ algorithm: SignatureAlgorithm) throws -> SigningKey {
        try shared[algorithm] ?? SigningKey.generate(algorithm)
    }
}

/// Which store the suites run on: SQLite by default; PostgreSQL when
/// `LATCHKEY_TEST_STORE=postgres` (with `LATCHKEY_TEST_DATABASE_URL`).
/// `scripts/test` runs every suite once on each (SPEC 9: one behaviour on
/// every store); the tests of one store's own machinery say so.
package enum TestStore: String, Sendable {
    case sqlite, postgres

    package static let kind: TestStore = ProcessInfo.processInfo.environment["LATCHKEY_TEST_STORE"] == "postgres" ? .postgres : .sqlite
    package static var isSQLite: Bool { kind == .sqlite }
}

/// The throwaway cluster `scripts/test` starts, when there is one.
package enum TestDatabase {
    package static let url = ProcessInfo.processInfo.environment["LATCHKEY_TEST_DATABASE_URL"]
    package static var available: Bool { url != nil }
}

package struct HarnessError: Error, CustomStringConvertible {
    package let description: String
    package init(_ d: String) { description = d }
}

/// A fresh schema in the test cluster for one fixture: its own tables,
/// dropped when the fixture goes.
package final class PostgresSchemaFixture {
    package let name = "lk_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    let admin: PGConnection
    package let url: String

    package init() throws {
        guard let base = TestDatabase.url else { throw HarnessError("LATCHKEY_TEST_STORE=postgres needs LATCHKEY_TEST_DATABASE_URL") }
        admin = try PGConnection(base)
        try admin.run("CREATE SCHEMA \(name)")
        url = base + (base.contains("?") ? "&" : "?") + "options=-csearch_path%3D\(name)"
    }

    deinit { _ = try? admin.run("DROP SCHEMA \(name) CASCADE") }
}

/// A temporary, provisioned database (one organization "Acme" with its
/// primary client) on the run's store, with a clock the test moves.
package final class StoreFixture {
    package static let issuer = "https://auth.example.test"
    package static let redirect = "https://app.example/cb"

    package let directory: String
    package let clock = TestClock()
    package let store: any Store
    package let postgres: PostgresSchemaFixture?
    package let env: OAuth.Environment
    package let primary: ProvisionedOrganization
    package let random: SeededRandom

    package init(kek: [UInt8]? = nil, seed: UInt64 = 0x1A7C_4E11) throws {
        directory = NSTemporaryDirectory() + "latchkey-test-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        switch TestStore.kind {
        case .sqlite:
            postgres = nil
            store = try SQLiteStore(path: directory + "/test.db")
        case .postgres:
            let fixture = try PostgresSchemaFixture()
            postgres = fixture
            store = try PostgresStore(url: fixture.url)
        }
        let clock = self.clock
        let random = SeededRandom(seed: seed)
        self.random = random
        env = OAuth.Environment(issuer: StoreFixture.issuer, now: { clock.now }, random: { random.bytes($0) }, kek: kek)
        var provisioning = env
        provisioning.makeKey = TestKeys.key
        primary = try Provisioning(env: provisioning, store: store).initialize(issuer: StoreFixture.issuer, organizationName: "Acme", clientLimit: 100)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// An unspent, 60-second code of `client` for `user` under `hash` (no PKCE), bound to the DPoP key `jkt` if given.
    package func insertCode(hash: String, client: String, user: String, jkt: String? = nil) throws {
        let now = clock.now
        try store.write {
            try store.insertCode(AuthorizationCodeRecord(codeHash: hash, clientID: client, userID: user, redirectURI: StoreFixture.redirect,
                                                         redirectURISent: true, scope: ["openid"], nonce: nil, codeChallenge: nil,
                                                         authTime: now / 1000, createdAt: now, expiresAt: now + 60_000, dpopJKT: jkt))
        }
    }

    /// A current refresh token under `hash`, alone in a new family `family`, bound to the DPoP key `jkt` if given.
    package func insertRefreshToken(hash: String, family: String, client: String, user: String, jkt: String? = nil) throws {
        let now = clock.now
        try store.write {
            try store.insertFamily(id: family, clientID: client, userID: user, createdAt: now, sid: nil)
            try store.insertRefreshToken(RefreshTokenRecord(tokenHash: hash, familyID: family, clientID: client, userID: user,
                                                            scope: ["openid"], authTime: now / 1000, createdAt: now, expiresAt: now + 60_000,
                                                            jkt: jkt))
        }
    }

    /// The SQLite store, for the tests of SQLite's own machinery (memo, WAL, busy).
    package var sqlite: SQLiteStore { store as! SQLiteStore }

    /// Opens further connections from any thread (each thread its own, as
    /// the workers and the nodes do).
    package var storeFactory: @Sendable () throws -> any Store {
        switch TestStore.kind {
        case .sqlite:
            let path = directory + "/test.db"
            return { try SQLiteStore(path: path, migrate: false) }
        case .postgres:
            let url = postgres!.url
            return { try PostgresStore(url: url, migrate: false) }
        }
    }

    /// A table's rows as a backup sees them (on either store), by column name.
    package func rows(_ table: String) throws -> [[String: StoredValue]] {
        guard let store = store as? any TransferableStore, let dump = try store.dumpAll().first(where: { $0.table == table }) else {
            throw ProvisioningError.invalid("no table \(table)")
        }
        return dump.rows.map { Dictionary(uniqueKeysWithValues: zip(dump.columns, $0)) }
    }

    /// Runs one statement on the fixture's own connection, outside any transaction (a session setting, a pragma),
    /// and returns the first column of its first row as an integer, if it has one.
    @discardableResult
    package func statement(_ sql: String) throws -> Int64? {
        switch store {
        case let sqlite as SQLiteStore: return try sqlite.query(sql, []).first?.int(0)
        case let postgres as PostgresStore: return try postgres.query(sql, []).first?.int(0)
        default: throw ProvisioningError.invalid("no SQL on this store")
        }
    }

    /// The text values of one column of a table (ids, hashes).
    package func texts(_ table: String, _ column: String) throws -> [String] {
        try rows(table).compactMap { if case let .text(v)? = $0[column] { v } else { nil } }
    }

    /// Another connection to the same database (another worker, another node).
    package func anotherStore() throws -> any Store { try storeFactory() }

    /// The registry as the server builds it for a request.
    package func registry(guards: AbuseGuards? = nil) throws -> ClientRegistry {
        ClientRegistry(env: env, store: store, hasher: try Provisioning.secretHasher(store: store, env: env), guards: guards)
    }

    /// A management caller: `clientID`'s own client_credentials token holding `scopes`.
    package func caller(_ clientID: String? = nil, scopes: [String] = ["clients:read", "clients:write"], surface: String = "native") throws -> Caller {
        guard let client = try store.read({ try store.client(clientID ?? primary.clientID) }) else { throw HarnessError("no client \(clientID ?? "")") }
        return Caller(client: client, scopes: scopes, requestID: "req-test", surface: surface)
    }

    /// A client_credentials access token for the primary client, issued by
    /// the grant itself (no HTTP).
    package func token() throws -> String {
        guard let client = try store.read({ try store.client(primary.clientID) }) else { throw HarnessError("no primary client") }
        let service = TokenService(env: env, store: store, keys: KeyRing(store: store, env: env))
        return try ClientCredentialsGrant().exchange(TokenRequest(grantType: "client_credentials", parameters: [:]), client: client,
                                                     service: service).accessToken
    }

    /// A user-facing app: public (PKCE) or confidential, with refresh tokens.
    package func app(public isPublic: Bool = true, redirectURIs: [String] = [StoreFixture.redirect],
             scope: [String] = ["openid", "profile", "email", "offline_access", "connections:read", "connections:write"],
             grantTypes: [GrantType] = [.authorizationCode, .refreshToken]) throws -> (String, String?) {
        let hasher = try Provisioning.secretHasher(store: store, env: env)
        let id = "app-" + env.randomID(10)
        let secret = isPublic ? nil : hasher.generate(env)
        try store.write {
            try store.insertClient(Client(clientID: id, organizationID: primary.organizationID, name: "Photo <b>Book</b>",
                                          clientURI: "https://app.example", redirectURIs: redirectURIs,
                                          grantTypes: grantTypes, authMethod: isPublic ? .publicClient : .clientSecretBasic,
                                          scope: scope, createdAt: clock.now))
            if let secret { try store.insertSecret(hasher.record(for: secret, clientID: id, at: clock.now)) }
        }
        return (id, secret)
    }

    package func user(_ username: String = "alice") throws -> String {
        try Provisioning(env: env, store: store).addUser(username: username, email: "\(username)@example.com", name: "Alice Liddell",
                                                         password: "correct horse battery")
    }
}

extension GrantStorage {
    /// A family that issues no refresh token (yet): it expires at its creation.
    package func insertFamily(id: String, clientID: String, userID: String, createdAt: Int64, sid: String?) throws {
        try insertFamily(id: id, clientID: clientID, userID: userID, createdAt: createdAt, sid: sid, expiresAt: createdAt)
    }
}

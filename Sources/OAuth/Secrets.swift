import Common
import Cryptography
import Synchronization

/// Client secrets (SPEC 6.0). Generated secrets are `lks_` + 256 random bits
/// and stored as HMAC-SHA-256 under the server's pepper; caller-chosen
/// passwords are stored with scrypt. Verification is constant-time.
public struct SecretHasher: Sendable {
    public static let prefix = "lks_"
    let pepper: [UInt8]
    let mac: HMACKey

    public init(pepper: [UInt8]) {
        self.pepper = pepper
        mac = HMACKey(key: pepper)
    }

    public func generate(_ env: Environment) -> String { env.randomToken(prefix: SecretHasher.prefix, bytes: 32) }

    public func hmacHash(_ secret: String) -> String {
        Base64.urlEncode(mac.mac(Array(secret.utf8)))
    }

    /// A stored record for a generated secret.
    public func record(for secret: String, clientID: String, at now: Int64) -> ClientSecret {
        ClientSecret(clientID: clientID, kind: .hmac, hash: hmacHash(secret), createdAt: now)
    }

    /// A stored record for a caller-chosen password.
    public func passwordRecord(for password: String, clientID: String, at now: Int64) -> ClientSecret {
        ClientSecret(clientID: clientID, kind: .scrypt, hash: PasswordHasher.hash(password), createdAt: now)
    }

    /// True when `presented` matches one of `secrets` still valid at `now`.
    public func verify(_ presented: String, against secrets: [ClientSecret], now: Int64, cache: VerifiedSecretCache?) -> Bool {
        var matched = false
        let presentedHMAC = Array(hmacHash(presented).utf8)
        for secret in secrets {
            if let expiry = secret.expiresAt, expiry <= now { continue }
            switch secret.kind {
            case .hmac:
                if Digest.constantTimeEqual(presentedHMAC, Array(secret.hash.utf8)) { matched = true }
            case .scrypt:
                let key = cacheKey(presented, secret)
                if let cache, cache.contains(key) {
                    matched = true
                } else if PasswordHasher.verify(presented, encoded: secret.hash) {
                    matched = true
                    cache?.insert(key)
                }
            }
        }
        return matched
    }

    func cacheKey(_ presented: String, _ secret: ClientSecret) -> [UInt8] {
        mac.mac(Array("\(secret.clientID)\u{0}\(secret.id)\u{0}\(secret.hash)\u{0}\(presented)".utf8))
    }
}

/// Remembers successful slow-hash verifications, keyed by a keyed hash of
/// the client, the stored secret and the presented secret: a rotation
/// changes the stored secret, so old entries can never match again.
/// Shared by all worker threads.
public final class VerifiedSecretCache: Sendable {
    private let entries = Mutex<Set<[UInt8]>>([])
    private let capacity: Int

    public init(capacity: Int = 10_000) { self.capacity = capacity }

    func contains(_ key: [UInt8]) -> Bool { entries.withLock { $0.contains(key) } }

    func insert(_ key: [UInt8]) {
        entries.withLock {
            if $0.count >= capacity { $0.removeAll() }
            $0.insert(key)
        }
    }
}

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

    /// A key for another purpose, derived from the pepper (the same on every node sharing the store).
    /// The label is prefixed with a NUL byte, which no hashed secret begins with: a derived key is
    /// never the hash of any secret.
    public func derivedKey(_ label: String) -> [UInt8] { mac.mac([0] + Array(label.utf8)) }

    /// A device flow's user code as stored (RFC 8628 §5.1): keyed under the pepper, for 20^8 codes are few enough
    /// that a plain SHA-256 in a copy of the database gives every live one back at once (secret hygiene review,
    /// session 29). The input starts with a byte 1, which neither a derived key's label (0) nor a secret begins with.
    public func userCodeHash(_ code: String) -> String { Base64.urlEncode(mac.mac([1] + Array(code.utf8))) }

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

    /// True when `presented` matches a generated secret (one HMAC): the only
    /// kind that passes the failure limits unchecked (256 random bits are not
    /// guessed; a remembered password meets them, `verify`).
    public func matchesGeneratedSecret(_ presented: String, against secrets: [ClientSecret], now: Int64) -> Bool {
        let presentedHMAC = Array(hmacHash(presented).utf8)
        var matched = false
        for secret in secrets {
            if let expiry = secret.expiresAt, expiry <= now { continue }
            if secret.kind == .hmac && Digest.constantTimeEqual(presentedHMAC, Array(secret.hash.utf8)) { matched = true }
        }
        return matched
    }

    /// True when `presented` matches one of `secrets` still valid at `now`.
    /// A slow (scrypt) check goes through `guards` (SPEC 7.1): answered from
    /// the cache when this secret was verified (or failed) before, refused
    /// with `TooManyFailures` when any of `limitKeys` is past its failure
    /// limit, and with `SlowHashesBusy` when the slow-hash pool is full.
    public func verify(_ presented: String, against secrets: [ClientSecret], now: Int64, guards: AbuseGuards?,
                       limitKeys: [FailureLimiter.Key] = []) throws -> Bool {
        var matched = false
        let presentedHMAC = Array(hmacHash(presented).utf8)
        for secret in secrets {
            if let expiry = secret.expiresAt, expiry <= now { continue }
            switch secret.kind {
            case .hmac:
                if Digest.constantTimeEqual(presentedHMAC, Array(secret.hash.utf8)) { matched = true }
            case .scrypt:
                guard let guards else {
                    if PasswordHasher.verify(presented, encoded: secret.hash) { matched = true }
                    continue
                }
                let key = cacheKey(presented, secret)
                if guards.secrets.contains(key) {
                    matched = true
                } else if guards.secrets.failedRecently(key, now: now) {
                    continue
                } else {
                    try guards.checkLimits(limitKeys, now: now)
                    if try guards.pool.run({ PasswordHasher.verify(presented, encoded: secret.hash) }) {
                        matched = true
                        guards.secrets.insert(key)
                    } else {
                        guards.secrets.insertFailure(key, now: now)
                    }
                }
            }
        }
        return matched
    }

    func cacheKey(_ presented: String, _ secret: ClientSecret) -> [UInt8] {
        mac.mac(Array("\(secret.clientID)\u{0}\(secret.id)\u{0}\(secret.hash)\u{0}\(presented)".utf8))
    }
}

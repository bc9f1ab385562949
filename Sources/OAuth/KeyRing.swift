import Common
import Cryptography
import JOSE

/// The signing keys as one worker thread sees them: the current signing key,
/// every published verification key, and the JWK Set. Reloaded when the
/// `keys_version` meta value changes, so `latchkey keys rotate` in another
/// process takes effect on the next request (SPEC 4.6).
public final class KeyRing {
    /// Retired keys stay published this long: past the longest token lifetime.
    public static let retentionMillis: Int64 = (86_400 + 300) * 1000

    let store: any MetaStorage & CredentialStorage
    let env: Environment
    private var loadedVersion: String?
    private var current: (kid: String, key: PreparedKey)?
    private var verification: [String: PreparedKey] = [:]
    private var jwks: JSON = .object([("keys", .array([]))])

    public init(store: any MetaStorage & CredentialStorage, env: Environment) {
        self.store = store
        self.env = env
    }

    func refresh() throws {
        // In a read of its own when called outside one (a signature after a
        // grant's write): the request's memo answers it.
        let (version, records): (String, [SigningKeyRecord]?) = try store.read {
            let version = try store.meta("keys_version") ?? "0"
            return (version, version == loadedVersion ? nil : try store.signingKeys())
        }
        guard let records else { return }
        let now = env.now()
        var newCurrent: (String, PreparedKey)?
        var newVerification: [String: PreparedKey] = [:]
        var published: [JSON] = []
        for record in records.sorted(by: { $0.createdAt > $1.createdAt }) {
            guard let alg = SignatureAlgorithm(rawValue: record.algorithm) else { continue }
            if let retired = record.retiredAt, retired + KeyRing.retentionMillis <= now { continue }
            let publicKey = try SigningKey(publicKeyDER: record.publicKey, algorithm: alg)
            newVerification[record.kid] = PreparedKey(publicKey)
            published.append(try JWK.publicJWK(publicKey, kid: record.kid))
            if record.retiredAt == nil && newCurrent == nil {
                var der = record.privateKey
                if record.encrypted {
                    guard let kek = env.kek else { throw KeyRingError.encryptedWithoutKEK }
                    der = try SealedBox.open(der, key: kek)
                }
                newCurrent = (record.kid, PreparedKey(try SigningKey(privateKeyDER: der, algorithm: alg)))
            }
        }
        current = newCurrent
        verification = newVerification
        jwks = .object([("keys", .array(published))])
        loadedVersion = version
    }

    /// The key new tokens are signed with, prepared for this thread.
    public func signingKey() throws -> (kid: String, key: PreparedKey) {
        try refresh()
        guard let current else { throw KeyRingError.noSigningKey }
        return current
    }

    /// A published key by `kid`; nil when unknown or past retention.
    public func verificationKey(kid: String) throws -> PreparedKey? {
        try refresh()
        return verification[kid]
    }

    public func jwkSet() throws -> JSON {
        try refresh()
        return jwks
    }

    public var hasSigningKey: Bool { (try? signingKey()) != nil }
}

public enum KeyRingError: Error, CustomStringConvertible {
    case noSigningKey
    case encryptedWithoutKEK

    public var description: String {
        switch self {
        case .noSigningKey: return "no signing key: run `latchkey init` or `latchkey keys rotate`"
        case .encryptedWithoutKEK: return "the signing key is encrypted but no key-encryption key is configured (LATCHKEY_KEK_FILE)"
        }
    }
}

/// Signing-key management (SPEC 4.6).
public enum KeyManagement {
    /// Makes a new key, publishes it and makes it the signing key; earlier
    /// keys are retired (still published until their tokens have expired).
    @discardableResult
    public static func rotate(store: any MetaStorage & CredentialStorage, env: Environment, algorithm: SignatureAlgorithm) throws -> String {
        let key = try SigningKey.generate(algorithm)
        let kid = try JWK.thumbprint(key)
        var privateDER = try key.privateKeyDER()
        let encrypted = env.kek != nil
        if let kek = env.kek { privateDER = try SealedBox.seal(privateDER, key: kek) }
        let now = env.now()
        try store.write {
            try store.retireSigningKeys(at: now)
            try store.deleteSigningKeys(retiredBefore: now - KeyRing.retentionMillis)
            try store.insertSigningKey(SigningKeyRecord(kid: kid, algorithm: algorithm.rawValue, privateKey: privateDER, encrypted: encrypted,
                                                        publicKey: try key.publicKeyDER(), createdAt: now))
            try bumpVersion(store)
        }
        return kid
    }

    static func bumpVersion(_ store: any MetaStorage & CredentialStorage) throws {
        let v = Int(try store.meta("keys_version") ?? "0") ?? 0
        try store.setMeta("keys_version", String(v + 1))
    }
}

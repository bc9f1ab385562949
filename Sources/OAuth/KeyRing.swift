import Common
import Cryptography
import JOSE

/// The signing keys as one worker thread sees them: the current key of
/// each algorithm, which of them signs access tokens, every published
/// verification key, and the JWK Set. Reloaded when the `keys_version` meta
/// value changes, so `latchkey keys rotate` or `keys revoke` in another
/// process takes effect on the next request (SPEC 4.6, 10.1), and when a
/// retired key's retention ends.
public final class KeyRing {
    /// Retired keys stay published this long: past the longest token lifetime.
    public static let retentionMillis: Int64 = (86_400 + 300) * 1000

    let store: any MetaStorage & CredentialStorage
    let env: Environment
    private var loadedVersion: String?
    /// Why the last refresh could not read the keys (they are as loaded before), nil when it could.
    private var outage: StoreError?
    /// The newest unretired key of each algorithm: it signs the ID tokens of
    /// the clients that chose that algorithm.
    private var current: [SignatureAlgorithm: (kid: String, key: PreparedKey)] = [:]
    /// The algorithm that signs access tokens (meta `access_token_alg`).
    private var accessAlgorithm: SignatureAlgorithm = .es256
    /// The access-token signing key's JWS header (`typ` at+jwt), encoded once per key.
    private var accessHeader: (kid: String, header: [UInt8])?
    private var verification: [String: PreparedKey] = [:]
    private var jwks: JSON = .object([("keys", .array([]))])
    /// When the first retired key loaded passes its retention: the keys are read again then, version or not.
    private var nextRetentionEnd: Int64?
    /// Changes each time a reload leaves out a key the ring verified with
    /// (revoked, or past its retention): what was verified under it no longer
    /// holds (`VerifiedTokenCache` starts again).
    private var verificationEpoch = 0

    public init(store: any MetaStorage & CredentialStorage, env: Environment) {
        self.store = store
        self.env = env
    }

    func refresh() throws {
        // In a read of its own when called outside one (a signature after a
        // grant's write): the request's memo answers it.
        let version: String, records: [SigningKeyRecord]?, chosen: String?
        let now = env.now()
        let retentionPassed = nextRetentionEnd.map { now >= $0 } ?? false
        do {
            (version, records, chosen) = try store.read {
                let version = try store.meta("keys_version") ?? "0"
                guard version != loadedVersion || retentionPassed else { return (version, nil, nil) }
                return (version, try store.signingKeys(), try store.meta(KeyManagement.accessAlgorithmMeta))
            }
        } catch let error as StoreError where error.isTransient && loadedVersion != nil {
            // The database gone a moment: the keys loaded last still sign (a key rotated out stays published
            // 24 hours, so what they sign verifies). A grant that committed just before is answered, not 503
            // (its client's retry would be a replay that revokes it; attacker review, session 18).
            outage = error
            return
        }
        outage = nil
        guard let records else { return }
        var newCurrent: [SignatureAlgorithm: (kid: String, key: PreparedKey)] = [:]
        var newVerification: [String: PreparedKey] = [:]
        var published: [JSON] = []
        for record in records.sorted(by: { $0.createdAt > $1.createdAt }) {
            guard let alg = SignatureAlgorithm(rawValue: record.algorithm) else { continue }
            if let retired = record.retiredAt, retired + KeyRing.retentionMillis <= now { continue }
            let publicKey = try SigningKey(publicKeyDER: record.publicKey, algorithm: alg)
            newVerification[record.kid] = PreparedKey(publicKey)
            published.append(try JWK.publicJWK(publicKey, kid: record.kid))
            if record.retiredAt == nil && newCurrent[alg] == nil {
                var der = record.privateKey
                if record.encrypted {
                    guard let kek = env.kek else { throw KeyRingError.encryptedWithoutKEK }
                    der = try SealedBox.open(der, key: kek)
                }
                newCurrent[alg] = (record.kid, PreparedKey(try SigningKey(privateKeyDER: der, algorithm: alg), presign: env.presignES256))
            }
        }
        current = newCurrent
        accessAlgorithm = KeyManagement.accessAlgorithm(chosen: chosen, records: records)
        if verification.keys.contains(where: { newVerification[$0] == nil }) { verificationEpoch &+= 1 }
        verification = newVerification
        nextRetentionEnd = records.compactMap { $0.retiredAt.map { $0 + KeyRing.retentionMillis } }.filter { $0 > now }.min()
        jwks = .object([("keys", .array(published))])
        loadedVersion = version
    }

    /// The key new access tokens are signed with, prepared for this thread.
    public func signingKey() throws -> (kid: String, key: PreparedKey) {
        try refresh()
        guard let key = current[accessAlgorithm] else { throw KeyRingError.noSigningKey }
        return key
    }

    /// The key new access tokens are signed with and their encoded JWS
    /// header (RFC 9068 §2.1: `typ` at+jwt, the key's `kid`), the same for
    /// every token the key signs.
    /// For `client`, in an algorithm it allows: where RS256 signs access tokens
    /// (`keys rotate --alg RS256`), a FAPI 2.0 client's are signed with the
    /// current ES256 key (`Client.signingAlgorithm`).
    func accessTokenSigner(for client: Client) throws -> (key: PreparedKey, header: [UInt8]) {
        var (kid, key) = try signingKey()
        let algorithm = client.signingAlgorithm(key.algorithm)
        if algorithm != key.algorithm { (kid, key) = try signingKey(for: algorithm) }
        if let accessHeader, accessHeader.kid == kid { return (key, accessHeader.header) }
        let header = JWS.encodedHeader(algorithm: key.algorithm, kid: kid, typ: AccessTokens.type)
        accessHeader = (kid, header)
        return (key, header)
    }

    /// The current key of `algorithm` (a client's `id_token_signed_response_alg`).
    public func signingKey(for algorithm: SignatureAlgorithm) throws -> (kid: String, key: PreparedKey) {
        try refresh()
        guard let key = current[algorithm] else { throw KeyRingError.noKey(algorithm) }
        return key
    }

    /// The algorithms with a current key, in `SignatureAlgorithm`'s order (discovery).
    public func algorithms() throws -> [SignatureAlgorithm] {
        try refresh()
        return SignatureAlgorithm.allCases.filter { current[$0] != nil }
    }

    /// A published key by `kid`; nil when unknown or past retention. While
    /// the keys cannot be read again, a kid not among those loaded may be
    /// one made since on another node: the outage is the answer (503), not
    /// an invalid token a client would throw away.
    public func verificationKey(kid: String) throws -> PreparedKey? {
        try refresh()
        if let key = verification[kid] { return key }
        if let outage { throw outage }
        return nil
    }

    public func jwkSet() throws -> JSON {
        try refresh()
        return jwks
    }

    public var hasSigningKey: Bool { (try? signingKey()) != nil }

    /// Which verifications still hold, as of the keys as they are now: a
    /// `VerifiedTokenCache` keeps what it verified while this is unchanged.
    /// Read on every request that answers from that cache (the request's memo
    /// answers it while nothing changed), so a key revoked on any node ends
    /// what it signed from every node's next request on (SPEC 9; two-node
    /// review, session 32: read once a second, a thread that had verified a
    /// token answered it active for up to 0.85 s after `keys revoke`).
    func currentVerificationEpoch() throws -> Int {
        try refresh()
        return verificationEpoch
    }
}

public enum KeyRingError: Error, CustomStringConvertible {
    case noSigningKey
    case noKey(SignatureAlgorithm)
    case encryptedWithoutKEK

    public var description: String {
        switch self {
        case .noSigningKey: return "no signing key: run `latchkey init` or `latchkey keys rotate`"
        case let .noKey(alg): return "no \(alg.rawValue) signing key: run `latchkey keys rotate --alg \(alg.rawValue)`"
        case .encryptedWithoutKEK: return "the signing key is encrypted but no key-encryption key is configured (LATCHKEY_KEK_FILE)"
        }
    }
}

/// Signing-key management (SPEC 4.6, 10.1): one current key per
/// algorithm, ES256 and RS256 always; one of them signs access tokens.
public enum KeyManagement {
    /// The meta value naming the access-token algorithm.
    static let accessAlgorithmMeta = "access_token_alg"
    /// The algorithms every deployment publishes a key for (SPEC 10.1).
    public static let alwaysPublished: [SignatureAlgorithm] = [.es256, .rs256]

    /// Makes a new key for `algorithm`, publishes it and makes `algorithm`
    /// the one that signs access tokens; that algorithm's earlier keys are
    /// retired (still published until their tokens have expired), the other
    /// algorithms' current keys stay. With `auditedFor`, the change's audit
    /// row (`keys.rotated`, by that actor and surface) is written in the same
    /// transaction: there is never a new key without its record, nor a record
    /// of a rotation that did not happen.
    @discardableResult
    public static func rotate(store: any MetaStorage & CredentialStorage & AuditStorage, env: Environment, algorithm: SignatureAlgorithm,
                              auditedFor actor: String? = nil) throws -> String {
        let record = try newKey(algorithm, env: env)
        let now = env.now()
        try store.write {
            try refuseUnlessKEKFits(store, env: env)
            try bumpVersion(store)
            try store.retireSigningKeys(algorithm: algorithm.rawValue, at: now)
            try store.deleteSigningKeys(retiredBefore: now - KeyRing.retentionMillis)
            try store.insertSigningKey(record)
            try store.setMeta(accessAlgorithmMeta, algorithm.rawValue)
            if let actor {
                try store.appendAudit(AuditEvent(organizationID: nil, actor: actor, action: "keys.rotated", target: record.kid, surface: actor,
                                                 requestID: nil, details: ["alg": .string(algorithm.rawValue)], createdAt: now))
            }
        }
        return record.kid
    }

    /// Makes a key for each always-published algorithm that has none, without
    /// changing which algorithm signs access tokens (`init`, `serve`; a
    /// deployment from before SPEC 10.1 gains its RS256 key here). Returns
    /// the kids made.
    @discardableResult
    public static func ensurePublished(store: any MetaStorage & CredentialStorage, env: Environment) throws -> [String] {
        let missing = try store.read { () -> [SignatureAlgorithm] in
            let current = Set(try store.signingKeys().filter { $0.retiredAt == nil }.map(\.algorithm))
            return alwaysPublished.filter { !current.contains($0.rawValue) }
        }
        guard !missing.isEmpty else { return [] }
        let records = try missing.map { try newKey($0, env: env) }
        return try store.write {
            try refuseUnlessKEKFits(store, env: env)
            try bumpVersion(store)
            let existing = try store.signingKeys().filter { $0.retiredAt == nil }
            // Fix the access-token algorithm first, as it was: new keys must not take it over.
            if try store.meta(accessAlgorithmMeta) == nil {
                try store.setMeta(accessAlgorithmMeta, accessAlgorithm(chosen: nil, records: existing).rawValue)
            }
            let current = Set(existing.map(\.algorithm))
            let made = records.filter { !current.contains($0.algorithm) }
            for record in made { try store.insertSigningKey(record) }
            return made.map(\.kid)
        }
    }

    /// The access-token algorithm: the one chosen by `keys rotate --alg`;
    /// before any choice, the algorithm of the newest current key (a
    /// deployment from before SPEC 10.1 had exactly one); ES256 otherwise.
    /// The algorithm that signs access tokens now (what `keys rotate` without `--alg` rotates, SPEC 10.1).
    public static func accessAlgorithm(store: any MetaStorage & CredentialStorage) throws -> SignatureAlgorithm {
        try store.read { accessAlgorithm(chosen: try store.meta(accessAlgorithmMeta), records: try store.signingKeys()) }
    }

    static func accessAlgorithm(chosen: String?, records: [SigningKeyRecord]) -> SignatureAlgorithm {
        if let chosen, let alg = SignatureAlgorithm(rawValue: chosen) { return alg }
        let newest = records.filter { $0.retiredAt == nil }.max { $0.createdAt < $1.createdAt }
        return newest.flatMap { SignatureAlgorithm(rawValue: $0.algorithm) } ?? .es256
    }

    /// Where a key-encryption key is in use (a sealed key or pepper), a key
    /// or pepper made without it would be stored in clear, in backups and on
    /// replicas, and used at once, until the next `serve` sealed it: refused
    /// (review, session 20: `keys rotate` run without LATCHKEY_KEK_FILE did
    /// just that). A key-encryption key that does not open what is sealed
    /// here is refused too: a key sealed under it would become current on
    /// every node, which could not open it (no token, `/healthz` 503, no
    /// `serve` starting) until that key was revoked (operator review,
    /// session 30: one mistyped `--kek-file` on `keys rotate`).
    static func refuseUnlessKEKFits(_ store: any MetaStorage & CredentialStorage, env: Environment) throws {
        let sealedPepper = try store.meta("secret_pepper_sealed").flatMap(Hex.decode)
        guard let kek = env.kek else {
            if try sealedPepper != nil || store.signingKeys().contains(where: \.encrypted) {
                throw ProvisioningError.invalid("secrets at rest are sealed here: configure the key-encryption key (LATCHKEY_KEK_FILE)")
            }
            return
        }
        guard let sealed = try sealedPepper ?? store.signingKeys().first(where: \.encrypted)?.privateKey else { return }
        guard (try? SealedBox.open(sealed, key: kek)) != nil else {
            throw ProvisioningError.invalid("the key-encryption key (LATCHKEY_KEK_FILE) does not open the secrets sealed here: it is not the one they were sealed with")
        }
    }

    static func newKey(_ algorithm: SignatureAlgorithm, env: Environment) throws -> SigningKeyRecord {
        let key = try env.makeKey(algorithm)
        var privateDER = try key.privateKeyDER()
        let encrypted = env.kek != nil
        if let kek = env.kek { privateDER = try SealedBox.seal(privateDER, key: kek) }
        return SigningKeyRecord(kid: try JWK.thumbprint(key), algorithm: algorithm.rawValue, privateKey: privateDER, encrypted: encrypted,
                                publicKey: try key.publicKeyDER(), createdAt: env.now())
    }

    /// Ends a signing key at once, as for a key that leaked: it leaves the
    /// JWK Set, and nothing it signed verifies any more (access tokens, ID
    /// and logout tokens), on every node within a second. A current key
    /// is replaced by a new key of its algorithm first, so each algorithm
    /// keeps one and the access-token algorithm stays. Returns the key's
    /// algorithm and its replacement's kid. With `auditedFor`, the audit row
    /// (`keys.revoked`) is written in the same transaction.
    public static func revoke(store: any MetaStorage & CredentialStorage & AuditStorage, env: Environment, kid: String,
                              auditedFor actor: String? = nil) throws -> (algorithm: SignatureAlgorithm, replacement: String?) {
        let found = try store.read { try store.signingKeys().first { $0.kid == kid } }
        guard let found, let algorithm = SignatureAlgorithm(rawValue: found.algorithm) else { throw ProvisioningError.invalid("no signing key \(kid)") }
        // Made outside the write (an RSA key takes a while); left unused if a rotation retired the key meanwhile.
        let replacement = found.retiredAt == nil ? try newKey(algorithm, env: env) : nil
        return try store.write {
            try refuseUnlessKEKFits(store, env: env)
            try bumpVersion(store)
            guard let key = try store.signingKeys().first(where: { $0.kid == kid }) else { throw ProvisioningError.invalid("no signing key \(kid)") }
            try store.deleteSigningKey(kid: kid)
            var made: String?
            if key.retiredAt == nil, let replacement {
                try store.insertSigningKey(replacement)
                made = replacement.kid
            }
            if let actor {
                try store.appendAudit(AuditEvent(organizationID: nil, actor: actor, action: "keys.revoked", target: kid, surface: actor, requestID: nil,
                                                 details: ["alg": .string(algorithm.rawValue), "replacement": made.map(JSON.string) ?? .null],
                                                 createdAt: env.now()))
            }
            return (algorithm, made)
        }
    }

    /// Written first in every change of the keys: on PostgreSQL the row's lock
    /// then makes a second change wait for the first and read what it did
    /// (two at once each retired only the keys it saw, and an algorithm was
    /// left with two current keys: review of the change, session 29).
    /// A new random version, not the old one plus one: two nodes changing
    /// the keys at once (one rotating while another starts and publishes a
    /// missing algorithm's key) would both write the same next number, and a
    /// node that loaded the first change would never see the second; and a
    /// failover to a standby behind it would count up to a version a node has
    /// loaded with other keys (attacker review, session 13).
    static func bumpVersion(_ store: any MetaStorage & CredentialStorage) throws {
        try store.setMeta("keys_version", Hex.encode(SecureRandom.bytes(16)))
    }
}

import Common
import Cryptography
import JOSE
import Synchronization

/// Other parties' public keys already imported, by the members that make
/// the key (RFC 7638 §3.2's, in a fixed order), with their RFC 7638
/// thumbprints: DPoP proof keys (a client signs many proofs with one key)
/// and the keys clients register for `private_key_jwt`. Importing a key
/// (OpenSSL's decoders and its point check, about 220k instructions for
/// P-256) costs a quarter of the verification it is for. Keyed by the whole
/// JWK text, one key padded with a different extra member each time made
/// many entries of kilobytes, and anyone naming a public client could send
/// them (review, session 20: 4,200 pushed requests took a worker from 41 to
/// 74 MB). Bounded: emptied when full, the keys are then imported again.
final class ForeignKeys: Sendable {
    static let shared = ForeignKeys(capacity: 1024)

    private let entries = Mutex<[String: (key: SigningKey, thumbprint: String)]>([:])
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Keys held (tests).
    var count: Int { entries.withLock { $0.count } }

    /// The key, imported or remembered; nil for a JWK that is no public key
    /// (a private member: callers check the shape first, and a private key
    /// must not be remembered under its public members).
    func key(_ jwk: JSON) -> (key: SigningKey, thumbprint: String)? {
        guard jwk["d"] == nil else { return nil }
        let text = ForeignKeys.identity(jwk)
        if let known = entries.withLock({ $0[text] }) { return known }
        guard let key = try? SigningKey(jwk: jwk), let thumbprint = try? JWK.thumbprint(key) else { return nil }
        entries.withLock { cache in
            if cache.count >= capacity { cache.removeAll(keepingCapacity: true) }
            cache[text] = (key, thumbprint)
        }
        return (key, thumbprint)
    }

    /// The members RFC 7638 §3.2 hashes, for every key type, in one order:
    /// what the key is, whatever else the JWK carries (`kid`, `use`, `alg`,
    /// anything a sender adds).
    static func identity(_ jwk: JSON) -> String {
        var text = ""
        for member in ["kty", "crv", "e", "n", "x", "y"] {
            text += jwk[member]?.stringValue ?? ""
            text += "."
        }
        return text
    }
}

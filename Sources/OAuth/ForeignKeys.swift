import Common
import Cryptography
import JOSE
import Synchronization

/// Other parties' public keys already imported, by their JWK's text, with
/// their RFC 7638 thumbprints: DPoP proof keys (a client signs many proofs
/// with one key) and the keys clients register for `private_key_jwt`.
/// Importing a key (OpenSSL's decoders and its point check, about 220k
/// instructions for P-256) costs a quarter of the verification it is for;
/// the text holds all of the key, so one text is always one key. Bounded:
/// emptied when full, the keys are then imported again.
final class ForeignKeys: Sendable {
    static let shared = ForeignKeys(capacity: 4096)

    private let entries = Mutex<[String: (key: SigningKey, thumbprint: String)]>([:])
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func key(_ jwk: JSON) -> (key: SigningKey, thumbprint: String)? {
        let text = jwk.text
        if let known = entries.withLock({ $0[text] }) { return known }
        guard let key = try? SigningKey(jwk: jwk), let thumbprint = try? JWK.thumbprint(key) else { return nil }
        entries.withLock { cache in
            if cache.count >= capacity { cache.removeAll(keepingCapacity: true) }
            cache[text] = (key, thumbprint)
        }
        return (key, thumbprint)
    }
}

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
/// A key is remembered only once a signature verified with it: proofs
/// signed by nobody, under keys made up for each, do not push out the keys
/// clients use (review, session 25). A caller who signs each proof with a
/// key of its own still can: the keys are imported again then, a quarter
/// of a verification each, nothing worse.
final class ForeignKeys: Sendable {
    static let shared = ForeignKeys(capacity: 1024)

    private let entries = Mutex<[[UInt8]: (key: SigningKey, thumbprint: String)]>([:])
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Keys held (tests).
    var count: Int { entries.withLock { $0.count } }

    /// The key's thumbprint when `verifies` (a signature check) passes with
    /// it, the key imported or remembered; nil for a JWK that is no public
    /// key of a type Latchkey verifies with (callers check the shape first; a
    /// private member is refused here too, never remembered under its public
    /// members), or when the check fails.
    func verify(_ jwk: JSON, _ verifies: (SigningKey) -> Bool) -> String? {
        guard jwk["d"] == nil, let identity = ForeignKeys.identity(jwk) else { return nil }
        if let known = entries.withLock({ $0[identity] }) { return verifies(known.key) ? known.thumbprint : nil }
        guard let key = try? SigningKey(jwk: jwk), let thumbprint = try? JWK.thumbprint(key), verifies(key) else { return nil }
        entries.withLock { cache in
            if cache.count >= capacity { cache.removeAll(keepingCapacity: true) }
            cache[identity] = (key, thumbprint)
        }
        return thumbprint
    }

    /// RFC 7638 §3.2's input for the key's type: its required members, and
    /// only those, as JSON text in the order of their names, compared byte
    /// for byte. They are exactly what `SigningKey(jwk:)` imports a public
    /// key from, so one identity is one key: other members (`kid`, `use`,
    /// `alg`, another type's, padding) neither make another entry nor share
    /// one (independent review, session 20: a text joined with "." let a
    /// member holding "." meet another key's entry, and ignored members kept
    /// entries large). Nil for a type no key is imported from.
    static func identity(_ jwk: JSON) -> [UInt8]? {
        let members: [String]
        switch jwk["kty"]?.stringValue {
        case "EC": members = ["crv", "kty", "x", "y"]
        case "RSA": members = ["e", "kty", "n"]
        case "OKP": members = ["crv", "kty", "x"]
        default: return nil
        }
        var object: [(String, JSON)] = []
        for name in members {
            guard let value = jwk[name]?.stringValue else { return nil }
            object.append((name, .string(value)))
        }
        return Array(JSON.object(object).text.utf8)
    }
}

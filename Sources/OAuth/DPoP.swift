import Common
import Cryptography
import JOSE

/// DPoP (RFC 9449): a client proves with each request that it holds the
/// private key its tokens are bound to (`cnf.jkt`, the key's RFC 7638
/// thumbprint). A proof is a `dpop+jwt` carrying its public key in the
/// header, signed with it, for one method and URL, fresh, used once.
public enum DPoP {
    public static let algorithms: [SignatureAlgorithm] = [.es256, .rs256, .edDSA]
    /// How far a proof's `iat` may be from now, either way.
    public static let windowSeconds: Int64 = 60

    public struct Refusal: Error, Equatable {
        public let reason: String
    }

    /// RFC 9449 §4.3's checks of the proof in a `DPoP` header for a request
    /// to `method` `url` (and `accessToken`, whose hash `ath` must carry,
    /// at a resource); returns the thumbprint of the proof's key.
    /// The proof's `jti` is then `used`: `used(jkt, jti, expiresAt)` records
    /// it and answers whether it was new (a replay is refused, §11.1).
    public static func verify(_ proof: String, method: String, url: String, accessToken: String? = nil, now: Int64,
                              used: (String, String, Int64) throws -> Bool) throws -> String {
        guard let parsed = JWS.parse(proof, maxLength: 8192), parsed.typ == "dpop+jwt" else { throw Refusal(reason: "not a dpop+jwt JWS") }
        guard let algorithm = parsed.algorithm.flatMap(SignatureAlgorithm.init(rawValue:)), algorithms.contains(algorithm) else {
            throw Refusal(reason: "unsupported alg")
        }
        // The key in the header: public, of bounded cost (the rules a client's registered keys follow).
        guard let jwk = parsed.header["jwk"], ClientAssertion.jwksProblem(["keys": [jwk]]) == nil, let key = try? SigningKey(jwk: jwk),
              JWS.verifyForeign(parsed, key: key), let jkt = try? JWK.thumbprint(key) else { throw Refusal(reason: "bad key or signature") }
        let claims = parsed.payload, nowSeconds = now / 1000
        guard let jti = claims["jti"]?.stringValue, (1...256).contains(jti.utf8.count) else { throw Refusal(reason: "no jti") }
        guard claims["htm"]?.stringValue == method else { throw Refusal(reason: "htm is not the request's method") }
        guard let htu = claims["htu"]?.stringValue, target(htu) == target(url) else { throw Refusal(reason: "htu is not the request's URL") }
        guard let iat = claims["iat"]?.intValue, abs(iat - nowSeconds) <= windowSeconds else { throw Refusal(reason: "iat outside the window") }
        if let accessToken {
            guard claims["ath"]?.stringValue == Base64.urlEncode(Digest.sha256(accessToken)) else { throw Refusal(reason: "ath is not the token's hash") }
        }
        // Kept past the window by its length again, so a node whose clock lags cannot take it a second time.
        guard try used(jkt, jti, (iat + 2 * windowSeconds) * 1000) else { throw Refusal(reason: "proof replayed") }
        return jkt
    }

    /// A URL without query and fragment, scheme and host lowercased (§4.3: htu compares so).
    static func target(_ url: String) -> String {
        let noFragment = url.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let base = String(noFragment.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
        // The scheme and authority (up to the first "/" after "://") compare without case.
        let chars = Array(base.utf8)
        guard let colon = chars.firstIndex(of: UInt8(ascii: ":")), chars.count > colon + 2,
              chars[colon + 1] == UInt8(ascii: "/"), chars[colon + 2] == UInt8(ascii: "/") else { return base }
        let pathStart = chars[(colon + 3)...].firstIndex(of: UInt8(ascii: "/")) ?? chars.count
        return String(decoding: chars[..<pathStart], as: UTF8.self).lowercased() + String(decoding: chars[pathStart...], as: UTF8.self)
    }
}

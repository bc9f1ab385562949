import Common
import Cryptography
import JOSE
import Synchronization

/// A verified DPoP proof of a token request, its `jti` not yet recorded:
/// the key's thumbprint the tokens are bound to, and what the replay check
/// (RFC 9449 §11.1) records.
public struct DPoPProof: Sendable {
    public let jkt: String
    public let jti: String
    public let expiresAt: Int64
    public let verifiedAt: Int64
    /// The algorithm the proof was signed with (a FAPI 2.0 client's may not be RS256).
    public let algorithm: SignatureAlgorithm

    public init(jkt: String, jti: String, expiresAt: Int64, verifiedAt: Int64, algorithm: SignatureAlgorithm = .es256) {
        (self.jkt, self.jti, self.expiresAt, self.verifiedAt, self.algorithm) = (jkt, jti, expiresAt, verifiedAt, algorithm)
    }
}

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
        /// The proof lacked the server's current nonce (§8, §9): the answer is `use_dpop_nonce` with a fresh one.
        public var wantsNonce = false

        public init(reason: String, wantsNonce: Bool = false) { (self.reason, self.wantsNonce) = (reason, wantsNonce) }
    }

    /// RFC 9449 §4.3's checks of the proof in a `DPoP` header for a request
    /// to `method` `url` (and `accessToken`, whose hash `ath` must carry,
    /// at a resource); returns the proof verified: its key's thumbprint and
    /// what the replay check (§11.1) records, which the caller does in the
    /// transaction that uses the proof (`CredentialStorage.useProof`).
    /// With `nonces` (server nonces configured, §8 and §9), the proof must
    /// carry a current one; checked after its signature and before its jti is
    /// recorded, so a proof refused for its nonce can be remade and sent again.
    public static func verify(_ proof: String, method: String, url: String, accessToken: String? = nil, now: Int64,
                              nonces: DPoPNonces? = nil) throws -> DPoPProof {
        guard let parsed = JWS.parse(proof, maxLength: 8192), parsed.typ == "dpop+jwt" else { throw Refusal(reason: "not a dpop+jwt JWS") }
        guard let algorithm = parsed.algorithm.flatMap(SignatureAlgorithm.init(rawValue:)), algorithms.contains(algorithm) else {
            throw Refusal(reason: "unsupported alg")
        }
        // What costs nothing to check comes before the key is imported and its signature checked: a proof made for
        // another request, or at another time, is refused without either (review, session 25).
        let claims = parsed.payload, nowSeconds = now / 1000
        guard let jti = ClientAssertion.recordableJTI(claims["jti"]) else { throw Refusal(reason: "no usable jti") }
        guard claims["htm"]?.stringValue == method else { throw Refusal(reason: "htm is not the request's method") }
        // Both normalised alike (§4.3: RFC 3986's syntax- and scheme-based normalisation, query and fragment ignored).
        guard let htu = claims["htu"]?.stringValue, let target = comparable(htu), target == comparable(url) else {
            throw Refusal(reason: "htu is not the request's URL")
        }
        // No arithmetic on what the proof says: compared against bounds computed from the clock.
        guard let iat = claims["iat"]?.numericDateValue, iat >= nowSeconds - windowSeconds, iat <= nowSeconds + windowSeconds else {
            throw Refusal(reason: "iat outside the window")
        }
        // The key in the header: public, of bounded cost (the rules a client's registered keys follow; an RSA key's
        // exponent 65537, as every library makes them: anyone may send one, and 2^32 - 1 doubled a check's cost,
        // review, session 25), imported once per key.
        guard let jwk = parsed.header["jwk"], ClientAssertion.shapeProblem(jwk) == nil, jwk["kty"]?.stringValue != "RSA" || jwk["e"]?.stringValue == "AQAB",
              let jkt = ForeignKeys.shared.verify(jwk, { JWS.verifyForeign(parsed, key: $0) }) else { throw Refusal(reason: "bad key or signature") }
        if let accessToken {
            guard claims["ath"]?.stringValue == Base64.urlEncode(Digest.sha256(accessToken)) else { throw Refusal(reason: "ath is not the token's hash") }
        }
        if let nonces {
            guard let nonce = claims["nonce"]?.stringValue, nonces.accepts(nonce, now: now) else {
                throw Refusal(reason: "the server's DPoP nonce is required", wantsNonce: true)
            }
        }
        // Kept past the window by its length again, so a node whose clock lags cannot take it a second time; plus
        // this server's millisecond, so that proofs whose client pins one `iat` do not all share one expiry, which
        // a purge takes whole (review, session 31: ExpiredRows).
        return DPoPProof(jkt: jkt, jti: jti, expiresAt: (iat + 2 * windowSeconds) * 1000 + now % 1000, verifiedAt: now, algorithm: algorithm)
    }

    /// With server nonces configured, whether a proof's `nonce` claim is a
    /// current one, read without checking anything else (nonces are handed to
    /// anyone, so nothing is learnt): the answer to a proof without one,
    /// `use_dpop_nonce`, comes before the client authenticates, so a client
    /// assertion sent with it is not spent by a request the client must repeat
    /// (§8), and before any signature is verified. A proof that passes is
    /// still checked in full, `nonce` included, where it is used.
    public static func carriesNonce(_ proof: String, nonces: DPoPNonces, now: Int64) -> Bool {
        guard let nonce = JWS.parse(proof, maxLength: 8192)?.payload["nonce"]?.stringValue else { return false }
        return nonces.accepts(nonce, now: now)
    }

    /// A URL as §4.3 compares `htu` with the request's: without its query
    /// and fragment, normalised as RFC 3986 §6.2.2 and §6.2.3 say (scheme
    /// and host lowercased, an empty or default port dropped, percent-encoded
    /// unreserved characters decoded and other percent-encodings' hex digits
    /// uppercased, dot segments removed, an empty path "/"), so a client
    /// library that spells the server's URL another way is not refused (it
    /// was, for `:443` or `%7E`). nil for what is not an http or https URL.
    static func comparable(_ url: String) -> [UInt8]? {
        // Bytes, not characters: String.split would walk grapheme clusters.
        let bytes = Array(url.utf8)
        let end = bytes.firstIndex { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? bytes.count
        guard let colon = bytes[..<end].firstIndex(of: UInt8(ascii: ":")), end >= colon + 3,
              bytes[colon + 1] == UInt8(ascii: "/"), bytes[colon + 2] == UInt8(ascii: "/") else { return nil }
        let scheme = bytes[..<colon].map(lowercased)
        let defaultPort: [UInt8]
        switch scheme {
        case Array("https".utf8): defaultPort = Array("443".utf8)
        case Array("http".utf8): defaultPort = Array("80".utf8)
        default: return nil
        }
        let pathStart = bytes[(colon + 3)..<end].firstIndex(of: UInt8(ascii: "/")) ?? end
        var authority = bytes[(colon + 3)..<pathStart].map(lowercased)
        // A port follows the last ":" that is not inside an IPv6 literal's brackets.
        if let portColon = authority.lastIndex(of: UInt8(ascii: ":")), !authority[portColon...].contains(UInt8(ascii: "]")) {
            let port = authority[(portColon + 1)...]
            if port.isEmpty || port.elementsEqual(defaultPort) { authority.removeSubrange(portColon...) }
        }
        return scheme + Array("://".utf8) + authority + normalisedPath(bytes[pathStart..<end])
    }

    /// The URL a request was sent to, as `comparable` takes it: the issuer
    /// and the request's path, which nginx hands over percent-decoded, encoded
    /// again where RFC 3986 §3.3 allows no literal byte (`%`, `?`, `#`, spaces,
    /// non-ASCII). Decoded as it is, a path holding `%3F` or `%2565` was cut
    /// at its `?` or decoded a second time, so a proof for one path passed at
    /// another (review of the change, session 32).
    public static func requestURL(issuer: String, decodedPath: String) -> String {
        issuer + PercentEncoding.encode(decodedPath, keeping: pathCharacter)
    }

    /// RFC 3986's pchar and "/", but for its pct-encoded (a literal `%` here is encoded).
    private static func pathCharacter(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&")...UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="),
             UInt8(ascii: ":"), UInt8(ascii: "@"), UInt8(ascii: "/"): true
        default: PercentEncoding.isUnreserved(b)
        }
    }

    private static func lowercased(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b | 0x20 : b }
    private static func uppercased(_ b: UInt8) -> UInt8 { b >= 0x61 && b <= 0x7A ? b & ~0x20 : b }

    /// RFC 3986 §6.2.2.2 then §6.2.2.3 (`remove_dot_segments`, §5.2.4) on a path ("" or starting with "/").
    private static func normalisedPath(_ path: ArraySlice<UInt8>) -> [UInt8] {
        var decoded: [UInt8] = []
        decoded.reserveCapacity(path.count)
        var i = path.startIndex
        while i < path.endIndex {
            if path[i] == UInt8(ascii: "%"), path.endIndex - i >= 3, let high = Hex.nibble(path[i + 1]), let low = Hex.nibble(path[i + 2]) {
                let value = high << 4 | low
                if PercentEncoding.isUnreserved(value) {
                    decoded.append(value)
                } else {
                    decoded += [UInt8(ascii: "%"), uppercased(path[i + 1]), uppercased(path[i + 2])]
                }
                i += 3
            } else {
                decoded.append(path[i])
                i += 1
            }
        }
        guard !decoded.isEmpty else { return [UInt8(ascii: "/")] }
        let segments = decoded.dropFirst().split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        var kept: [ArraySlice<UInt8>] = []
        for (index, segment) in segments.enumerated() {
            let last = index == segments.count - 1
            if segment.elementsEqual([UInt8(ascii: ".")]) || segment.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                if segment.count == 2, !kept.isEmpty { kept.removeLast() }
                if last { kept.append([]) }
            } else {
                kept.append(segment)
            }
        }
        return [UInt8(ascii: "/")] + Array(kept.joined(separator: [UInt8(ascii: "/")]))
    }
}

/// Server-provided DPoP nonces (RFC 9449 §8, §9), when configured: the
/// server decides how fresh a proof must be instead of trusting the
/// client's clock. Stateless and the same on every node: a nonce is an
/// HMAC, under a key derived from the server's pepper, of the current
/// five-minute window; the current and the previous window's nonces are
/// accepted, so a nonce lives five to ten minutes and no node stores any.
public struct DPoPNonces: Sendable {
    public static let windowSeconds: Int64 = 300
    let key: HMACKey

    public init(hasher: SecretHasher) {
        key = HMACKey(key: hasher.derivedKey("dpop-nonce v1"))
    }

    func nonce(window: Int64) -> String {
        Base64.urlEncode(Array(key.mac(Array("\(window)".utf8)).prefix(24)))
    }

    /// The nonce to hand out now (`DPoP-Nonce`).
    public func current(now: Int64) -> String { nonce(window: now / 1000 / DPoPNonces.windowSeconds) }

    public func accepts(_ presented: String, now: Int64) -> Bool {
        guard presented.utf8.count == 32 else { return false }
        let window = now / 1000 / DPoPNonces.windowSeconds
        // Both compared, whichever matches: constant time either way.
        let current = Digest.constantTimeEqual(Array(presented.utf8), Array(nonce(window: window).utf8))
        let previous = Digest.constantTimeEqual(Array(presented.utf8), Array(nonce(window: window - 1).utf8))
        return current || previous
    }
}

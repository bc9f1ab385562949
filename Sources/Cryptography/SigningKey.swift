internal import COpenSSL
import Common

/// JWS algorithms Latchkey signs with (RFC 7518 §3.3, §3.4; RFC 8037 §3.1).
public enum SignatureAlgorithm: String, Sendable, CaseIterable {
    case es256 = "ES256"
    case rs256 = "RS256"
    case edDSA = "EdDSA"

    var kind: Int32 {
        switch self {
        case .es256: return 1
        case .rs256: return 2
        case .edDSA: return 3
        }
    }

    /// OpenSSL's key type for a new key of this algorithm.
    var evpType: Int32 {
        switch self {
        case .es256: return EVP_PKEY_EC
        case .rs256: return EVP_PKEY_RSA
        case .edDSA: return EVP_PKEY_ED25519
        }
    }
}

/// An asymmetric key held by OpenSSL. The algorithm is fixed when the key is
/// made or loaded and checked against the key type, so a token header can
/// never choose how a key is used.
///
/// `@unchecked Sendable`: the `EVP_PKEY` is never mutated after init, and
/// OpenSSL 3 allows concurrent signing and verification with one key.
public final class SigningKey: @unchecked Sendable {
    let pkey: OpaquePointer
    public let algorithm: SignatureAlgorithm
    public let hasPrivateKey: Bool

    init(pkey: OpaquePointer, algorithm: SignatureAlgorithm, hasPrivateKey: Bool) throws {
        self.pkey = pkey
        self.algorithm = algorithm
        self.hasPrivateKey = hasPrivateKey
        guard lk_pkey_kind(pkey) == algorithm.kind else {
            throw CryptoError(plain: "key type does not match \(algorithm.rawValue)")
        }
        if algorithm == .rs256 && EVP_PKEY_get_bits(pkey) < 2048 {
            throw CryptoError(plain: "RSA keys must be at least 2048 bits")
        }
    }

    deinit { EVP_PKEY_free(pkey) }

    /// A fresh key: P-256 for ES256, RSA (default 2048 bits) for RS256, Ed25519 for EdDSA.
    public static func generate(_ algorithm: SignatureAlgorithm, rsaBits: Int = 2048) throws -> SigningKey {
        guard let context = EVP_PKEY_CTX_new_id(algorithm.evpType, nil) else { throw CryptoError("key generation") }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_keygen_init(context) > 0 else { throw CryptoError("key generation") }
        switch algorithm {
        case .es256: guard EVP_PKEY_CTX_set_ec_paramgen_curve_nid(context, NID_X9_62_prime256v1) > 0 else { throw CryptoError("P-256 key generation") }
        case .rs256: guard EVP_PKEY_CTX_set_rsa_keygen_bits(context, Int32(rsaBits)) > 0 else { throw CryptoError("RSA key generation") }
        case .edDSA: break
        }
        var pkey: OpaquePointer?
        guard EVP_PKEY_keygen(context, &pkey) > 0, let pkey else { throw CryptoError("key generation") }
        return try SigningKey(pkey: pkey, algorithm: algorithm, hasPrivateKey: true)
    }

    /// Loads a PKCS#8 (or traditional) DER private key.
    public convenience init(privateKeyDER der: [UInt8], algorithm: SignatureAlgorithm) throws {
        guard let pkey = SigningKey.decode(der, with: { d2i_AutoPrivateKey(nil, $0, $1) }) else { throw CryptoError("private key DER") }
        try self.init(pkey: pkey, algorithm: algorithm, hasPrivateKey: true)
    }

    /// Loads a SubjectPublicKeyInfo DER public key.
    public convenience init(publicKeyDER der: [UInt8], algorithm: SignatureAlgorithm) throws {
        guard let pkey = SigningKey.decode(der, with: { d2i_PUBKEY(nil, $0, $1) }) else { throw CryptoError("public key DER") }
        try self.init(pkey: pkey, algorithm: algorithm, hasPrivateKey: false)
    }

    /// Runs one of OpenSSL's `d2i_*` decoders over `der` (they advance the pointer they are given).
    private static func decode(_ der: [UInt8], with d2i: (UnsafeMutablePointer<UnsafePointer<UInt8>?>, Int) -> OpaquePointer?) -> OpaquePointer? {
        der.withUnsafeBufferPointer { buffer in
            var cursor = buffer.baseAddress
            return d2i(&cursor, buffer.count)
        }
    }

    /// A key from JWK members (RFC 7518 §6): EC `x`,`y` (+`d` ignored: public only),
    /// RSA `n`,`e` (and `d`,`p`,`q`,`dp`,`dq`,`qi` for a private key), OKP `x` (and `d`).
    public convenience init(jwk: JSON) throws {
        func member(_ name: String) -> [UInt8]? { jwk[name]?.stringValue.flatMap(Base64.urlDecode) }
        guard let kty = jwk["kty"]?.stringValue else { throw CryptoError(plain: "JWK without kty") }
        switch kty {
        case "EC":
            guard jwk["crv"]?.stringValue == "P-256", let x = member("x"), let y = member("y"), x.count == 32, y.count == 32 else {
                throw CryptoError(plain: "unsupported EC JWK")
            }
            let point: [UInt8] = [0x04] + x + y
            guard let pkey = point.withUnsafeBufferPointer({ lk_ec_public_from_point($0.baseAddress, $0.count) }) else {
                throw CryptoError("EC public key")
            }
            try self.init(pkey: pkey, algorithm: .es256, hasPrivateKey: false)
        case "RSA":
            guard let n = member("n"), let e = member("e") else { throw CryptoError(plain: "RSA JWK without n or e") }
            let d = member("d"), p = member("p"), q = member("q"), dp = member("dp"), dq = member("dq"), qi = member("qi")
            let parts = [n, e, d, p, q, dp, dq, qi]
            let pkey: OpaquePointer? = withBytes(parts) { b in
                lk_rsa_from_params(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7])
            }
            guard let pkey else { throw CryptoError("RSA key") }
            try self.init(pkey: pkey, algorithm: .rs256, hasPrivateKey: d != nil)
        case "OKP":
            guard jwk["crv"]?.stringValue == "Ed25519" else { throw CryptoError(plain: "unsupported OKP curve") }
            if let d = member("d") {
                guard let pkey = d.withUnsafeBufferPointer({ EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, $0.baseAddress, $0.count) }) else { throw CryptoError("Ed25519 key") }
                try self.init(pkey: pkey, algorithm: .edDSA, hasPrivateKey: true)
            } else {
                guard let x = member("x"), let pkey = x.withUnsafeBufferPointer({ EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, $0.baseAddress, $0.count) }) else {
                    throw CryptoError("Ed25519 key")
                }
                try self.init(pkey: pkey, algorithm: .edDSA, hasPrivateKey: false)
            }
        default:
            throw CryptoError(plain: "unsupported kty")
        }
    }

    public func privateKeyDER() throws -> [UInt8] {
        guard hasPrivateKey else { throw CryptoError(plain: "no private key") }
        return try exportDER { i2d_PrivateKey(pkey, $0) }
    }

    public func publicKeyDER() throws -> [UInt8] { try exportDER { i2d_PUBKEY(pkey, $0) } }

    private func exportDER(_ body: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>) -> Int32) throws -> [UInt8] {
        var buffer: UnsafeMutablePointer<UInt8>? = nil
        let len = body(&buffer)
        guard len > 0, let buffer else { throw CryptoError("DER export") }
        defer { lk_openssl_free(buffer) }
        return Array(UnsafeBufferPointer(start: buffer, count: Int(len)))
    }

    /// The public JWK members for this key (RFC 7518 §6.2.1, §6.3.1; RFC 8037 §2), unpadded base64url.
    public func publicJWKMembers() throws -> [(String, String)] {
        switch algorithm {
        case .es256:
            var point = [UInt8](repeating: 0, count: 65)
            var len = 0
            guard EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, &point, point.count, &len) == 1, len == 65 else { throw CryptoError("EC point") }
            return [("kty", "EC"), ("crv", "P-256"), ("x", Base64.urlEncode(Array(point[1..<33]))), ("y", Base64.urlEncode(Array(point[33..<65])))]
        case .rs256:
            var n = [UInt8](repeating: 0, count: 1024)
            var e = [UInt8](repeating: 0, count: 16)
            let nl = lk_rsa_param(pkey, "n", &n, Int32(n.count))
            let el = lk_rsa_param(pkey, "e", &e, Int32(e.count))
            guard nl > 0, el > 0 else { throw CryptoError("RSA parameters") }
            return [("kty", "RSA"), ("n", Base64.urlEncode(Array(n[0..<Int(nl)]))), ("e", Base64.urlEncode(Array(e[0..<Int(el)])))]
        case .edDSA:
            var raw = [UInt8](repeating: 0, count: 32)
            var len = 32
            guard EVP_PKEY_get_raw_public_key(pkey, &raw, &len) == 1, len == 32 else { throw CryptoError("Ed25519 public key") }
            return [("kty", "OKP"), ("crv", "Ed25519"), ("x", Base64.urlEncode(raw))]
        }
    }

    /// Signs `message` and returns the JWS signature bytes: raw `r || s` for
    /// ES256 (RFC 7518 §3.4), PKCS#1 v1.5 for RS256, Ed25519 for EdDSA.
    public func sign(_ message: [UInt8]) throws -> [UInt8] {
        guard hasPrivateKey else { throw CryptoError(plain: "no private key") }
        guard let ctx = EVP_MD_CTX_new() else { throw CryptoError("EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(ctx) }
        let md = algorithm == .edDSA ? nil : sha256Algorithm.md
        guard EVP_DigestSignInit(ctx, nil, md, nil, pkey) == 1 else { throw CryptoError("EVP_DigestSignInit") }
        var len = 0
        let sizeOK = message.withUnsafeBufferPointer { EVP_DigestSign(ctx, nil, &len, $0.baseAddress, $0.count) }
        guard sizeOK == 1 else { throw CryptoError("EVP_DigestSign") }
        var signature = [UInt8](repeating: 0, count: len)
        let ok = message.withUnsafeBufferPointer { m in
            signature.withUnsafeMutableBufferPointer { EVP_DigestSign(ctx, $0.baseAddress, &len, m.baseAddress, m.count) }
        }
        guard ok == 1 else { throw CryptoError("EVP_DigestSign") }
        signature.removeSubrange(len...)
        return try joseSignature(fromOpenSSL: signature)
    }

    /// OpenSSL's signature as JWS wants it: ECDSA's DER becomes raw `r || s`
    /// (RFC 7518 §3.4); the others are unchanged.
    func joseSignature(fromOpenSSL signature: [UInt8]) throws -> [UInt8] {
        guard algorithm == .es256 else { return signature }
        var raw = [UInt8](repeating: 0, count: 64)
        let converted = signature.withUnsafeBufferPointer { lk_ecdsa_der_to_raw($0.baseAddress, $0.count, &raw, 32) }
        guard converted == 1 else { throw CryptoError("ECDSA signature conversion") }
        P256Order.makeLowS(&raw)
        return raw
    }

    /// The reverse of `joseSignature`: nil for a malformed ES256 signature.
    func openSSLSignature(fromJOSE signature: [UInt8]) -> [UInt8]? {
        guard algorithm == .es256 else { return signature }
        guard signature.count == 64, !P256Order.isHigh(signature[32..<64]) else { return nil }
        var der: UnsafeMutablePointer<UInt8>? = nil
        let len = signature.withUnsafeBufferPointer { lk_ecdsa_raw_to_der($0.baseAddress, 32, &der) }
        guard len > 0, let der else { ERR_clear_error(); return nil }
        defer { lk_openssl_free(der) }
        return Array(UnsafeBufferPointer(start: der, count: Int(len)))
    }

    /// Verifies another party's signature: ECDSA in either S form (RFC 7518
    /// does not ask for low S; a client's library may sign high), folded to
    /// low S first. Latchkey's own tokens are checked strictly (`verify`).
    public func verifyEitherS(signature: [UInt8], message: [UInt8]) -> Bool {
        guard algorithm == .es256, signature.count == 64, P256Order.isHigh(signature[32..<64]) else {
            return verify(signature: signature, message: message)
        }
        var folded = signature
        folded.replaceSubrange(32..<64, with: P256Order.negate(signature[32..<64]))
        return verify(signature: folded, message: message)
    }

    /// Verifies a JWS signature over `message`; false for any malformed input.
    public func verify(signature: [UInt8], message: [UInt8]) -> Bool {
        guard let sig = openSSLSignature(fromJOSE: signature) else { return false }
        guard let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        let md = algorithm == .edDSA ? nil : sha256Algorithm.md
        guard EVP_DigestVerifyInit(ctx, nil, md, nil, pkey) == 1 else { ERR_clear_error(); return false }
        let ok = sig.withUnsafeBufferPointer { s in
            message.withUnsafeBufferPointer { m in EVP_DigestVerify(ctx, s.baseAddress, s.count, m.baseAddress, m.count) }
        }
        if ok != 1 { ERR_clear_error() }
        return ok == 1
    }
}

private func withBytes<R>(_ parts: [[UInt8]?], _ body: ([lk_bytes]) -> R) -> R {
    // Copies into one heap buffer so every pointer stays valid for the whole call.
    let total = parts.reduce(0) { $0 + ($1?.count ?? 0) }
    let storage = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(total, 1))
    defer {
        storage.update(repeating: 0)
        storage.deallocate()
    }
    var views: [lk_bytes] = []
    var offset = 0
    for part in parts {
        guard let part, !part.isEmpty else { views.append(lk_bytes(ptr: nil, len: 0)); continue }
        for (i, b) in part.enumerated() { storage[offset + i] = b }
        views.append(lk_bytes(ptr: UnsafePointer(storage.baseAddress! + offset), len: part.count))
        offset += part.count
    }
    return body(views)
}

/// The order n of the P-256 group, for ECDSA's low-S rule: big-endian
/// 32-byte scalars compared and negated modulo n without OpenSSL's BIGNUMs.
enum P256Order {
    static let n: [UInt8] = Hex.decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")!
    static let half: [UInt8] = Hex.decode("7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8")!

    /// Low-S form (SPEC 7.1) of a raw `r || s`: of the two valid signatures
    /// (r, s) and (r, n - s), always the one with s <= n/2, so a token has one signature.
    static func makeLowS(_ raw: inout [UInt8]) {
        if isHigh(raw[32..<64]) { raw.replaceSubrange(32..<64, with: negate(raw[32..<64])) }
    }

    /// Whether s > n/2 (a high-S signature).
    static func isHigh(_ s: ArraySlice<UInt8>) -> Bool {
        for (a, b) in zip(s, half) where a != b { return a > b }
        return false
    }

    /// n - s, for 0 < s < n.
    static func negate(_ s: ArraySlice<UInt8>) -> [UInt8] {
        let s = Array(s)
        var out = [UInt8](repeating: 0, count: 32)
        var borrow = 0
        for i in stride(from: 31, through: 0, by: -1) {
            var d = Int(n[i]) - Int(s[i]) - borrow
            borrow = d < 0 ? 1 : 0
            if d < 0 { d += 256 }
            out[i] = UInt8(d)
        }
        return out
    }
}

internal import COpenSSL
import Common

/// A `SigningKey` prepared for many signatures and verifications on one
/// thread. OpenSSL 3's `EVP_DigestSign*` sets up a new operation for every
/// message (name lookups under a lock, a context duplicated inside
/// `EVP_DigestSignFinal`), which costs more than the ECDSA arithmetic
/// itself. Here the sign and verify operations are initialised once
/// (`EVP_PKEY_sign_init`, `EVP_PKEY_verify_init`) and each message costs
/// one SHA-256 and one `EVP_PKEY_sign`/`EVP_PKEY_verify` on the same
/// context. The signatures are exactly those of `SigningKey.sign`.
///
/// An ES256 key goes further: the per-signature nonce work (k, r = x(kG),
/// k⁻¹: all but a few percent of a signature) is done by OpenSSL's
/// `ECDSA_sign_setup` for `nonceBatch` signatures at a time, while its
/// tables are in cache, and each message then costs `ECDSA_do_sign_ex`'s
/// s = k⁻¹(z + rd). Each prepared nonce signs one message and is cleared;
/// none leaves this thread's object.
///
/// Ed25519 signs the message itself, not a digest (RFC 8032 PureEdDSA), so
/// an EdDSA key keeps the one-shot `EVP_DigestSign` path.
///
/// Not `Sendable`: an `EVP_PKEY_CTX` must not be shared between threads.
/// Each worker thread makes its own (the key ring is per thread).
public final class PreparedKey {
    public let key: SigningKey
    private var signContext: OpaquePointer?
    private var verifyContext: OpaquePointer?
    /// ES256: OpenSSL's `EC_KEY` view of the private key, a `BN_CTX`, and
    /// the nonces prepared ahead (k⁻¹ and r of each).
    private var ecKey: OpaquePointer?
    private var bnContext: OpaquePointer?
    private var nonces: [(kinv: OpaquePointer, r: OpaquePointer)] = []
    /// Nonces prepared at once: about 20 µs each, so a refill adds at most
    /// a fraction of a millisecond to the one request that makes it.
    static let nonceBatch = 8

    public init(_ key: SigningKey) {
        self.key = key
    }

    deinit {
        if let signContext { EVP_PKEY_CTX_free(signContext) }
        if let verifyContext { EVP_PKEY_CTX_free(verifyContext) }
        for nonce in nonces {
            BN_clear_free(nonce.kinv)
            BN_clear_free(nonce.r)
        }
        if let ecKey { lk_ec_key_free(ecKey) }
        if let bnContext { BN_CTX_free(bnContext) }
    }

    public var algorithm: SignatureAlgorithm { key.algorithm }

    /// An operation context for `sign` (or verify), made on first use.
    private func context(forSigning signing: Bool) throws -> OpaquePointer {
        if let existing = signing ? signContext : verifyContext { return existing }
        guard let ctx = EVP_PKEY_CTX_new(key.pkey, nil) else { throw CryptoError("EVP_PKEY_CTX_new") }
        var ok = signing ? EVP_PKEY_sign_init(ctx) : EVP_PKEY_verify_init(ctx)
        if ok == 1 && key.algorithm == .rs256 {
            ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING)
            if ok == 1 { ok = EVP_PKEY_CTX_set_signature_md(ctx, sha256Algorithm.md) }
        }
        guard ok == 1 else {
            EVP_PKEY_CTX_free(ctx)
            throw CryptoError(signing ? "EVP_PKEY_sign_init" : "EVP_PKEY_verify_init")
        }
        if signing { signContext = ctx } else { verifyContext = ctx }
        return ctx
    }

    /// The JWS signature over `message`, as `SigningKey.sign` makes it.
    public func sign(_ message: [UInt8]) throws -> [UInt8] {
        guard key.algorithm != .edDSA else { return try key.sign(message) }
        guard key.hasPrivateKey else { throw CryptoError(plain: "no private key") }
        let digest = Digest.sha256(message)
        if key.algorithm == .es256 { return try signES256(digest: digest) }
        let ctx = try context(forSigning: true)
        var len = Int(EVP_PKEY_get_size(key.pkey))
        var signature = [UInt8](repeating: 0, count: len)
        let ok = digest.withUnsafeBufferPointer { d in
            signature.withUnsafeMutableBufferPointer { EVP_PKEY_sign(ctx, $0.baseAddress, &len, d.baseAddress, d.count) }
        }
        guard ok == 1 else { throw CryptoError("EVP_PKEY_sign") }
        signature.removeSubrange(len...)
        return try key.joseSignature(fromOpenSSL: signature)
    }

    /// The raw, low-S r || s of an ES256 signature of `digest`, with a nonce
    /// prepared ahead.
    private func signES256(digest: [UInt8]) throws -> [UInt8] {
        if ecKey == nil {
            guard let made = lk_ec_key(key.pkey) else { throw CryptoError("EVP_PKEY_get1_EC_KEY") }
            ecKey = made
        }
        if bnContext == nil {
            guard let made = BN_CTX_new() else { throw CryptoError("BN_CTX_new") }
            bnContext = made
        }
        if nonces.isEmpty {
            nonces.reserveCapacity(Self.nonceBatch)
            for _ in 0..<Self.nonceBatch {
                var kinv: OpaquePointer?
                var r: OpaquePointer?
                guard lk_ecdsa_setup(ecKey, bnContext, &kinv, &r) == 1, let kinv, let r else {
                    throw CryptoError("ECDSA_sign_setup")
                }
                nonces.append((kinv, r))
            }
        }
        let nonce = nonces.removeLast()
        defer {
            BN_clear_free(nonce.kinv)
            BN_clear_free(nonce.r)
        }
        var raw = [UInt8](repeating: 0, count: 64)
        let ok = digest.withUnsafeBufferPointer { d in
            raw.withUnsafeMutableBufferPointer { lk_ecdsa_sign_prepared(ecKey, d.baseAddress, nonce.kinv, nonce.r, $0.baseAddress) }
        }
        guard ok == 1 else { throw CryptoError("ECDSA_do_sign_ex") }
        P256Order.makeLowS(&raw)
        return raw
    }

    /// Verifies a JWS signature over `message`; false for any malformed input.
    public func verify(signature: [UInt8], message: [UInt8]) -> Bool {
        guard key.algorithm != .edDSA else { return key.verify(signature: signature, message: message) }
        guard let ctx = try? context(forSigning: false) else { ERR_clear_error(); return false }
        guard let sig = key.openSSLSignature(fromJOSE: signature) else { return false }
        let digest = Digest.sha256(message)
        let ok = sig.withUnsafeBufferPointer { s in
            digest.withUnsafeBufferPointer { d in EVP_PKEY_verify(ctx, s.baseAddress, s.count, d.baseAddress, d.count) }
        }
        if ok != 1 { ERR_clear_error() }
        return ok == 1
    }
}

/// What JWS needs of a key: its fixed algorithm, signing and verification.
public protocol JWSKey {
    var algorithm: SignatureAlgorithm { get }
    func sign(_ message: [UInt8]) throws -> [UInt8]
    func verify(signature: [UInt8], message: [UInt8]) -> Bool
}

extension SigningKey: JWSKey {}
extension PreparedKey: JWSKey {}

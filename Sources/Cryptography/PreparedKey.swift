internal import COpenSSL
import Common
import Synchronization

/// A `SigningKey` prepared for many signatures and verifications on one
/// thread. OpenSSL 3's `EVP_DigestSign*` sets up a new operation for every
/// message (name lookups under a lock, a context duplicated inside
/// `EVP_DigestSignFinal`), which costs more than the ECDSA arithmetic
/// itself. Here the sign and verify operations are initialised once
/// (`EVP_PKEY_sign_init`, `EVP_PKEY_verify_init`) and each message costs
/// one SHA-256 and one `EVP_PKEY_sign`/`EVP_PKEY_verify` on the same
/// context. The signatures are those `SigningKey.sign` makes.
///
/// With `presign` (`LATCHKEY_ES256_PRESIGN=on`; off by default), an ES256
/// key signs with nonces prepared ahead, in batches whose inversions are
/// shared (`lk_presigner` in the COpenSSL shim): about two fifths of an
/// ECDSA signature's work is two modular inversions, and a batch of 64 does
/// 128 of them as two. OpenSSL still makes every nonce, every point and
/// every `s`. Off by default because a nonce drawn before its message is
/// not hedged against two copies of one running process (README "Security").
///
/// Without presigning, an ES256 key signs through `ECDSA_do_sign_ex` on its
/// `EC_KEY` (`lk_es256_sign`): the function `EVP_PKEY_sign` reaches inside
/// OpenSSL's default provider, with the same nonce, less the provider's
/// dispatch and a DER encoding that JWS would only decode again (about 5%
/// of a client_credentials token's instructions). Under OpenSSL's FIPS mode
/// it signs through `EVP_PKEY_sign`.
///
/// Not `Sendable`: an `EVP_PKEY_CTX` must not be shared between threads.
/// Each worker thread makes its own (the key ring is per thread).
public final class PreparedKey {
    public let key: SigningKey
    private var signContext: OpaquePointer?
    private var verifyContext: OpaquePointer?
    private var presigner: UnsafeMutablePointer<lk_presigner>?
    /// The ES256 key's `EC_KEY` for `lk_es256_sign`, made on first use; `directTried` once that was attempted.
    private var ecKey: OpaquePointer?
    private var directTried = false
    /// False when presigning is off, or once a presigner could not be made for this key (OpenSSL in FIPS mode, or
    /// a key its provider does not hand out as an `EC_KEY`): it then signs as an ES256 key without presigning does.
    private var presigning: Bool

    /// `presign`: whether an ES256 key may sign with nonces prepared ahead (`LATCHKEY_ES256_PRESIGN`).
    public init(_ key: SigningKey, presign: Bool = false) {
        self.key = key
        self.presigning = presign
    }

    deinit {
        if let signContext { EVP_PKEY_CTX_free(signContext) }
        if let verifyContext { EVP_PKEY_CTX_free(verifyContext) }
        lk_presigner_free(presigner)
        if let ecKey { EC_KEY_free(ecKey) }
    }

    public var algorithm: SignatureAlgorithm { key.algorithm }

    /// ES256 nonces prepared so far and not yet used: still in a batch being filled, and ready (tests).
    var preparedNonces: (pending: Int, ready: Int) {
        guard let presigner else { return (0, 0) }
        return (Int(presigner.pointee.pending), Int(presigner.pointee.ready))
    }

    /// Signatures OpenSSL made afresh although a prepared pair was taken: a pair that did not work (tests).
    var presignFallbacks: Int { presigner.map { Int($0.pointee.fallbacks) } ?? 0 }

    /// Whether ES256 signatures go through `lk_es256_sign` rather than `EVP_PKEY_sign` (tests).
    var signsDirectly: Bool { directES256Key() != nil }

    /// The r of the prepared pair the next signature would take, if one is ready (tests).
    var nextPreparedR: [UInt8]? {
        guard let presigner else { return nil }
        var r = [UInt8](repeating: 0, count: 32)
        return lk_presigner_next_r(presigner, &r) == 1 ? r : nil
    }

    private static let presigned = Atomic<Int>(0)

    /// ES256 signatures this process made from prepared pairs (`latchkey_es256_presigned_total`).
    public static var presignedSignatures: Int { presigned.load(ordering: .relaxed) }

    /// Makes the presigner believe it was made in another process, as a forked child would find (tests).
    func pretendForked() { presigner?.pointee.pid = 1 }

    /// Moves the ready batch's start (and the one being filled, with `pendingToo`) `seconds` into the past (tests).
    func pretendPrepared(secondsAgo seconds: Int, pendingToo: Bool) {
        presigner?.pointee.ready_since -= Int64(seconds) * 1_000_000_000
        if pendingToo { presigner?.pointee.pending_since -= Int64(seconds) * 1_000_000_000 }
    }

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

    /// The ES256 presigner, made on first use; nil if none can be made for this key.
    private func preparedSigner() -> UnsafeMutablePointer<lk_presigner>? {
        if presigner == nil && presigning {
            presigner = lk_presigner_new(key.pkey)
            if presigner == nil {
                ERR_clear_error()
                presigning = false
            }
        }
        return presigner
    }

    /// The ES256 key's `EC_KEY` for `lk_es256_sign`; nil under FIPS (or for a key not handed out as one).
    private func directES256Key() -> OpaquePointer? {
        if !directTried {
            directTried = true
            ecKey = lk_es256_signing_key(key.pkey)
            if ecKey == nil { ERR_clear_error() }
        }
        return ecKey
    }

    /// The JWS signature over `message`, as `SigningKey.sign` makes it.
    public func sign(_ message: [UInt8]) throws -> [UInt8] {
        guard key.algorithm != .edDSA else { return try key.sign(message) }
        guard key.hasPrivateKey else { throw CryptoError(plain: "no private key") }
        let digest = Digest.sha256(message)
        if key.algorithm == .es256, let presigner = preparedSigner() {
            var raw = [UInt8](repeating: 0, count: 64)
            let made = lk_presigner_sign(presigner, digest, &raw)
            guard made > 0 else { throw CryptoError("ECDSA_do_sign_ex") }
            if made == 2 { PreparedKey.presigned.add(1, ordering: .relaxed) }
            P256Order.makeLowS(&raw)
            return raw
        }
        if key.algorithm == .es256, let ecKey = directES256Key() {
            var raw = [UInt8](repeating: 0, count: 64)
            guard lk_es256_sign(ecKey, digest, nil, nil, &raw) == 1 else { throw CryptoError("ECDSA_do_sign_ex") }
            P256Order.makeLowS(&raw)
            return raw
        }
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

    /// Signatures this key was asked to verify (tests: what a request costs).
    private(set) var verifications = 0

    /// Verifies a JWS signature over `message`; false for any malformed input.
    public func verify(signature: [UInt8], message: [UInt8]) -> Bool {
        verifications += 1
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

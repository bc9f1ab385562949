internal import COpenSSL
import Common
#if canImport(Glibc)
import Glibc
#endif

/// The operating system's CSPRNG: `getrandom(2)`, which never returns
/// before the kernel's pool is seeded, and OpenSSL's `RAND_bytes` should
/// it fail. (OpenSSL 3's DRBG costs several microseconds per call under
/// locks; the system call is cheaper for the small values drawn per
/// request: token ids, codes, secrets.)
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return out }
        let filled = out.withUnsafeMutableBytes { buffer -> Bool in
            var offset = 0
            while offset < buffer.count {
                let n = lk_getrandom(buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += n
            }
            return true
        }
        if filled { return out }
        let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        // Without randomness no secret or key can be made safely: stop rather than go on.
        precondition(ok == 1, "no randomness: getrandom and RAND_bytes failed")
        return out
    }
}

/// SHA-256 fetched from the default provider once: OpenSSL 3's implicit
/// fetch (`EVP_sha256()` in a call) looks the algorithm up by name, under a
/// lock, on every use.
///
/// `@unchecked Sendable`: a fetched `EVP_MD` is immutable and may be used
/// from any thread.
final class FetchedDigest: @unchecked Sendable {
    let md: OpaquePointer
    init(_ name: String) {
        guard let md = EVP_MD_fetch(nil, name, nil) else { preconditionFailure("OpenSSL has no \(name)") }
        self.md = md
    }
}

let sha256Algorithm = FetchedDigest("SHA256")
let sha512Algorithm = FetchedDigest("SHA512")

public enum Digest {
    public static func sha256(_ data: [UInt8]) -> [UInt8] { digest(data, sha256Algorithm, size: 32) }

    public static func sha256(_ text: String) -> [UInt8] { sha256(Array(text.utf8)) }

    public static func sha512(_ data: [UInt8]) -> [UInt8] { digest(data, sha512Algorithm, size: 64) }

    /// One-shot `EVP_Digest` with a digest fetched once per process.
    private static func digest(_ data: [UInt8], _ algorithm: FetchedDigest, size: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        var len: UInt32 = 0
        let ok = data.withUnsafeBufferPointer { input in
            out.withUnsafeMutableBufferPointer { EVP_Digest(input.baseAddress, input.count, $0.baseAddress, &len, algorithm.md, nil) }
        }
        precondition(ok == 1 && Int(len) == size, "digest failed")
        return out
    }

    /// HMAC-SHA-256 (RFC 2104): H((K ^ opad) || H((K ^ ipad) || text)),
    /// built on the pre-fetched SHA-256; RFC 4231's vectors are in the tests.
    public static func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
        HMACKey(key: key).mac(data)
    }

    /// Compares in time that depends only on the length, never on where the
    /// bytes first differ (`CRYPTO_memcmp`).
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else {
            _ = a.withUnsafeBytes { x in CRYPTO_memcmp(x.baseAddress, x.baseAddress, x.count) }
            return false
        }
        if a.isEmpty { return true }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, x.count) } } == 0
    }
}

/// scrypt (RFC 7914) password hashing through `EVP_PBE_scrypt`, encoded as
/// `$scrypt$ln=14,r=8,p=5$<salt b64>$<hash b64>`. The default is one of
/// OWASP's equivalent scrypt settings (N=2^14, r=8, p=5): the same work as
/// N=2^17 with 16 MiB of memory per hash instead of 128 MiB, which keeps a
/// worker's memory small while sign-ins run in parallel.
public enum PasswordHasher {
    public static let defaultLogN = 14
    public static let defaultP = 5

    public static func hash(_ password: String, logN: Int = defaultLogN, r: Int = 8, p: Int = defaultP) -> String {
        let salt = SecureRandom.bytes(16)
        let key = derive(Array(password.utf8), salt: salt, logN: logN, r: r, p: p)!
        return "$scrypt$ln=\(logN),r=\(r),p=\(p)$\(Base64.encode(salt))$\(Base64.encode(key))"
    }

    public static func verify(_ password: String, encoded: String) -> Bool {
        let parts = encoded.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].isEmpty, parts[1] == "scrypt" else { return false }
        var params: [String: Int] = [:]
        for kv in parts[2].split(separator: ",") {
            let pair = kv.split(separator: "=")
            guard pair.count == 2, let v = Int(pair[1]) else { return false }
            params[String(pair[0])] = v
        }
        guard let logN = params["ln"], let r = params["r"], let p = params["p"],
              (10...20).contains(logN), (1...16).contains(r), (1...16).contains(p),
              let salt = Base64.decode(String(parts[3])), let expected = Base64.decode(String(parts[4])),
              expected.count == 32,
              let actual = derive(Array(password.utf8), salt: salt, logN: logN, r: r, p: p)
        else { return false }
        return Digest.constantTimeEqual(actual, expected)
    }

    static func derive(_ password: [UInt8], salt: [UInt8], logN: Int, r: Int, p: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 32)
        let n = UInt64(1) << UInt64(logN)
        let maxmem = UInt64(128) * n * UInt64(r) * 2 + UInt64(128) * UInt64(r) * UInt64(p) + 1 << 20
        let terminated = password.map { CChar(bitPattern: $0) } + [0]
        let ok = terminated.withUnsafeBufferPointer { pw in
            salt.withUnsafeBufferPointer { s in
                out.withUnsafeMutableBufferPointer { o in
                    EVP_PBE_scrypt(pw.baseAddress, password.count, s.baseAddress, s.count, n, UInt64(r), UInt64(p), maxmem, o.baseAddress, 32)
                }
            }
        }
        if ok != 1 {
            _ = CryptoError("scrypt")
            return nil
        }
        return out
    }
}

/// AES-256-GCM sealing for data at rest (signing keys, upstream client
/// secrets): output is nonce (12) || ciphertext || tag (16), a fresh random
/// nonce per seal (NIST SP 800-38D §8.2.2; far below 2^32 seals per key).
public enum SealedBox {
    static let nonceSize = 12
    static let tagSize = 16

    public static func seal(_ plaintext: [UInt8], key: [UInt8]) throws -> [UInt8] {
        try seal(plaintext, key: key, nonce: SecureRandom.bytes(nonceSize))
    }

    /// With a given nonce: for the known-answer tests only (a nonce is never reused).
    static func seal(_ plaintext: [UInt8], key: [UInt8], nonce: [UInt8]) throws -> [UInt8] {
        guard key.count == 32, nonce.count == nonceSize else { throw CryptoError(plain: "AES-256-GCM needs a 32-byte key and a 12-byte nonce") }
        guard plaintext.count <= Int(Int32.max) - tagSize else { throw CryptoError(plain: "plaintext too long") }
        let cipher = try CipherContext()
        var out = [UInt8](repeating: 0, count: plaintext.count + tagSize)
        let sealed = key.withUnsafeBufferPointer { k in nonce.withUnsafeBufferPointer { iv in plaintext.withUnsafeBufferPointer { pt in
            out.withUnsafeMutableBufferPointer { o -> Bool in
                var written: Int32 = 0, finished: Int32 = 0
                guard let o = o.baseAddress, EVP_EncryptInit_ex(cipher.ctx, EVP_aes_256_gcm(), nil, k.baseAddress, iv.baseAddress) == 1 else { return false }
                if pt.count > 0 && EVP_EncryptUpdate(cipher.ctx, o, &written, pt.baseAddress, Int32(pt.count)) != 1 { return false }
                guard EVP_EncryptFinal_ex(cipher.ctx, o + Int(written), &finished) == 1, Int(written + finished) == pt.count else { return false }
                return EVP_CIPHER_CTX_ctrl(cipher.ctx, EVP_CTRL_GCM_GET_TAG, Int32(tagSize), o + pt.count) == 1
            }
        } } }
        guard sealed else { throw CryptoError("AES-GCM seal") }
        return nonce + out
    }

    public static func open(_ sealed: [UInt8], key: [UInt8]) throws -> [UInt8] {
        guard key.count == 32, sealed.count >= nonceSize + tagSize, sealed.count <= Int(Int32.max) else {
            throw CryptoError(plain: "sealed data too short or key of wrong size")
        }
        let length = sealed.count - nonceSize - tagSize
        let cipher = try CipherContext()
        var out = [UInt8](repeating: 0, count: length + tagSize)
        let opened = key.withUnsafeBufferPointer { k in sealed.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o -> Bool in
                var written: Int32 = 0, finished: Int32 = 0
                guard let o = o.baseAddress, let iv = s.baseAddress else { return false }
                let body = iv + nonceSize, tag = body + length
                guard EVP_DecryptInit_ex(cipher.ctx, EVP_aes_256_gcm(), nil, k.baseAddress, iv) == 1 else { return false }
                if length > 0 && EVP_DecryptUpdate(cipher.ctx, o, &written, body, Int32(length)) != 1 { return false }
                // OpenSSL takes the expected tag through a non-const pointer; it only reads it.
                guard EVP_CIPHER_CTX_ctrl(cipher.ctx, EVP_CTRL_GCM_SET_TAG, Int32(tagSize), UnsafeMutableRawPointer(mutating: tag)) == 1 else { return false }
                // The tag is checked here: a wrong key or a changed byte fails.
                return EVP_DecryptFinal_ex(cipher.ctx, o + Int(written), &finished) == 1 && Int(written + finished) == length
            }
        } }
        guard opened else { throw CryptoError("AES-GCM open (wrong key or corrupted data)") }
        return Array(out[0..<length])
    }

    /// An EVP cipher context freed with its owner.
    private final class CipherContext {
        let ctx: OpaquePointer
        init() throws {
            guard let ctx = EVP_CIPHER_CTX_new() else { throw CryptoError("cipher context") }
            self.ctx = ctx
        }
        deinit { EVP_CIPHER_CTX_free(ctx) }
    }
}

/// HMAC-SHA-256 under one fixed key, with the key's inner and outer blocks
/// absorbed once: each MAC copies the two prepared SHA-256 states instead
/// of hashing the padded key again (`Digest.hmacSHA256` is the one-off form).
///
/// `@unchecked Sendable`: the two prepared contexts are never changed after
/// init; each MAC copies them (`EVP_MD_CTX_copy_ex` only reads its source).
public final class HMACKey: @unchecked Sendable {
    private let inner: OpaquePointer
    private let outer: OpaquePointer

    public init(key: [UInt8]) {
        var block = key.count > 64 ? Digest.sha256(key) : key
        block += [UInt8](repeating: 0, count: 64 - block.count)
        func prepared(_ pad: UInt8) -> OpaquePointer {
            guard let ctx = EVP_MD_CTX_new() else { preconditionFailure("EVP_MD_CTX_new failed") }
            let padded = block.map { $0 ^ pad }
            let ok = EVP_DigestInit_ex(ctx, sha256Algorithm.md, nil) == 1
                && padded.withUnsafeBufferPointer { EVP_DigestUpdate(ctx, $0.baseAddress, $0.count) } == 1
            precondition(ok, "SHA-256 init failed")
            return ctx
        }
        inner = prepared(0x36)
        outer = prepared(0x5c)
    }

    deinit {
        EVP_MD_CTX_free(inner)
        EVP_MD_CTX_free(outer)
    }

    public func mac(_ data: [UInt8]) -> [UInt8] {
        guard let ctx = EVP_MD_CTX_new() else { preconditionFailure("EVP_MD_CTX_new failed") }
        defer { EVP_MD_CTX_free(ctx) }
        var innerHash = [UInt8](repeating: 0, count: 32)
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        let ok = EVP_MD_CTX_copy_ex(ctx, inner) == 1
            && data.withUnsafeBufferPointer { EVP_DigestUpdate(ctx, $0.baseAddress, $0.count) } == 1
            && innerHash.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(ctx, $0.baseAddress, &len) } == 1
            && EVP_MD_CTX_copy_ex(ctx, outer) == 1
            && innerHash.withUnsafeBufferPointer { EVP_DigestUpdate(ctx, $0.baseAddress, $0.count) } == 1
            && out.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(ctx, $0.baseAddress, &len) } == 1
        precondition(ok && len == 32, "HMAC-SHA-256 failed")
        return out
    }
}

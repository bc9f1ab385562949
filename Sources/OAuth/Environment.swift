import Common
import Cryptography

/// Everything a request may depend on besides its own input: the issuer,
/// the clock, the random source and key generation (closures, so tests fix
/// them), and the server's keys. Immutable and shared by every worker thread.
public struct Environment: Sendable {
    /// The issuer identifier (RFC 8414 §2): an https (or local http) origin, no trailing slash.
    public var issuer: String
    /// Epoch milliseconds.
    public var now: @Sendable () -> Int64
    public var random: @Sendable (Int) -> [UInt8]
    /// Makes a new signing key (OpenSSL's generator; tests reuse keys, an RSA key costing ~0.1 s).
    public var makeKey: @Sendable (SignatureAlgorithm) throws -> SigningKey = { try SigningKey.generate($0) }
    /// Key-encryption key for private material at rest (32 bytes), if configured.
    public var kek: [UInt8]?
    /// When true, a confidential client may authenticate with either
    /// client_secret_basic or client_secret_post, whatever it registered.
    public var acceptAnySecretMethod: Bool
    /// Whether DPoP proofs must carry a server-provided nonce (RFC 9449 §8, §9; `serve --dpop-nonces`).
    public var dpopNonces = false
    /// Whether ES256 keys sign with nonces prepared ahead in batches (`PreparedKey`; `LATCHKEY_ES256_PRESIGN=on`):
    /// off by default, as no running copy of the process may ever be restored or cloned with it on.
    public var presignES256 = false

    public init(issuer: String, now: @escaping @Sendable () -> Int64, random: @escaping @Sendable (Int) -> [UInt8] = SecureRandom.bytes,
                kek: [UInt8]? = nil, acceptAnySecretMethod: Bool = false) {
        self.issuer = issuer
        self.now = now
        self.random = random
        self.kek = kek
        self.acceptAnySecretMethod = acceptAnySecretMethod
    }

    public var nowSeconds: Int64 { now() / 1000 }

    /// `count` characters of lowercase base32, uniformly random.
    public func randomID(_ count: Int) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)
        return String(decoding: random(count).map { alphabet[Int($0 & 31)] }, as: UTF8.self)
    }

    /// An opaque token: `prefix` + base64url of `bytes` random bytes.
    public func randomToken(prefix: String = "", bytes: Int = 32) -> String {
        prefix + Base64.urlEncode(random(bytes))
    }
}


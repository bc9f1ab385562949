import Common
import Cryptography

/// JWS Compact Serialization (RFC 7515 §7.1) for JWTs (RFC 7519).
public enum JWS {
    /// Signs `payload` with `key`; the header gets `alg` from the key (never
    /// from the caller), then `typ` and `kid` when given.
    public static func sign(payload: JSON, key: some JWSKey, kid: String?, typ: String?) throws -> String {
        try sign(serializedPayload: payload.serialized(), key: key, kid: kid, typ: typ)
    }

    /// `sign` for a payload already serialized (an access token's claims, written without a `JSON` tree).
    public static func sign(serializedPayload payload: [UInt8], key: some JWSKey, kid: String?, typ: String?) throws -> String {
        try sign(serializedPayload: payload, key: key, encodedHeader: encodedHeader(algorithm: key.algorithm, kid: kid, typ: typ))
    }

    /// The protected header `sign` writes, base64url-encoded (RFC 7515 §7.1):
    /// a signer that uses one header for many tokens keeps it.
    public static func encodedHeader(algorithm: SignatureAlgorithm, kid: String?, typ: String?) -> [UInt8] {
        var header = JSONObjectWriter(capacity: 96)
        header.string("alg", algorithm.rawValue)
        if let typ { header.string("typ", typ) }
        if let kid { header.string("kid", kid) }
        var encoded: [UInt8] = []
        Base64.urlEncode(header.finish(), into: &encoded)
        return encoded
    }

    /// `sign` with a header from `encodedHeader`, which must name `key`'s own
    /// algorithm and kid (`KeyRing.accessTokenSigner` keeps one per key):
    /// package only, as the public `sign` takes the algorithm from the key.
    package static func sign(serializedPayload payload: [UInt8], key: some JWSKey, encodedHeader: [UInt8]) throws -> String {
        var token: [UInt8] = []
        // Header, payload and a signature of up to 512 bytes (RS256 with a 4096-bit key), base64url: no regrowth.
        token.reserveCapacity(encodedHeader.count + (payload.count + 512) / 3 * 4 + 8)
        token.append(contentsOf: encodedHeader)
        token.append(UInt8(ascii: "."))
        Base64.urlEncode(payload, into: &token)
        let signature = try key.sign(token)
        token.append(UInt8(ascii: "."))
        Base64.urlEncode(signature, into: &token)
        return String(decoding: token, as: UTF8.self)
    }

    /// A parsed, not yet verified, compact JWS.
    public struct Parsed: Sendable {
        public let header: JSON
        public let payload: JSON
        public let signingInput: [UInt8]
        public let signature: [UInt8]

        public var algorithm: String? { header["alg"]?.stringValue }
        public var kid: String? { header["kid"]?.stringValue }
        public var typ: String? { header["typ"]?.stringValue }
    }

    /// Splits and decodes a compact JWS. Strict: three parts, canonical
    /// base64url, a JSON object header and payload; nil otherwise.
    public static func parse(_ token: String, maxLength: Int = 16384) -> Parsed? {
        guard token.utf8.count <= maxLength else { return nil }
        // Split as bytes: String.split walks grapheme clusters, which cost more than the rest of the parse.
        let bytes = Array(token.utf8)
        guard let first = bytes.firstIndex(of: 0x2E), let second = bytes[(first + 1)...].firstIndex(of: 0x2E),
              !bytes[(second + 1)...].contains(0x2E),
              let headerBytes = Base64.urlDecode(bytes: bytes[..<first]),
              let payloadBytes = Base64.urlDecode(bytes: bytes[(first + 1)..<second]),
              let signature = Base64.urlDecode(bytes: bytes[(second + 1)...]),
              let header = try? JSON.parse(headerBytes, maxDepth: 4), header.objectValue != nil,
              let payload = try? JSON.parse(payloadBytes, maxDepth: 8), payload.objectValue != nil
        else { return nil }
        return Parsed(header: header, payload: payload, signingInput: Array(bytes[..<second]), signature: signature)
    }

    /// Verifies with a key whose algorithm was fixed when it was loaded: the
    /// header's `alg` must name exactly that algorithm (RFC 8725 §3.1), so
    /// `none` and algorithm confusion are refused. Any `crit` header is
    /// unsupported and refused (RFC 7515 §4.1.11).
    public static func verify(_ parsed: Parsed, key: some JWSKey) -> Bool {
        guard parsed.algorithm == key.algorithm.rawValue, parsed.header["crit"] == nil else { return false }
        return key.verify(signature: parsed.signature, message: parsed.signingInput)
    }

    /// `verify` for a JWS another party signed (a client assertion, a DPoP
    /// proof): the same header rules, ECDSA signatures in either S form.
    public static func verifyForeign(_ parsed: Parsed, key: SigningKey) -> Bool {
        guard parsed.algorithm == key.algorithm.rawValue, parsed.header["crit"] == nil else { return false }
        return key.verifyEitherS(signature: parsed.signature, message: parsed.signingInput)
    }
}

/// JSON Web Keys (RFC 7517).
public enum JWK {
    /// The public JWK of a key, with `kid`, `use: sig` and `alg`.
    public static func publicJWK(_ key: SigningKey, kid: String) throws -> JSON {
        var members: [(String, JSON)] = try key.publicJWKMembers().map { ($0.0, JSON.string($0.1)) }
        members.append(("kid", .string(kid)))
        members.append(("use", "sig"))
        members.append(("alg", .string(key.algorithm.rawValue)))
        return .object(members)
    }

    /// The RFC 7638 thumbprint of a public key (base64url SHA-256 of the
    /// required members in lexicographic order).
    public static func thumbprint(_ key: SigningKey) throws -> String {
        let members = Dictionary(uniqueKeysWithValues: try key.publicJWKMembers())
        let required: [String]
        switch key.algorithm {
        case .es256: required = ["crv", "kty", "x", "y"]
        case .rs256: required = ["e", "kty", "n"]
        case .edDSA: required = ["crv", "kty", "x"]
        }
        let canonical = JSON.object(required.map { ($0, JSON.string(members[$0] ?? "")) })
        return Base64.urlEncode(Digest.sha256(canonical.serialized()))
    }
}

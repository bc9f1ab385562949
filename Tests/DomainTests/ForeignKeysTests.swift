import Common
import Cryptography
import JOSE
@testable import OAuth
import Testing

/// The cache of other parties' public keys (DPoP proof keys, registered
/// `private_key_jwt` keys) holds a key once, by what makes it the key.
@Suite struct ForeignKeysTests {
    /// The key's thumbprint, with every signature check passing.
    func thumbprint(_ cache: ForeignKeys, _ jwk: JSON) -> String? { cache.verify(jwk) { _ in true } }

    /// Review, session 25: a key is remembered only once a signature verified with it, so proofs under keys made up
    /// for each and signed by nobody do not push out the keys clients use.
    @Test func aKeyIsRememberedOnlyOnceASignatureVerifiedWithIt() throws {
        let cache = ForeignKeys(capacity: 16)
        let jwk = try JWK.publicJWK(try SigningKey.generate(.es256), kid: "k")
        #expect(cache.verify(jwk) { _ in false } == nil)
        #expect(cache.count == 0)
        let known = try #require(thumbprint(cache, jwk))
        #expect(cache.count == 1)
        // Remembered, it is still checked each time: a failing signature is refused.
        #expect(cache.verify(jwk) { _ in false } == nil && thumbprint(cache, jwk) == known)
        for _ in 0..<40 { _ = cache.verify(try JWK.publicJWK(try SigningKey.generate(.es256), kid: "k")) { _ in false } }
        #expect(cache.count == 1)
    }

    /// One key sent with a different extra member each time (anyone naming a public client can send DPoP proofs)
    /// is one small entry, not one entry of kilobytes per variant (review, session 20).
    @Test func aKeyPaddedDifferentlyIsHeldOnce() throws {
        let cache = ForeignKeys(capacity: 16)
        let key = try SigningKey.generate(.es256)
        let jwk = try JWK.publicJWK(key, kid: "k")
        let first = try #require(thumbprint(cache, jwk))
        for i in 0..<100 {
            var padded = jwk
            padded.set("pad", .string(String(repeating: "p", count: 5_000) + "\(i)"))
            padded.set("kid", .string("kid-\(i)"))
            #expect(thumbprint(cache, padded) == first)
        }
        #expect(cache.count == 1)
        // Another key is another entry; a JWK with a private member is no foreign key.
        let other = try SigningKey.generate(.es256)
        #expect(thumbprint(cache, try JWK.publicJWK(other, kid: "k")) != first)
        #expect(cache.count == 2)
        // Members the key's type does not read, holding anything, neither make entries nor meet another key's
        // (independent review, session 20: with "." as a joiner, {"n":".","x":X} and {"x":"."+X} were one entry).
        var stray = jwk
        stray.set("n", .string("."))
        stray.set("e", .string(String(repeating: "A", count: 5_000)))
        #expect(thumbprint(cache, stray) == first)
        #expect(cache.count == 2)
        var malformed = jwk
        malformed.set("x", .string("." + (jwk["x"]?.stringValue ?? "")))
        #expect(thumbprint(cache, malformed) == nil)
        #expect(ForeignKeys.identity(["kty": "EC", "crv": "P-256", "x": "a.b", "y": "c"]) != ForeignKeys.identity(["kty": "EC", "crv": "P-256", "x": "a", "y": "b.c"]))
        #expect(ForeignKeys.identity(["kty": "oct", "k": "c2VjcmV0"]) == nil)
        var withPrivate = jwk
        withPrivate.set("d", .string(Base64.urlEncode(Array(repeating: 1, count: 32))))
        #expect(thumbprint(cache, withPrivate) == nil)
        // Full, it starts over.
        for _ in 0..<20 { _ = thumbprint(cache, try JWK.publicJWK(try SigningKey.generate(.es256), kid: "k")) }
        #expect(cache.count <= 16)
    }
}

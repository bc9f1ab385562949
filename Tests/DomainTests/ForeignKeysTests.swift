import Common
import Cryptography
import JOSE
@testable import OAuth
import Testing

/// The cache of other parties' public keys (DPoP proof keys, registered
/// `private_key_jwt` keys) holds a key once, by what makes it the key.
@Suite struct ForeignKeysTests {
    /// One key sent with a different extra member each time (anyone naming a public client can send DPoP proofs)
    /// is one small entry, not one entry of kilobytes per variant (review, session 20).
    @Test func aKeyPaddedDifferentlyIsHeldOnce() throws {
        let cache = ForeignKeys(capacity: 16)
        let key = try SigningKey.generate(.es256)
        let jwk = try JWK.publicJWK(key, kid: "k")
        let first = try #require(cache.key(jwk))
        for i in 0..<100 {
            var padded = jwk
            padded.set("pad", .string(String(repeating: "p", count: 5_000) + "\(i)"))
            padded.set("kid", .string("kid-\(i)"))
            #expect(cache.key(padded)?.thumbprint == first.thumbprint)
        }
        #expect(cache.count == 1)
        // Another key is another entry; a JWK with a private member is no foreign key.
        let other = try SigningKey.generate(.es256)
        #expect(cache.key(try JWK.publicJWK(other, kid: "k"))?.thumbprint != first.thumbprint)
        #expect(cache.count == 2)
        // Members the key's type does not read, holding anything, neither make entries nor meet another key's
        // (independent review, session 20: with "." as a joiner, {"n":".","x":X} and {"x":"."+X} were one entry).
        var stray = jwk
        stray.set("n", .string("."))
        stray.set("e", .string(String(repeating: "A", count: 5_000)))
        #expect(cache.key(stray)?.thumbprint == first.thumbprint)
        #expect(cache.count == 2)
        var malformed = jwk
        malformed.set("x", .string("." + (jwk["x"]?.stringValue ?? "")))
        #expect(cache.key(malformed) == nil)
        #expect(ForeignKeys.identity(["kty": "EC", "crv": "P-256", "x": "a.b", "y": "c"]) != ForeignKeys.identity(["kty": "EC", "crv": "P-256", "x": "a", "y": "b.c"]))
        #expect(ForeignKeys.identity(["kty": "oct", "k": "c2VjcmV0"]) == nil)
        var withPrivate = jwk
        withPrivate.set("d", .string(Base64.urlEncode(Array(repeating: 1, count: 32))))
        #expect(cache.key(withPrivate) == nil)
        // Full, it starts over.
        for _ in 0..<20 { _ = cache.key(try JWK.publicJWK(try SigningKey.generate(.es256), kid: "k")) }
        #expect(cache.count <= 16)
    }
}

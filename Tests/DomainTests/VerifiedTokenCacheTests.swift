import Common
@testable import OAuth
import TestSupport
import Testing

/// The worker's cache of verified access tokens is bounded by the tokens'
/// bytes as well as by their count (attacker review, session 24: tokens of
/// 16 KB of scopes, introspected, kept 4,096 entries of 30 KB a thread).
@Suite struct VerifiedTokenCacheTests {
    static func claims(_ jti: String, expiresAt: Int64 = 2_000_000_000) -> AccessTokenClaims {
        AccessTokenClaims(issuer: "https://issuer.example", subject: "c", audience: "https://issuer.example", clientID: "c", scope: [],
                          issuedAt: 0, expiresAt: expiresAt, jti: jti, authTime: nil, grantID: nil, generation: 0, jkt: nil)
    }

    @Test func largeTokensStartTheCacheOverAtItsByteBound() {
        let cache = VerifiedTokenCache(capacity: 4096, maxBytes: 64 * 1024)
        let large = (0..<20).map { "\($0)-" + String(repeating: "t", count: 16 * 1024 - 4) }
        for (i, token) in large.enumerated() {
            cache.insert(token, Self.claims("j\(i)"))
            #expect(cache.bytes <= 64 * 1024, "\(i): \(cache.bytes) bytes held")
            #expect(cache.claims(token, now: 0)?.jti == "j\(i)")
        }
        #expect(cache.count <= 4)
        // The same token again counts once.
        let small = "small-token"
        cache.insert(small, Self.claims("s"))
        let held = cache.bytes
        cache.insert(small, Self.claims("s"))
        #expect(cache.bytes == held)
        // An expired entry leaves, and its bytes with it.
        cache.insert("expiring", Self.claims("e", expiresAt: 10))
        #expect(cache.claims("expiring", now: 10) == nil)
        #expect(cache.bytes == held)
    }

    @Test func manySmallTokensStartTheCacheOverAtItsCount() {
        let cache = VerifiedTokenCache(capacity: 100, maxBytes: 1 << 20)
        for i in 0..<250 { cache.insert("token-\(i)", Self.claims("j\(i)")) }
        #expect(cache.count <= 100 && cache.count > 0)
        #expect(cache.bytes == (0..<250).suffix(cache.count).reduce(0) { $0 + "token-\($1)".utf8.count })
    }
}

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

    @Test func tokensStartTheCacheOverAtItsByteBoundCountingTheirScopes() {
        let cache = VerifiedTokenCache(capacity: 4096, maxBytes: 64 * 1024)
        // 4 KB tokens of 100 scopes each: about 6 KB an entry, so ten fit.
        let scope = (0..<100).map { "s\($0)" }
        let tokens = (0..<40).map { "\($0)-" + String(repeating: "t", count: 4000) }
        for (i, token) in tokens.enumerated() {
            var claims = Self.claims("j\(i)")
            claims.scope = scope
            cache.insert(token, claims)
            #expect(cache.bytes <= 64 * 1024, "\(i): \(cache.bytes) bytes held")
            #expect(cache.claims(token, now: 0)?.jti == "j\(i)")
        }
        #expect(cache.count <= 10 && cache.count >= 1)
        // A token over the bound is not kept at all (a few such would empty everyone else's entries).
        let huge = String(repeating: "h", count: VerifiedTokenCache.maxTokenBytes + 1)
        let held = cache.bytes
        cache.insert(huge, Self.claims("h"))
        #expect(cache.claims(huge, now: 0) == nil && cache.bytes == held)
        // The same token again counts once.
        let small = "small-token"
        cache.insert(small, Self.claims("s"))
        let withSmall = cache.bytes
        cache.insert(small, Self.claims("s"))
        #expect(cache.bytes == withSmall)
        // An expired entry leaves, and its bytes with it.
        cache.insert("expiring", Self.claims("e", expiresAt: 10))
        #expect(cache.claims("expiring", now: 10) == nil)
        #expect(cache.bytes == withSmall)
    }

    @Test func manySmallTokensStartTheCacheOverAtItsCount() {
        let cache = VerifiedTokenCache(capacity: 100, maxBytes: 1 << 20)
        for i in 0..<250 { cache.insert("token-\(i)", Self.claims("j\(i)")) }
        #expect(cache.count <= 100 && cache.count > 0)
        #expect(cache.bytes == (0..<250).suffix(cache.count).reduce(0) { $0 + "token-\($1)".utf8.count })
    }
}

import Common
import Cryptography
import JOSE
@testable import OAuth
import SharedSQL
import TestSupport
import Testing

/// Proof ids seen, as the store records them (a set, for tests over plain values).
final class SeenProofs {
    var ids = Set<String>()
    func use(_ jkt: String, _ jti: String, _ expiresAt: Int64) -> Bool { ids.insert(jkt + " " + jti).inserted }
}

/// RFC 9449 §4.3's proof checks over plain values.
@Suite struct DPoPTests {
    static let url = "https://auth.example.test/oauth2/token"
    static let now: Int64 = 1_796_000_000_000

    /// A proof as a client library makes one: its public key in the header.
    static func proof(_ key: SigningKey, jwk: JSON? = nil, typ: String = "dpop+jwt", alg: String? = nil, claims: [String: JSON?] = [:]) throws -> String {
        var payload: [(String, JSON)] = [("jti", .string(Base64.urlEncode(SecureRandom.bytes(12)))), ("htm", "POST"), ("htu", .string(url)),
                                         ("iat", .int(now / 1000))]
        for (name, value) in claims {
            payload.removeAll { $0.0 == name }
            if let value { payload.append((name, value)) }
        }
        let header: JSON = ["typ": .string(typ), "alg": .string(alg ?? key.algorithm.rawValue), "jwk": try jwk ?? JWK.publicJWK(key, kid: "k")]
        let input = Base64.urlEncode(header.serialized()) + "." + Base64.urlEncode(JSON.object(payload).serialized())
        return input + "." + Base64.urlEncode(try key.sign(Array(input.utf8)))
    }

    func verify(_ proof: String, method: String = "POST", url: String = DPoPTests.url, token: String? = nil,
                seen: SeenProofs = SeenProofs()) throws -> String {
        let verified = try DPoP.verify(proof, method: method, url: url, accessToken: token, now: Self.now)
        guard seen.use(verified.jkt, verified.jti, verified.expiresAt) else { throw DPoP.Refusal(reason: "proof replayed") }
        return verified.jkt
    }

    @Test(arguments: [SignatureAlgorithm.es256, .rs256, .edDSA])
    func aGoodProofGivesItsKeysThumbprint(_ alg: SignatureAlgorithm) throws {
        let key = try SigningKey.generate(alg)
        #expect(try verify(try Self.proof(key)) == (try JWK.thumbprint(key)))
        // §4.3: htu compares without query and fragment, scheme and host in any case.
        #expect(try verify(try Self.proof(key, claims: ["htu": "HTTPS://Auth.Example.Test/oauth2/token?x=1#f"])) == (try JWK.thumbprint(key)))
        // RFC 7519 §2: iat may have a fraction (attacker review, session 19: refused before).
        #expect(try verify(try Self.proof(key, claims: ["iat": .double(Double(Self.now) / 1000 + 0.25)])) == (try JWK.thumbprint(key)))
    }

    /// §4.3: htu and the request's URL compare after RFC 3986's syntax- and
    /// scheme-based normalisation (§6.2.2, §6.2.3), which the RFC asks of
    /// servers "to reduce the likelihood of false negatives"; what names
    /// another resource is still refused.
    @Test func htuComparesAsRFC3986NormalisesIt() throws {
        let key = try SigningKey.generate(.es256)
        let same = ["https://auth.example.test:443/oauth2/token", "https://auth.example.test:/oauth2/token", "HTTPS://AUTH.example.test/oauth2/token",
                    "https://auth.example.test/oauth2/./token", "https://auth.example.test/x/../oauth2/token", "https://auth.example.test/%6Fauth2/tok%65n",
                    "https://auth.example.test/oauth2/token?a=b#c", "https://auth.example.test/a/b/../../oauth2/token"]
        for htu in same {
            #expect(throws: Never.self, "\(htu)") { _ = try verify(try Self.proof(key, claims: ["htu": .string(htu)])) }
        }
        let other = ["https://auth.example.test:444/oauth2/token", "http://auth.example.test/oauth2/token", "https://auth.example.test/oauth2/token/",
                     "https://auth.example.test/OAUTH2/token", "https://user@auth.example.test/oauth2/token", "https://auth.example.test.evil/oauth2/token",
                     "https://auth.example.test/oauth2%2Ftoken", "https://auth.example.test", "ftp://auth.example.test/oauth2/token", "auth.example.test/oauth2/token",
                     "https://auth.example.test/oauth2/token%"]
        for htu in other {
            #expect(throws: DPoP.Refusal.self, "\(htu)") { _ = try verify(try Self.proof(key, claims: ["htu": .string(htu)])) }
        }
        // Percent-encodings of reserved characters compare without case; the server's URL is normalised the same way.
        #expect(DPoP.comparable("https://a.test/x%2fy") == DPoP.comparable("https://A.test:443/x%2Fy"))
        #expect(DPoP.comparable("https://a.test") == DPoP.comparable("https://a.test/"))
        #expect(DPoP.comparable("https://[::1]:443/t") == DPoP.comparable("https://[::1]/t"))
        #expect(DPoP.comparable("https://[::1]/t") != DPoP.comparable("https://[::1]:8443/t"))
        // The request's path comes decoded (nginx): encoded again, it is neither cut at a `?` or `#` it holds nor
        // decoded twice, so a proof for one path does not pass at another (review of the change, session 32).
        let issuer = "https://auth.example.test"
        let forID = try Self.proof(key, claims: ["htm": "GET", "htu": "https://auth.example.test/api/v1/clients/abc"])
        for decoded in ["/api/v1/clients/abc?x", "/api/v1/clients/abc#x", "/api/v1/clients/%61bc", "/api/v1/clients/abc/%2E%2E", "/api/v1/clients/abc "] {
            #expect(throws: DPoP.Refusal.self, "\(decoded)") {
                _ = try verify(forID, method: "GET", url: DPoP.requestURL(issuer: issuer, decodedPath: decoded))
            }
        }
        #expect(DPoP.requestURL(issuer: issuer, decodedPath: "/a b/%/?/#/é/;=@:!$&'()*+,") == issuer + "/a%20b/%25/%3F/%23/%C3%A9/;=@:!$&'()*+,")
        #expect(throws: Never.self) { _ = try verify(forID, method: "GET", url: DPoP.requestURL(issuer: issuer, decodedPath: "/api/v1/clients/abc")) }
        let spaced = try Self.proof(key, claims: ["htm": "GET", "htu": "https://auth.example.test/a%20b/%c3%a9"])
        #expect(throws: Never.self) { _ = try verify(spaced, method: "GET", url: DPoP.requestURL(issuer: issuer, decodedPath: "/a b/é")) }
    }

    /// A proof's record is kept past the window, to the server's millisecond: proofs whose client pins one `iat`
    /// (any second within the window) do not all share one expiry, which one purge would take whole (review,
    /// session 31), and none is kept less than before.
    @Test func aProofsRecordExpiresAtTheServersMillisecond() throws {
        let key = try SigningKey.generate(.es256)
        let iat = Self.now / 1000 - 30
        let expiries = try [0, 1, 999].map { offset -> Int64 in
            try DPoP.verify(try Self.proof(key, claims: ["iat": .int(iat)]), method: "POST", url: Self.url, now: Self.now + Int64(offset)).expiresAt
        }
        #expect(Set(expiries).count == 3)
        #expect(expiries.allSatisfy { $0 >= (iat + 2 * DPoP.windowSeconds) * 1000 && $0 < (iat + 2 * DPoP.windowSeconds + 1) * 1000 })
    }

    @Test func everyBrokenProofIsRefused() throws {
        let key = try SigningKey.generate(.es256)
        let other = try SigningKey.generate(.es256)
        var withPrivate = try JWK.publicJWK(key, kid: "k")
        withPrivate.set("d", "AAAA")
        let cases: [(String, String)] = [
            ("typ JWT", try Self.proof(key, typ: "JWT")),
            ("another key in the header", try Self.proof(key, jwk: try JWK.publicJWK(other, kid: "o"))),
            ("a private key in the header", try Self.proof(key, jwk: withPrivate)),
            ("no jti", try Self.proof(key, claims: ["jti": nil])),
            // A NUL in jti was a 500 on PostgreSQL (text holds none): refused before the store, as any control character.
            ("a NUL in jti", try Self.proof(key, claims: ["jti": "a\u{0}b"])),
            ("a newline in jti", try Self.proof(key, claims: ["jti": "a\nb"])),
            ("an empty jti", try Self.proof(key, claims: ["jti": ""])),
            ("another method", try Self.proof(key, claims: ["htm": "GET"])),
            ("another URL", try Self.proof(key, claims: ["htu": "https://auth.example.test/oauth2/introspect"])),
            ("iat too old", try Self.proof(key, claims: ["iat": .int(Self.now / 1000 - 61)])),
            ("iat in the future", try Self.proof(key, claims: ["iat": .int(Self.now / 1000 + 61)])),
            ("no iat", try Self.proof(key, claims: ["iat": nil])),
            ("garbage", "a.b.c"),
        ]
        for (name, proof) in cases {
            #expect(throws: DPoP.Refusal.self, "\(name)") { try verify(proof) }
        }
        // Extreme numbers are refused, never computed with (an overflow would stop the process).
        for iat in [Int64.min, Int64.max] {
            #expect(throws: DPoP.Refusal.self, "iat \(iat)") { try verify(try Self.proof(key, claims: ["iat": .int(iat)])) }
        }
        // alg none with the same header and payload.
        let parts = try Self.proof(key).split(separator: ".")
        let none = Base64.urlEncode(Array(#"{"typ":"dpop+jwt","alg":"none"}"#.utf8)) + "." + parts[1] + "."
        #expect(throws: DPoP.Refusal.self) { try verify(none) }
    }

    /// Review, session 25: what costs nothing is checked before the key is imported and its signature checked (a
    /// proof for another request, with a signature that is no signature, is refused for its request); and an RSA
    /// key, which anyone may send, must have the exponent 65537 (2^32 - 1 doubled a check's cost).
    @Test func aProofsClaimsAreCheckedBeforeItsKeyAndAnRSAKeyHasTheUsualExponent() throws {
        let key = try SigningKey.generate(.es256)
        let forged = try Self.proof(key, claims: ["htm": "GET"]).split(separator: ".").prefix(2).joined(separator: ".") + ".AAAA"
        #expect(throws: DPoP.Refusal(reason: "htm is not the request's method")) { try verify(forged) }
        let rsa = try SigningKey.generate(.rs256)
        #expect(try verify(try Self.proof(rsa)) == (try JWK.thumbprint(rsa)))
        for e in ["Aw", "_____w"] {
            var odd = try JWK.publicJWK(rsa, kid: "k")
            odd.set("e", .string(e))
            #expect(throws: DPoP.Refusal(reason: "bad key or signature"), "e \(e)") { try verify(try Self.proof(rsa, jwk: odd)) }
        }
    }

    @Test func aProofIsUsedOnceAndCarriesItsTokensHash() throws {
        let key = try SigningKey.generate(.es256)
        let seen = SeenProofs()
        let proof = try Self.proof(key)
        _ = try verify(proof, seen: seen)
        #expect(throws: DPoP.Refusal.self, "§11.1: replayed") { try verify(proof, seen: seen) }
        // At a resource: ath is the token's SHA-256.
        let token = "eyJ.token.sig"
        let resource = "https://auth.example.test/oauth2/userinfo"
        let good = try Self.proof(key, claims: ["htm": "GET", "htu": .string(resource), "ath": .string(Base64.urlEncode(Digest.sha256(token)))])
        _ = try verify(good, method: "GET", url: resource, token: token)
        let noATH = try Self.proof(key, claims: ["htm": "GET", "htu": .string(resource)])
        #expect(throws: DPoP.Refusal.self) { try verify(noATH, method: "GET", url: resource, token: token) }
        let otherATH = try Self.proof(key, claims: ["htm": "GET", "htu": .string(resource), "ath": .string(Base64.urlEncode(Digest.sha256("x")))])
        #expect(throws: DPoP.Refusal.self) { try verify(otherATH, method: "GET", url: resource, token: token) }
    }

    /// §11.1 on every store and node: a proof's jti is taken once, however many connections race, and forgotten once expired.
    @Test func theStoreTakesAProofOnce() throws {
        let h = try StoreFixture()
        let other = try h.anotherStore()
        #expect(try h.store.write { try h.store.useProof(jkt: "k", jti: "j", expiresAt: 2_000, now: 1_000) })
        #expect(try !other.write { try other.useProof(jkt: "k", jti: "j", expiresAt: 2_000, now: 1_500) }, "the other node sees it")
        #expect(try other.write { try other.useProof(jkt: "k2", jti: "j", expiresAt: 2_000, now: 1_500) }, "per key")
        #expect(try h.store.write { try h.store.useProof(jkt: "k", jti: "j", expiresAt: 4_000, now: 3_000) }, "expired, forgotten")
        // Single use is the jti's, not the JWT's: the key's holder re-signing it with another iat (another expiry) is refused too.
        #expect(try !other.write { try other.useProof(jkt: "k", jti: "j", expiresAt: 4_500, now: 3_000) }, "the same jti, another expiry")
    }

    /// A purge on a node whose clock runs ahead leaves the records a node
    /// whose clock lags may still be shown (review, session 32: two nodes
    /// 200 s apart took one proof twice): purges take only records expired
    /// by more than the margin, proofs and client assertions alike.
    @Test func aPurgeByANodeAheadLeavesTheRecordsANodeBehindStillNeeds() throws {
        let h = try StoreFixture()
        let lagging = try h.anotherStore()
        let expiry: Int64 = 1_000_000
        #expect(try h.store.write {
            try h.store.useProof(jkt: "k", jti: "first", expiresAt: expiry, now: expiry - 120_000)
                && h.store.useAssertion(clientID: "c", jti: "first", expiresAt: expiry, now: expiry - 120_000)
        })
        // The node ahead inserts at a millisecond that purges (one in sixteen), just inside the margin past the expiry.
        let ahead = expiry + (ExpiredRows.singleUseMarginMillis - 16) / 16 * 16
        #expect(try h.store.write {
            try h.store.useProof(jkt: "k", jti: "second", expiresAt: ahead + 120_000, now: ahead)
                && h.store.useAssertion(clientID: "c", jti: "second", expiresAt: ahead + 120_000, now: ahead)
        })
        // The node behind, before the records' expiry by its clock: both are still there, so the replay is refused.
        #expect(try !lagging.write { try lagging.useProof(jkt: "k", jti: "first", expiresAt: expiry + 5, now: expiry - 1) })
        #expect(try !lagging.write { try lagging.useAssertion(clientID: "c", jti: "first", expiresAt: expiry + 5, now: expiry - 1) })
        // Past the margin, a purge takes them.
        let later = expiry + ExpiredRows.singleUseMarginMillis + 16
        #expect(try h.store.write { try h.store.useProof(jkt: "k", jti: "third", expiresAt: later + 120_000, now: later) })
        #expect(try h.store.write { try h.store.useAssertion(clientID: "c", jti: "third", expiresAt: later + 120_000, now: later) })
        #expect(try h.rows("dpop_proofs").count == 2 && h.rows("client_assertions").count == 2)
    }
}

import Common
import Cryptography
import JOSE
import TestSupport
import Testing

@Suite struct JOSETests {
    /// RFC 7515 Appendix A.3: ES256 signatures are randomized, so the
    /// published signature is checked with the published public key. It
    /// happens to be in high-S form, which Latchkey refuses (SPEC 7.1: one
    /// token, one signature); its low-S twin (r, n - s) verifies.
    @Test func verifiesRFC7515AppendixA3InLowSFormOnly() throws {
        let key = try SigningKey(jwk: ["kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                                       "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"])
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
        let parsed = try #require(JWS.parse(token))
        #expect(!JWS.verify(parsed, key: key))
        let signature = try #require(Base64.urlDecode(String(token.split(separator: ".")[2])))
        let twin = token.split(separator: ".")[0...1].joined(separator: ".") + "." + Base64.urlEncode(Array(signature[0..<32]) + P256.negate(Array(signature[32...])))
        let low = try #require(JWS.parse(twin))
        #expect(JWS.verify(low, key: key))
        #expect(parsed.payload["iss"] == "joe")
        #expect(parsed.payload["exp"] == .int(1_300_819_380))
    }

    /// RFC 8037 Appendix A.4: Ed25519 is deterministic.
    @Test func signsRFC8037AppendixA4() throws {
        let key = try SigningKey(jwk: ["kty": "OKP", "crv": "Ed25519", "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
                                       "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"])
        #expect(try key.publicJWKMembers().first(where: { $0.0 == "x" })?.1 == "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
        let signature = try key.sign(Array("eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc".utf8))
        #expect(Base64.urlEncode(signature) == "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg")
    }

    /// RS256 (PKCS#1 v1.5) is deterministic: a vector made with an
    /// independent implementation (Python's cryptography).
    @Test func signsKnownRS256Vector() throws {
        let jwk = try JSON.parse(rsaJWK)
        let key = try SigningKey(jwk: jwk)
        let signature = try key.sign(Array("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UifQ".utf8))
        #expect(Base64.urlEncode(signature) == rsaSignature)
        let publicOnly = try SigningKey(jwk: ["kty": "RSA", "n": jwk["n"]!, "e": jwk["e"]!])
        let parsed = try #require(JWS.parse("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UifQ.\(rsaSignature)"))
        #expect(JWS.verify(parsed, key: publicOnly))
    }

    @Test(arguments: SignatureAlgorithm.allCases)
    func signedTokensVerifyOnlyWithTheirOwnAlgorithm(_ alg: SignatureAlgorithm) throws {
        let key = try SigningKey.generate(alg)
        let token = try JWS.sign(payload: ["sub": "x"], key: key, kid: "k1", typ: "at+jwt")
        let parsed = try #require(JWS.parse(token))
        #expect(parsed.kid == "k1")
        #expect(parsed.typ == "at+jwt")
        #expect(JWS.verify(parsed, key: key))
        let other = try SigningKey.generate(alg)
        #expect(!JWS.verify(parsed, key: other))
    }

    @Test func refusesAlgNoneAndAlgorithmSwaps() throws {
        let key = try SigningKey.generate(.es256)
        let good = try JWS.sign(payload: ["sub": "x"], key: key, kid: "k", typ: nil)
        let parts = good.split(separator: ".").map(String.init)
        let none = Base64.urlEncode(Array(#"{"alg":"none","kid":"k"}"#.utf8)) + "." + parts[1] + "."
        #expect(JWS.parse(none).map { JWS.verify($0, key: key) } != true)
        let hs = Base64.urlEncode(Array(#"{"alg":"HS256","kid":"k"}"#.utf8)) + "." + parts[1] + "." + parts[2]
        #expect(JWS.parse(hs).map { JWS.verify($0, key: key) } == false)
        let crit = Base64.urlEncode(Array(#"{"alg":"ES256","kid":"k","crit":["x"]}"#.utf8)) + "." + parts[1] + "." + parts[2]
        #expect(JWS.parse(crit).map { JWS.verify($0, key: key) } == false)
    }

    @Test(arguments: ["", "a.b", "a.b.c.d", "!!.e30.", "e30.e30", "e30=.e30.AA", "W10.e30.AA", "e30.W10.AA"])
    func refusesMalformedCompactSerializations(_ token: String) {
        #expect(JWS.parse(token) == nil || JWS.parse(token)?.signature.isEmpty == true)
    }

    @Test func thumbprintMatchesRFC7638Example() throws {
        let key = try SigningKey(jwk: [
            "kty": "RSA", "e": "AQAB",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        ])
        #expect(try JWK.thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    }
}

let rsaSignature = "qx2-fTSI6gLtOGVoFB2MLklsFFH9eIoimfgVdQpjgtwJW75iWH9RqlMn_PbPfmdE4Fp0X-ys_6Djp9uxRA6761ABK514smlVMCasH0FJQYPRC2nub5w3e2oxTki6lOSYy-s9QAuiNrJluKH6NrMB-xqYmnHBggzEQm5rkFv9-4omRyMdfit6kQcVi_BzqaUtc-ptNuVPlkaTY03dBTOJCk1zTESo2RvYeYb2UQfizzKEkEt1bx6DCs_EkLFVNvdg4v3H8tAplyvNpQAGcwMNPV_4wJXIHvk41WzusxSvunoyYfuP4iyzmjWNqRT8yvUZ1WgeSVYpGGQqncymGpw8Xg"

let rsaJWK = """
{"kty": "RSA", "n": "3CbMxO80t6yfBEyfkkw-F4ZJb3jgL0ozbA-0BGTqColnjpUWDTbGs4dgmhA4CfzSzRtSkCrtQnuRrwohYc4ieywwFhmbIXd1JmYAcuJSOkQlFcqn95jLgwW7WV6jWehM5eyea3zyg1VBbp9jX3Esc4qz6VxxtbCtTj6Hk2n3jCkUJOQvdx3fSjZLUexGGK7wP5jqEfheC_xToWwUWySw6_tBPO7F-gydriIm2wFX_msCYN4AdDNpyGgMSp8gwutzIywhYsCU3K8jlgg-qrvaaXRWJihDDNLWWI3sMfzx8SuS8CYDLEHilsZZNhkxNn1-d_L_G3Vx6j86x7xa-SpXww", "e": "AQAB", "d": "Rwgn0rThnA_Q4Oi-Jcx-zkVQRWzJXMjCra-lZDORRiQOazVUP6A4XW2lMCBijGpsM6yIp6aKFgTbvQ_2NGH3wyk_PKo3YQVzoZeQtoCqik05b_4K0vsUUuqTB-NermAjC56cgM74SoLEEWbQ_9b6wi7zHKzsrXRbfp7zTI-IxUpUk4amBq2RwU_vNcSvWZkl5ze03C_c4Y2caobe2wljZnGPfA14_9qjE2w-l_jWh117A3xrkY3uXr6IhyyhI-XlNG6TIEp6O3D65ejbyGyQMfJNvPuSI2SBc5NyflZl7wA3pNVfc2njifvyR5WqXU6zCvj5DM0ZKpUkfCyioYyJ0Q", "p": "8U8k4rvWwuSR2Y69CK2pa-iA9P55-hKXZL1BnsSxwSklF2fmJ8_ghajcfc5x168lFnVfTYwGnywPCenM9KcMYeaowDqvhOtAdU8Zl3ogWlWWIa9Ql6lZL55SZKXu2NxshBO2y7AqsLXfJTukC5K196QnQO6Ze6wv4sKLAqdzHnE", "q": "6Y3o-d68oWU9lJc1ZpbSv3hvDqorcP1juQ7A3fWzYXfffg5ued1-VCdAXpvqYqoJQcMaIPM7_gBIYjYksW6yvN-ohZfKhd5NJb8M_vWSTD_I4H7XV1U65IAZD6h4dpZphGQq1dLLPqPyVPTSmTQel9Kp6STvBJ90KSI3hAJ523M", "dp": "PgrNPwZwlzdRUJBkheCwmK_0yAjNr8Ar8JjAUGPeF_3OLZBnGoFWBsd9uVLk7kF31ahj0npYEYCwdSoJqjVw95LofFQaYKBjuEWYHNwniVJMAWkj3XqLFbUtFfeby2IQ_HxdGU24DCsWrmoBKYCVDJDGDunJyIRi43iFaS9IZ-E", "dq": "OoJElSRJmR0lui3PQO4Tyce_-qqCy4GPE_MwOeqtj4NaR9gRsRHd7fMPWyQwKZtzSjg4OXz10IH9oCz0MEcNG-fj7ePC5pp0NTqRZOXcSqHIDwV3qPc_E7NLk_KeiwbPVE1Ltdli9URZFxNmFt9Jsrshubh48G2Jyiw6QCXmpSU", "qi": "MpfvFUWb6n0OxU0FmOr91fpvwwYXb95kzsWwh-hJ-Kok79aYx2HpdXcJvNfHZrJcPouYDB8Jvk4E0zFngw4Uy0mAur-lwmHY5oj1gCl2hvvMOsMOTfmM3bRAH5qi3VRPqzKarrMDAeGM2wd-TzKqjswvo6U6OGEW7bgbMVIUL1o"}
"""

/// n - s on the P-256 group order, written independently of the server's
/// own (big-endian, schoolbook subtraction).
enum P256 {
    static let order: [UInt8] = Hex.decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")!

    static func negate(_ s: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var borrow = 0
        for i in (0..<32).reversed() {
            let d = Int(order[i]) - Int(s[i]) - borrow
            out[i] = UInt8((d + 256) % 256)
            borrow = d < 0 ? 1 : 0
        }
        return out
    }

    static func isHigh(_ s: [UInt8]) -> Bool { s.lexicographicallyPrecedes(negate(s)) == false }
}

@Suite struct LowSTests {
    /// Every ES256 signature Latchkey makes is low-S, and the high-S twin of
    /// one is refused by both the plain and the prepared key.
    @Test func signaturesAreLowSAndHighSTwinsAreRefused() throws {
        let key = try SigningKey.generate(.es256)
        let prepared = PreparedKey(key)
        var sawTwin = false
        for i in 0..<64 {
            let message = Array("message \(i)".utf8)
            for signature in [try key.sign(message), try prepared.sign(message)] {
                let s = Array(signature[32...])
                #expect(!P256.isHigh(s), "signature \(i) is high-S")
                #expect(key.verify(signature: signature, message: message))
                let twin = Array(signature[0..<32]) + P256.negate(s)
                #expect(!key.verify(signature: twin, message: message))
                #expect(!prepared.verify(signature: twin, message: message))
                sawTwin = true
            }
        }
        #expect(sawTwin)
    }
}

import Common
import Cryptography
import OAuth
import TestSupport
import Testing

/// The authorization checks every code-issuing surface shares (issue 12),
/// over plain values.
@Suite struct AuthorizationCheckTests {
    static let confidential = Client(clientID: "conf", organizationID: "org", name: "Conf", redirectURIs: ["https://c.example/cb"],
                                     grantTypes: [.authorizationCode], authMethod: .clientSecretBasic,
                                     scope: ["openid", "profile", "clients:write"], createdAt: 0)
    static let publicApp = Client(clientID: "pub", organizationID: "org", name: "Pub", redirectURIs: ["https://p.example/cb"],
                                  grantTypes: [.authorizationCode], authMethod: .publicClient, scope: ["openid"], createdAt: 0)
    static let good = String(repeating: "a", count: 43)

    /// RFC 7636 Appendix B: the verifier and its S256 challenge.
    @Test func rfc7636AppendixBVector() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        #expect(Base64.urlEncode(Digest.sha256(verifier)) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        #expect(AuthorizationService.isValidCodeChallenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"))
    }

    @Test(arguments: [
        (nil, nil, false, nil, nil),                                          // confidential without PKCE
        (good, "S256", false, good, nil),
        (good, "S256", true, good, nil),
        (nil, nil, true, nil, AuthorizationCheck.pkceRequired),
        (good, "plain", false, nil, .challengeMethodUnsupported),
        (nil, "plain", true, nil, .challengeMethodUnsupported),               // the method is judged first
        (nil, "S256", false, nil, .challengeMissing),
        (good, nil, false, nil, .challengeMethodMissing),
        ("short", "S256", false, nil, .challengeMalformed),
        (String(repeating: "a", count: 129), "S256", true, nil, .challengeMalformed),
        (String(repeating: "a", count: 42) + "!", "S256", true, nil, .challengeMalformed),
    ] as [(String?, String?, Bool, String?, AuthorizationCheck?)])
    func pkce(challenge: String?, method: String?, isPublic: Bool, accepted: String?, refused: AuthorizationCheck?) {
        let client = isPublic ? Self.publicApp : Self.confidential
        do {
            let result = try AuthorizationChecks.pkce(challenge: challenge, method: method, client: client)
            #expect(refused == nil && result == accepted)
        } catch {
            #expect(error == refused)
        }
    }

    @Test func nonce() throws {
        #expect(try AuthorizationChecks.nonce(nil) == nil)
        #expect(try AuthorizationChecks.nonce("n-1") == "n-1")
        #expect(throws: AuthorizationCheck.nonceTooLong) { try AuthorizationChecks.nonce(String(repeating: "n", count: 256)) }
        #expect(try AuthorizationChecks.nonce(String(repeating: "n", count: 255)) != nil)
        #expect(try AuthorizationChecks.nonce("tab\there") == "tab\there", "printable only where the surface asks")
        #expect(throws: AuthorizationCheck.nonceNotPrintable) { try AuthorizationChecks.nonce("tab\there", printable: true) }
    }

    @Test func privilegedScopesAreNeverRequestedOfAUser() {
        #expect(AuthorizationChecks.isRequestable("openid", by: Self.confidential))
        #expect(!AuthorizationChecks.isRequestable("clients:write", by: Self.confidential), "registered, but a management scope")
        #expect(!AuthorizationChecks.isRequestable("email", by: Self.confidential), "not registered")
    }
}

import Common
import OAuth
import TestSupport
import Testing

/// RFC 6749 §4.4: a confidential client's own token, with the scope it
/// asks for within what it is registered for.
@Suite struct ClientCredentialsGrantTests {
    @Test(arguments: [
        ("nothing asked: every registered scope", nil, Optional(Scopes.primary)),
        ("a narrower scope", "clients:read", ["clients:read"]),
        ("the same scope twice", "clients:read clients:read", ["clients:read"]),
        ("an unknown scope", "clients:read no-such-scope", nil),
        ("an empty scope: a token that may do nothing", "", []),
    ] as [(String, String?, [String]?)])
    func theScopeIsTheRegisteredOneOrNarrower(_ name: String, _ asked: String?, _ granted: [String]?) throws {
        let t = try GrantTesting()
        let parameters = asked.map { ["scope": $0] } ?? [:]
        if let granted {
            #expect(Set(try t.exchange("client_credentials", parameters, as: t.primary).scope) == Set(granted), "\(name)")
        } else {
            #expect(t.refusal("client_credentials", parameters, as: t.primary)
                    == Refusal(status: 400, body: ["error": "invalid_scope", "error_description": "The requested scope is invalid or exceeds what the client may request."]),
                    "\(name)")
        }
    }

    @Test func aTokenCarriesNoRefreshTokenAndNoIDToken() throws {
        let t = try GrantTesting()
        let issued = try t.exchange("client_credentials", [:], as: t.primary)
        #expect(issued.refreshToken == nil && issued.idToken == nil && issued.accessToken.split(separator: ".").count == 3)
    }

    /// A public client never gets client_credentials: authentication refuses it before the grant runs.
    @Test func aPublicClientIsRefusedAsAClient() throws {
        let t = try GrantTesting()
        let (app, _) = try t.h.app()
        #expect(t.refusal("client_credentials", [:], as: .publicClient(clientID: app))
                == Refusal(status: 401, body: ["error": "invalid_client", "error_description": "Client authentication failed."]))
    }
}

import Common
import OAuth
import TestSupport
import Testing

/// RFC 6749 §4.1.3 and RFC 7636 §4.6: each way a code redemption is
/// refused, with the exact body, and what a refusal leaves behind.
@Suite struct AuthorizationCodeGrantTests {
    static let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

    /// Cases: what is changed in an otherwise valid redemption.
    @Test(arguments: [
        ("no code", ["code": nil], Refusal.invalidRequest("code is required.")),
        ("unknown code", ["code": "lkc_unknown"], .invalidGrant()),
        ("another redirect_uri", ["redirect_uri": "https://app.example/other"], .invalidGrant("redirect_uri does not match the authorization request.")),
        ("no redirect_uri although the request sent one", ["redirect_uri": nil], .invalidGrant("redirect_uri does not match the authorization request.")),
        ("no code_verifier", ["code_verifier": nil], .invalidGrant("The code_verifier does not match the code_challenge.")),
        ("another code_verifier", ["code_verifier": String(repeating: "a", count: 43)], .invalidGrant("The code_verifier does not match the code_challenge.")),
        ("a code_verifier too short (RFC 7636 §4.1)", ["code_verifier": "short"], .invalidGrant("The code_verifier does not match the code_challenge.")),
    ] as [(String, [String: String?], Refusal)])
    func aRedemptionIsRefused(_ name: String, _ change: [String: String?], _ expected: Refusal) throws {
        let t = try GrantTesting()
        let user = try t.h.user()
        let (client, _) = try t.h.app()
        let code = try t.code(client: client, user: user)
        var parameters = ["code": code, "redirect_uri": StoreFixture.redirect, "code_verifier": Self.verifier, "client_id": client]
        for (key, value) in change { parameters[key] = value }
        #expect(t.refusal("authorization_code", parameters, as: .publicClient(clientID: client)) == expected, "\(name)")
        // A refusal consumes nothing: the same code still works with the right values.
        let good = try t.exchange("authorization_code", ["code": code, "redirect_uri": StoreFixture.redirect, "code_verifier": Self.verifier],
                                  as: .publicClient(clientID: client))
        #expect(good.refreshToken != nil && good.idToken != nil && good.scope == ["openid", "offline_access"])
    }

    @Test func aCodeIsRedeemedOnceAndAReplayRevokesWhatItIssued() throws {
        let t = try GrantTesting()
        let user = try t.h.user()
        let (client, _) = try t.h.app()
        let code = try t.code(client: client, user: user)
        let parameters = ["code": code, "redirect_uri": StoreFixture.redirect, "code_verifier": Self.verifier]
        let first = try t.exchange("authorization_code", parameters, as: .publicClient(clientID: client))
        #expect(t.refusal("authorization_code", parameters, as: .publicClient(clientID: client)) == .invalidGrant())
        // RFC 6749 §4.1.2: the refresh token the first redemption issued is revoked with its family.
        #expect(t.refusal("refresh_token", ["refresh_token": try #require(first.refreshToken)], as: .publicClient(clientID: client)) == .invalidGrant())
    }

    /// Attacker review, session 24: a spent code is kept a day, and sits in browser histories and logs; sent again
    /// without its PKCE verifier (or with another), it revoked the grant the first redemption made. Only a replay
    /// that holds the verifier does.
    @Test func aReplayWithoutTheVerifierRevokesNothing() throws {
        let t = try GrantTesting()
        let user = try t.h.user()
        let (client, _) = try t.h.app()
        let code = try t.code(client: client, user: user)
        let first = try t.exchange("authorization_code", ["code": code, "redirect_uri": StoreFixture.redirect, "code_verifier": Self.verifier],
                                   as: .publicClient(clientID: client))
        let refresh = try #require(first.refreshToken)
        for verifier in [nil, String(repeating: "a", count: 43)] {
            var parameters = ["code": code, "redirect_uri": StoreFixture.redirect]
            parameters["code_verifier"] = verifier
            #expect(t.refusal("authorization_code", parameters, as: .publicClient(clientID: client)) == .invalidGrant())
        }
        let rotated = try t.exchange("refresh_token", ["refresh_token": refresh], as: .publicClient(clientID: client))
        // With the verifier, the replay revokes the family, the refresh token just rotated included.
        #expect(t.refusal("authorization_code", ["code": code, "redirect_uri": StoreFixture.redirect, "code_verifier": Self.verifier],
                          as: .publicClient(clientID: client)) == .invalidGrant())
        #expect(t.refusal("refresh_token", ["refresh_token": try #require(rotated.refreshToken)], as: .publicClient(clientID: client)) == .invalidGrant())
    }

    @Test func anotherClientsCodeAndAnExpiredCodeAreUnknown() throws {
        let t = try GrantTesting()
        let user = try t.h.user()
        let (client, _) = try t.h.app()
        let (other, _) = try t.h.app()
        let parameters = ["code": try t.code(client: client, user: user), "redirect_uri": StoreFixture.redirect, "code_verifier": Self.verifier]
        #expect(t.refusal("authorization_code", parameters, as: .publicClient(clientID: other)) == .invalidGrant())
        t.h.clock.advance(seconds: 61)
        #expect(t.refusal("authorization_code", parameters, as: .publicClient(clientID: client)) == .invalidGrant())
    }

    /// SPEC 5.2: a code whose connection the user removed meanwhile creates no grant.
    @Test func aCodeOfADisconnectedAppIsRefused() throws {
        let t = try GrantTesting()
        let user = try t.h.user()
        let (client, _) = try t.h.app()
        let parameters = ["code": try t.code(client: client, user: user), "redirect_uri": StoreFixture.redirect, "code_verifier": Self.verifier]
        try t.h.store.write { try t.h.store.deleteConnection(userID: user, clientID: client) }
        #expect(t.refusal("authorization_code", parameters, as: .publicClient(clientID: client)) == .invalidGrant())
    }

    @Test func aVerifierWithoutAChallengeIsRefused() throws {
        let t = try GrantTesting()
        let user = try t.h.user()
        let (client, secret) = try t.h.app(public: false)
        let code = try t.code(client: client, user: user, verifier: nil)
        let confidential = PresentedCredentials.basic(clientID: client, secret: try #require(secret))
        #expect(t.refusal("authorization_code", ["code": code, "redirect_uri": StoreFixture.redirect, "code_verifier": Self.verifier], as: confidential)
                == .invalidGrant("No code_challenge was sent with the authorization request."))
        #expect(try t.exchange("authorization_code", ["code": code, "redirect_uri": StoreFixture.redirect], as: confidential).refreshToken != nil)
    }

    /// Attacker review, session 24: a confidential client's request without PKCE, then the client made public. A
    /// code issued without a challenge is refused (it would be redeemed with the client id alone).
    @Test func aClientMadePublicSinceTheRequestGetsNoCodeWithoutPKCE() throws {
        let t = try GrantTesting()
        let user = try t.h.user()
        let (client, _) = try t.h.app(public: false)
        let code = try t.code(client: client, user: user, verifier: nil)
        try t.h.store.write {
            var changed = try #require(try t.h.store.client(client))
            changed.authMethod = .publicClient
            try t.h.store.updateClient(changed)
        }
        #expect(t.refusal("authorization_code", ["code": code, "redirect_uri": StoreFixture.redirect], as: .publicClient(clientID: client))
                == .invalidGrant("This client must use PKCE: the authorization request sent no code_challenge."))
        let answeredAfter = try t.code(client: client, user: user, verifier: nil)
        #expect(t.refusal("authorization_code", ["code": answeredAfter, "redirect_uri": StoreFixture.redirect], as: .publicClient(clientID: client))
                == .invalidGrant("This client must use PKCE: the authorization request sent no code_challenge."))
        // With PKCE, as a public client asks, it gets its code.
        #expect(try t.exchange("authorization_code", ["code": try t.code(client: client, user: user), "redirect_uri": StoreFixture.redirect,
                                                      "code_verifier": Self.verifier], as: .publicClient(clientID: client)).refreshToken != nil)
    }

    /// Review, session 25: a consent that checked the client just before a change withdrew its codes can still write
    /// its code after it. The redemption checks the client as it is now: a redirect URI taken off it, or pushed
    /// requests required since (RFC 9126 §6), issue nothing, and the code stays unspent.
    @Test func aCodeIssuedJustBeforeTheClientChangedIsRefusedAtRedemption() throws {
        let t = try GrantTesting()
        let user = try t.h.user()
        let (client, _) = try t.h.app()
        let parameters = ["code_verifier": Self.verifier, "redirect_uri": StoreFixture.redirect]
        func change(_ body: (inout Client) -> Void) throws {
            try t.h.store.write {
                var changed = try #require(try t.h.store.client(client))
                body(&changed)
                try t.h.store.updateClient(changed)
            }
        }
        let beforeURIRemoved = try t.code(client: client, user: user)
        try change { $0.redirectURIs = ["https://app.example/elsewhere"] }
        #expect(t.refusal("authorization_code", parameters.merging(["code": beforeURIRemoved]) { $1 }, as: .publicClient(clientID: client))
                == .invalidGrant("The code's redirect URI is no longer registered for the client."))
        try change { $0.redirectURIs = [StoreFixture.redirect] }
        let beforePushRequired = try t.code(client: client, user: user)
        try change { $0.requirePushedRequests = true }
        #expect(t.refusal("authorization_code", parameters.merging(["code": beforePushRequired]) { $1 }, as: .publicClient(clientID: client))
                == .invalidGrant("This client must push its authorization requests: the code's request was not pushed."))
        // Refused, the code is unspent: with the client as it was, the same code is redeemed.
        try change { $0.requirePushedRequests = false }
        #expect(try t.exchange("authorization_code", parameters.merging(["code": beforePushRequired]) { $1 },
                               as: .publicClient(clientID: client)).refreshToken != nil)
    }
}

import Common
import JOSE
import HTTPCore
import OAuth
import TestSupport
import Testing

/// What answering a pending request requires (attacker review, session 10): a sign-in as fresh as the request
/// asks for, and the client as it is now, not as it was when the request was made.
extension UserFlowTests {
    /// OIDC Core §3.1.2.1: `prompt=login` and `max_age` make the user sign in again. The consent page's own
    /// calls held to it too, so editing `/login/?request=` into `/consent/?request=` skips no password.
    /// `prompt=select_account` too: the sign-in page is where the user picks the account (it was accepted and
    /// ignored, a code for whoever was signed in: FAPI/OIDC review, session 30).
    @Test(arguments: ["login", "select_account", "select_account consent"])
    func answeringARequestNeedsTheSignInItAsksFor(_ prompt: String) throws {
        let (h, _, client, pkce, b) = try started()
        b.login()
        h.clock.advance(seconds: 1)
        let relogin = try #require(b.authorize(authorizeParams(client, pkce, extra: [("prompt", prompt)])).headers[.location])
        #expect(relogin.hasPrefix("/login/"))
        let request = try #require(queryItems(relogin)["request"])
        let details = b.send("GET", "/api/v1/authorization-requests/\(request)")
        #expect(details.status == 401 && details.json?["code"] == "login_required", "\(details.bodyText)")
        let early = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid"]])
        #expect(early.status == 401 && early.json?["redirect_to"] == nil)
        // Signed in again, the same request is answered.
        b.login()
        #expect(b.send("GET", "/api/v1/authorization-requests/\(request)").status == 200)
        let accepted = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid"]])
        #expect(queryItems(accepted.json?["redirect_to"]?.stringValue ?? "")["code"] != nil, "\(accepted.bodyText)")

        // max_age, measured when the request is made: a sign-in older than it then cannot answer; a fresh one
        // can, however long the user then takes on the consent screen.
        h.clock.advance(seconds: 61)
        let aged = try #require(b.authorize(authorizeParams(client, pkce, extra: [("prompt", "consent"), ("max_age", "60")])).headers[.location])
        #expect(aged.hasPrefix("/login/"))
        let agedRequest = try #require(queryItems(aged)["request"])
        #expect(b.send("GET", "/api/v1/authorization-requests/\(agedRequest)").status == 401)
        #expect(b.json("POST", "/api/v1/authorization-requests/\(agedRequest)/accept", ["scope": ["openid"]]).status == 401)
        b.login()
        h.clock.advance(seconds: 120)
        #expect(b.send("GET", "/api/v1/authorization-requests/\(agedRequest)").status == 200)
        let late = b.json("POST", "/api/v1/authorization-requests/\(agedRequest)/accept", ["scope": ["openid"]])
        #expect(queryItems(late.json?["redirect_to"]?.stringValue ?? "")["code"] != nil, "\(late.bodyText)")
    }

    /// SPEC 4.4, 4.5, RFC 9700 §2.1: a request made before its client was disabled, lost the redirect URI or a
    /// scope gets no code when it is answered (on the consent screen or silently), and no connection.
    @Test(arguments: ["disabled", "redirect", "scope"])
    func aRequestIsAnsweredForTheClientAsItIsNow(_ change: String) throws {
        let h = try Harness()
        let user = try h.user()
        let (client, _) = try h.app(public: false)
        let pkce = PKCE()
        let b = Browser(h)
        b.login()
        let location = try #require(b.authorize(authorizeParams(client, pkce, scope: "openid profile")).headers[.location])
        let request = try #require(queryItems(location)["request"])
        let body: JSON = switch change {
        case "disabled": ["enabled": false]
        case "redirect": ["redirect_uris": ["https://elsewhere.example/cb"]]
        default: ["scope": "openid"]
        }
        #expect(h.json("PATCH", "/api/v1/clients/\(client)", token: try h.token(), body: body).status == 200)
        let accepted = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid", "profile"]])
        #expect(accepted.status == 409 && accepted.json?["code"] == "client_changed", "\(accepted.bodyText)")
        #expect(accepted.json?["redirect_to"] == nil)
        #expect(try h.store.read { try h.store.connection(userID: user, clientID: client) } == nil)
        // Denying sends nothing to a redirect URI taken off the client, or to a disabled client, either.
        if change != "scope" {
            let rejected = b.json("POST", "/api/v1/authorization-requests/\(request)/reject", [:])
            #expect(rejected.status == 409 && rejected.json?["redirect_to"] == nil, "\(rejected.bodyText)")
        }
    }

    /// The same on the silent path: a request waiting at the login page while its client is disabled.
    @Test func aRequestWaitingForASignInIsNotAnsweredForADisabledClient() throws {
        let (h, _, client, pkce, b) = try started()
        _ = try code(h, b, client: client, pkce: pkce)
        h.clock.advance(seconds: 1)
        let relogin = try #require(b.authorize(authorizeParams(client, pkce, extra: [("prompt", "login")])).headers[.location])
        let request = try #require(queryItems(relogin)["request"])
        #expect(h.json("PATCH", "/api/v1/clients/\(client)", token: try h.token(), body: ["enabled": false]).status == 200)
        b.login()
        let next = b.send("GET", "/oauth2/authorize/continue", query: "request=\(PercentEncoding.encode(request))")
        #expect(next.status == 400 && next.headers[.location] == nil, "\(next.status) \(next.headers[.location] ?? "")")
    }
}

extension UserFlowTests {
    /// An ID token for the app API's `/auth/code` path: a client holding `gov.user.oauth.authorize` signs the
    /// user in through `browser` for a user token, `between` runs, and with that token a code is minted for
    /// another app of the organization, which redeems it.
    func idTokenMintedWithAUserToken(_ h: Harness, _ browser: Browser, between: () -> Void = {}) throws -> String {
        let token = try h.token()
        let minter = try #require(h.json("POST", "/api/v1/clients", token: token, body: [
            "client_name": "Minter", "redirect_uris": .array([.string(Harness.redirect)]), "grant_types": ["authorization_code"],
            "scope": "openid gov.user.oauth.authorize",
        ]).json)
        let minterID = try #require(minter["client_id"]?.stringValue), minterSecret = try #require(minter["client_secret"]?.stringValue)
        let target = try #require(h.json("POST", "/api/oauth/app", token: token, body: ["name": "Target", "redirect_uri": "https://t.example/cb"]).json)
        let targetID = try #require(target["client_id"]?.stringValue), targetKey = try #require(target["key"]?.stringValue)
        let pkce = PKCE()
        let code = try self.code(h, browser, client: minterID, pkce: pkce, scope: "openid gov.user.oauth.authorize")
        let userToken = try #require(exchange(h, client: minterID, secret: minterSecret, code: code, verifier: pkce.verifier).json?["access_token"]?.stringValue)
        between()
        let minted = try #require(h.json("POST", "/api/oauth/auth/code", token: userToken, body: ["client_id": .string(targetID), "scope": "openid"])
            .json?["code"]?.stringValue)
        let tokens = h.form("/oauth2/token", [("grant_type", "authorization_code"), ("code", minted), ("redirect_uri", "https://t.example/cb")],
                            basic: (targetID, targetKey))
        return try #require(tokens.json?["id_token"]?.stringValue, "\(tokens.bodyText)")
    }

    /// OIDC Core §2: `auth_time` is when the user signed in. A code minted with a user's token on the app API
    /// carries the token's, not the moment of the call (an app could otherwise claim a fresh sign-in for others).
    @Test func aCodeMintedWithAUserTokenCarriesItsSignInTime() throws {
        let h = try Harness()
        _ = try h.user()
        let signedInAt = h.env.nowSeconds
        let idToken = try idTokenMintedWithAUserToken(h, Browser(h)) { h.clock.advance(seconds: 100) }
        #expect(JWS.parse(idToken)?.payload["auth_time"]?.intValue == signedInAt)
    }
}

extension UserFlowTests {
    /// OIDC Core §3.1.2.2: an id_token_hint naming another user than the signed-in one is login_required under
    /// prompt=none, and otherwise a sign-in first (after which whoever signed in answers); naming the signed-in
    /// user, or not verifying, it is what it says.
    @Test func anIDTokenHintForAnotherUserAsksForASignIn() throws {
        let h = try Harness()
        _ = try h.user("alice")
        _ = try h.user("bob")
        let (client, _) = try h.app()
        let pkce = PKCE()
        let alice = Browser(h)
        let aliceCode = try code(h, alice, client: client, pkce: pkce)
        let aliceID = try #require(exchange(h, client: client, code: aliceCode, verifier: pkce.verifier).json?["id_token"]?.stringValue)
        let silent = alice.authorize(authorizeParams(client, pkce, extra: [("prompt", "none"), ("id_token_hint", aliceID)]))
        #expect(queryItems(silent.headers[.location] ?? "")["code"] != nil, "the hinted user is the signed-in one")

        let bob = Browser(h)
        #expect(bob.login("bob").status == 204)
        _ = try code(h, bob, client: client, pkce: pkce)  // bob approves the app
        h.clock.advance(seconds: 1)
        let refused = bob.authorize(authorizeParams(client, pkce, extra: [("prompt", "none"), ("id_token_hint", aliceID)]))
        #expect(queryItems(refused.headers[.location] ?? "")["error"] == "login_required")
        let forged = bob.authorize(authorizeParams(client, pkce, extra: [("prompt", "none"), ("id_token_hint", aliceID + "x")]))
        #expect(queryItems(forged.headers[.location] ?? "")["error"] == "login_required", "a hint that does not verify names nobody")
        h.clock.advance(seconds: 1)
        let interactive = try #require(bob.authorize(authorizeParams(client, pkce, extra: [("id_token_hint", aliceID)])).headers[.location])
        #expect(interactive.hasPrefix("/login/"))
        let request = try #require(queryItems(interactive)["request"])
        h.clock.advance(seconds: 1)
        #expect(bob.login("bob").status == 204)
        let next = try #require(bob.send("GET", "/oauth2/authorize/continue", query: "request=\(PercentEncoding.encode(request))").headers[.location])
        #expect(queryItems(next)["code"] != nil, "whoever signs in after the request answers it: \(next)")
    }
}

extension UserFlowTests {
    /// A scope taken off a client is not issued again: not when a code made before is redeemed, not when a
    /// refresh token from before is used (attacker review, session 10; a privileged scope also ends the tokens).
    @Test func aScopeTakenOffTheClientIsNotIssuedAgain() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: false)
        let pkce = PKCE()
        let code = try self.code(h, Browser(h), client: client, pkce: pkce)
        #expect(h.json("PATCH", "/api/v1/clients/\(client)", token: try h.token(), body: ["scope": "openid email offline_access"]).status == 200)
        let tokens = try #require(exchange(h, client: client, secret: secret, code: code, verifier: pkce.verifier).json)
        #expect(tokens["scope"] == "openid email offline_access", "\(tokens)")
        let refresh = try #require(tokens["refresh_token"]?.stringValue)
        #expect(h.json("PATCH", "/api/v1/clients/\(client)", token: try h.token(), body: ["scope": "openid offline_access"]).status == 200)
        let refreshed = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh)], basic: (client, try #require(secret)))
        #expect(refreshed.json?["scope"] == "openid offline_access", "\(refreshed.bodyText)")
        let asked = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", try #require(refreshed.json?["refresh_token"]?.stringValue)),
                                             ("scope", "openid email")], basic: (client, try #require(secret)))
        #expect(asked.json?["error"] == "invalid_scope", "\(asked.bodyText)")
    }
}

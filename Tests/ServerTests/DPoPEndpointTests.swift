import Common
import Cryptography
import HTTPCore
import JOSE
import OAuth
import Server
import TestSupport
import Testing

/// DPoP (RFC 9449) at the token endpoint and at the resources, each test
/// named after the section it enforces.
@Suite struct DPoPEndpointTests {
    let flow = UserFlowTests()

    /// A proof for `method` `path` (with `ath` when `token` is given), made with `key`, at the harness clock's time.
    func proof(_ h: Harness, _ key: SigningKey, _ method: String, _ path: String, token: String? = nil) throws -> String {
        var claims: [String: JSON?] = ["htm": .string(method), "htu": .string(Harness.issuer + path), "iat": .int(h.clock.now / 1000)]
        if let token { claims["ath"] = .string(Base64.urlEncode(Digest.sha256(token))) }
        return try DPoPTestProof.make(key, claims: claims)
    }

    @Test func rfc9449Section5And7AClientCredentialsTokenIsBoundAndUsedOnlyWithItsKey() throws {
        let h = try Harness()
        let key = try SigningKey.generate(.es256)
        let r = h.form("/oauth2/token", [("grant_type", "client_credentials"), ("scope", "clients:read tokens:introspect")],
                       basic: (h.primary.clientID, h.primary.clientSecret), headers: [("DPoP", try proof(h, key, "POST", "/oauth2/token"))])
        #expect(r.status == 200 && r.json?["token_type"] == "DPoP", "\(r.bodyText)")
        let token = try #require(r.json?["access_token"]?.stringValue)
        let jkt = try JWK.thumbprint(key)
        #expect(JWS.parse(token)?.payload["cnf"] == ["jkt": .string(jkt)])
        let path = "/api/v1/clients/\(h.primary.clientID)"
        // §7.1: as a bearer token, refused; with the DPoP scheme and a proof of its key for this request, accepted.
        let bearer = h.call("GET", path, headers: [("Authorization", "Bearer \(token)")])
        #expect(bearer.status == 401 && bearer.headers[.wwwAuthenticate]?.hasPrefix("DPoP") == true, "\(bearer.bodyText)")
        let ok = h.call("GET", path, headers: [("Authorization", "DPoP \(token)"), ("DPoP", try proof(h, key, "GET", path, token: token))])
        #expect(ok.status == 200, "\(ok.bodyText)")
        for (name, badProof) in [("no proof", nil), ("another key", try proof(h, try SigningKey.generate(.es256), "GET", path, token: token)),
                                 ("another method", try proof(h, key, "DELETE", path, token: token)),
                                 ("no ath", try proof(h, key, "GET", path))] as [(String, String?)] {
            var headers = [("Authorization", "DPoP \(token)")]
            if let badProof { headers.append(("DPoP", badProof)) }
            #expect(h.call("GET", path, headers: headers).status == 401, "\(name)")
        }
        // The DPoP scheme is for bound tokens (attacker review, session 19: an unbound one was taken with it, no proof asked).
        let plain = try #require(h.form("/oauth2/token", [("grant_type", "client_credentials"), ("scope", "clients:read")],
                                        basic: (h.primary.clientID, h.primary.clientSecret)).json?["access_token"]?.stringValue)
        #expect(h.call("GET", path, headers: [("Authorization", "Bearer \(plain)")]).status == 200)
        let unboundAsDPoP = h.call("GET", path, headers: [("Authorization", "DPoP \(plain)")])
        #expect(unboundAsDPoP.status == 401 && unboundAsDPoP.headers[.wwwAuthenticate]?.contains("invalid_token") == true)
        #expect(h.call("GET", path, headers: [("Authorization", "DPoP \(plain)"), ("DPoP", try proof(h, key, "GET", path, token: plain))]).status == 401)
        // §6.2: introspection names the key.
        let introspected = h.form("/oauth2/introspect", [("token", token)], basic: (h.primary.clientID, h.primary.clientSecret))
        #expect(introspected.json?["cnf"] == ["jkt": .string(jkt)] && introspected.json?["token_type"] == "DPoP")
        // A bad proof at the token endpoint is 400 invalid_dpop_proof.
        let bad = h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID, h.primary.clientSecret),
                         headers: [("DPoP", try proof(h, key, "POST", "/oauth2/introspect"))])
        #expect(bad.status == 400 && bad.json?["error"] == "invalid_dpop_proof")
    }

    /// §8 and §9: with server nonces configured, a proof without the current
    /// nonce is answered use_dpop_nonce with one in DPoP-Nonce (400 at the
    /// token endpoint, 401 with a DPoP challenge at a resource); a proof with
    /// it is accepted, for five to ten minutes, on any node sharing the store.
    @Test func rfc9449Sections8And9ServerNoncesWhenConfigured() throws {
        let h = try Harness(dpopNonces: true)
        let key = try SigningKey.generate(.es256)
        func nonceProof(_ method: String, _ path: String, nonce: String?, token: String? = nil) throws -> String {
            var claims: [String: JSON?] = ["htm": .string(method), "htu": .string(Harness.issuer + path), "iat": .int(h.clock.now / 1000)]
            if let nonce { claims["nonce"] = .string(nonce) }
            if let token { claims["ath"] = .string(Base64.urlEncode(Digest.sha256(token))) }
            return try DPoPTestProof.make(key, claims: claims)
        }
        func tokenRequest(_ proof: String) -> Response {
            h.form("/oauth2/token", [("grant_type", "client_credentials"), ("scope", "clients:read")],
                   basic: (h.primary.clientID, h.primary.clientSecret), headers: [("DPoP", proof)])
        }
        let first = tokenRequest(try nonceProof("POST", "/oauth2/token", nonce: nil))
        #expect(first.status == 400 && first.json?["error"] == "use_dpop_nonce", "\(first.bodyText)")
        let nonce = try #require(first.headers[.dpopNonce])
        // Answered before the client authenticates (an assertion sent along stays unspent, nothing is checked or written).
        let unauthenticated = h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID, "wrong"),
                                     headers: [("DPoP", try nonceProof("POST", "/oauth2/token", nonce: nil))])
        #expect(unauthenticated.status == 400 && unauthenticated.json?["error"] == "use_dpop_nonce")
        #expect(tokenRequest(try nonceProof("POST", "/oauth2/token", nonce: "x" + nonce.dropFirst())).json?["error"] == "use_dpop_nonce")
        let issued = tokenRequest(try nonceProof("POST", "/oauth2/token", nonce: nonce))
        #expect(issued.status == 200 && issued.json?["token_type"] == "DPoP", "\(issued.bodyText)")
        #expect(issued.headers[.dpopNonce] == nonce, "§8.2: the current nonce rides on the answer")
        let token = try #require(issued.json?["access_token"]?.stringValue)
        // At a resource: 401 with the challenge and a nonce, then accepted with it.
        let path = "/api/v1/clients/\(h.primary.clientID)"
        let resource = h.call("GET", path, headers: [("Authorization", "DPoP \(token)"), ("DPoP", try nonceProof("GET", path, nonce: nil, token: token))])
        #expect(resource.status == 401 && resource.headers[.wwwAuthenticate]?.contains("error=\"use_dpop_nonce\"") == true, "\(resource.bodyText)")
        #expect(resource.headers[.dpopNonce] == nonce)
        let read = h.call("GET", path, headers: [("Authorization", "DPoP \(token)"), ("DPoP", try nonceProof("GET", path, nonce: nonce, token: token))])
        #expect(read.status == 200 && read.headers[.dpopNonce] == nonce, "the management API's answer carries the nonce too")
        // The previous window's nonce still works; one from two windows ago does not.
        h.clock.advance(seconds: DPoPNonces.windowSeconds)
        #expect(tokenRequest(try nonceProof("POST", "/oauth2/token", nonce: nonce)).status == 200)
        h.clock.advance(seconds: DPoPNonces.windowSeconds)
        let stale = tokenRequest(try nonceProof("POST", "/oauth2/token", nonce: nonce))
        #expect(stale.json?["error"] == "use_dpop_nonce" && stale.headers[.dpopNonce] != nonce)
        // Another node (another worker over the same store) accepts this node's nonce.
        let other = try Worker(app: Application(env: { var e = h.env; e.dpopNonces = true; return e }(), logger: Logger(level: .off)),
                               store: try h.anotherStore())
        let fresh = try #require(stale.headers[.dpopNonce])
        let proof = try nonceProof("POST", "/oauth2/token", nonce: fresh)
        let body = Array(FormEncoding.serialize([("grant_type", "client_credentials"), ("scope", "clients:read")]).utf8)
        let elsewhere = other.handle(Request(method: .post, path: "/oauth2/token", query: "",
                                             headers: HTTPFields([("Content-Type", "application/x-www-form-urlencoded"), ("DPoP", proof),
                                                                  ("Authorization", Harness.basic(h.primary.clientID, h.primary.clientSecret))]),
                                             body: body, requestID: "req-other"))
        #expect(elsewhere.status == 200, "\(elsewhere.bodyText)")
        // Without the setting, no nonce is asked for or handed out.
        let plain = try Harness()
        let noNonce = plain.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (plain.primary.clientID, plain.primary.clientSecret),
                                 headers: [("DPoP", try DPoPTestProof.make(key, claims: ["htm": "POST", "htu": .string(Harness.issuer + "/oauth2/token"),
                                                                                         "iat": .int(plain.clock.now / 1000)]))])
        #expect(noNonce.status == 200 && noNonce.headers[.dpopNonce] == nil)
    }

    /// RFC 9449 §10: `dpop_jkt` binds the code to a key; the redemption
    /// needs a proof of that key, and a refused one leaves the code unspent.
    @Test func rfc9449Section10ACodeBoundWithDpopJktIsRedeemedOnlyWithItsKey() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let key = try SigningKey.generate(.es256), other = try SigningKey.generate(.es256)
        let pkce = PKCE()
        let b = Browser(h)
        let items = try PushedRequestTests().finish(b, b.authorize([
            ("response_type", "code"), ("client_id", client), ("redirect_uri", Harness.redirect), ("scope", "openid"),
            ("code_challenge", pkce.challenge), ("code_challenge_method", "S256"), ("dpop_jkt", try JWK.thumbprint(key))]))
        let code = try #require(items["code"])
        func redeem(_ proofKey: SigningKey?) throws -> Response {
            let headers = try proofKey.map { [("DPoP", try proof(h, $0, "POST", "/oauth2/token"))] } ?? []
            return h.form("/oauth2/token", [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Harness.redirect),
                                            ("code_verifier", pkce.verifier), ("client_id", client)], headers: headers)
        }
        #expect(try redeem(nil).json?["error"] == "invalid_dpop_proof")
        #expect(try redeem(other).json?["error"] == "invalid_dpop_proof")
        let tokens = try redeem(key)
        #expect(tokens.status == 200 && tokens.json?["token_type"] == "DPoP", "\(tokens.bodyText)")
        // A malformed dpop_jkt is an error for the client, in the query.
        let malformed = Browser(h).authorize([("response_type", "code"), ("client_id", client), ("redirect_uri", Harness.redirect),
                                              ("scope", "openid"), ("state", "s1"), ("code_challenge", pkce.challenge),
                                              ("code_challenge_method", "S256"), ("dpop_jkt", "not-a-thumbprint")])
        let error = queryItems(try #require(malformed.headers[.location]))
        #expect(error["error"] == "invalid_request" && error["state"] == "s1")
    }

    /// RFC 9449 §10.1: a proof sent with a pushed request binds the code;
    /// with `dpop_jkt` as well, both must name the same key.
    @Test func rfc9449Section10Point1AProofWithThePushBindsTheCode() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, secret) = try h.app(public: false)
        let par = PushedRequestTests()
        let key = try SigningKey.generate(.es256), other = try SigningKey.generate(.es256)
        let pkce = PKCE()
        func push(_ extra: [(String, String)], proofKey: SigningKey?) throws -> Response {
            let headers = try proofKey.map { [("DPoP", try proof(h, $0, "POST", "/oauth2/par"))] } ?? []
            return h.form("/oauth2/par", par.pushedParams(pkce) + extra, basic: (client, try #require(secret)), headers: headers)
        }
        let mismatch = try push([("dpop_jkt", try JWK.thumbprint(other))], proofKey: key)
        #expect(mismatch.status == 400 && mismatch.json?["error"] == "invalid_dpop_proof", "\(mismatch.bodyText)")
        let badProof = h.form("/oauth2/par", par.pushedParams(pkce), basic: (client, try #require(secret)),
                              headers: [("DPoP", try proof(h, key, "POST", "/oauth2/token"))])
        #expect(badProof.status == 400 && badProof.json?["error"] == "invalid_dpop_proof", "a proof for another URL")
        let pushed = try push([], proofKey: key)
        let uri = try #require(pushed.json?["request_uri"]?.stringValue, "\(pushed.bodyText)")
        let b = Browser(h)
        let code = try #require(try par.finish(b, b.authorize([("client_id", client), ("request_uri", uri)]))["code"])
        let basic = (client, try #require(secret))
        let items = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Harness.redirect), ("code_verifier", pkce.verifier)]
        #expect(h.form("/oauth2/token", items, basic: basic).json?["error"] == "invalid_dpop_proof")
        let tokens = h.form("/oauth2/token", items, basic: basic, headers: [("DPoP", try proof(h, key, "POST", "/oauth2/token"))])
        #expect(tokens.status == 200 && tokens.json?["token_type"] == "DPoP", "\(tokens.bodyText)")
        // The spent code replayed without the key: refused for the proof, and what it issued is not revoked (a replay
        // with the key would revoke it, RFC 6749 §4.1.2; without it the code cannot be used at all).
        #expect(h.form("/oauth2/token", items, basic: basic, headers: [("DPoP", try proof(h, other, "POST", "/oauth2/token"))])
            .json?["error"] == "invalid_dpop_proof")
        let access = try #require(tokens.json?["access_token"]?.stringValue)
        #expect(h.form("/oauth2/introspect", [("token", access)], basic: basic).json?["active"] == true, "not revoked")
    }

    /// An unauthenticated caller's proof is not recorded: nothing is stored for it.
    @Test func aProofIsRecordedOnlyForAnAuthenticatedClient() throws {
        let h = try Harness()
        let key = try SigningKey.generate(.es256)
        let jti = "anonymous-proof-1"
        let proof = try DPoPTestProof.make(key, claims: ["jti": .string(jti), "htm": "POST", "htu": .string(Harness.issuer + "/oauth2/token"),
                                                         "iat": .int(h.clock.now / 1000)])
        let r = h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID, "wrong"), headers: [("DPoP", proof)])
        #expect(r.status == 401)
        let jkt = try JWK.thumbprint(key)
        #expect(try h.store.write { try h.store.useProof(jkt: jkt, jti: jti, expiresAt: proofExpiry(h), now: h.clock.now) },
                "not recorded by the refused request")
    }

    /// A public client is "authenticated" by naming it: its proof is recorded
    /// by the grant once the code or refresh token has proved good (attacker
    /// review: a made-up refresh token stored a row per request), and a proof
    /// already used by one grant is refused by another, which spends nothing.
    @Test func rfc9449Section11_1APublicClientsProofIsRecordedByTheGrantThatUsesIt() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app(public: true)
        let key = try SigningKey.generate(.es256)
        let jkt = try JWK.thumbprint(key)
        func proof(_ jti: String) throws -> String {
            try DPoPTestProof.make(key, claims: ["jti": .string(jti), "htm": "POST", "htu": .string(Harness.issuer + "/oauth2/token"),
                                                 "iat": .int(h.clock.now / 1000)])
        }
        let madeUp = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", "lkr_made-up"), ("client_id", client)],
                            headers: [("DPoP", try proof("made-up-refresh"))])
        #expect(madeUp.status == 400 && madeUp.json?["error"] == "invalid_grant")
        let b = Browser(h), pkce = PKCE()
        let code = try flow.code(h, b, client: client, pkce: pkce)
        let redeem = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Harness.redirect),
                      ("code_verifier", pkce.verifier), ("client_id", client)]
        let tokens = h.form("/oauth2/token", redeem, headers: [("DPoP", try proof("redeem"))])
        #expect(tokens.status == 200 && tokens.json?["token_type"] == "DPoP", "\(tokens.bodyText)")
        let refresh = try #require(tokens.json?["refresh_token"]?.stringValue)
        let refreshing = [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)]
        let replayed = h.form("/oauth2/token", refreshing, headers: [("DPoP", try proof("redeem"))])
        #expect(replayed.status == 400 && replayed.json?["error"] == "invalid_dpop_proof", "\(replayed.bodyText)")
        #expect(h.form("/oauth2/token", refreshing, headers: [("DPoP", try proof("refresh"))]).status == 200, "the refresh token was not spent")
        #expect(try h.store.write { try h.store.useProof(jkt: jkt, jti: "made-up-refresh", expiresAt: proofExpiry(h), now: h.clock.now) },
                "the refused request recorded nothing")
        #expect(try !h.store.write { try h.store.useProof(jkt: jkt, jti: "refresh", expiresAt: proofExpiry(h), now: h.clock.now) },
                "the grant recorded its proof")
    }

    /// At PAR the same: a push refused for its request records nothing of
    /// its proof (attacker review: a public client's bad push stored a row),
    /// an accepted one records it with the pushed request, and a proof used
    /// once cannot push again.
    @Test func rfc9449Section11_1APushRecordsItsProofOnlyWhenAccepted() throws {
        let h = try Harness()
        let (client, _) = try h.app(public: true)
        let key = try SigningKey.generate(.es256)
        let jkt = try JWK.thumbprint(key)
        let pkce = PKCE()
        func push(_ jti: String, redirect: String) throws -> Response {
            let proof = try DPoPTestProof.make(key, claims: ["jti": .string(jti), "htm": "POST", "htu": .string(Harness.issuer + "/oauth2/par"),
                                                             "iat": .int(h.clock.now / 1000)])
            return h.form("/oauth2/par", [("client_id", client), ("response_type", "code"), ("redirect_uri", redirect), ("scope", "openid"),
                                          ("code_challenge", pkce.challenge), ("code_challenge_method", "S256")], headers: [("DPoP", proof)])
        }
        #expect(try push("refused-push", redirect: "https://attacker.example/cb").status == 400)
        #expect(try push("accepted-push", redirect: Harness.redirect).status == 201)
        let replayed = try push("accepted-push", redirect: Harness.redirect)
        #expect(replayed.status == 400 && replayed.json?["error"] == "invalid_dpop_proof", "\(replayed.bodyText)")
        #expect(try h.store.write { try h.store.useProof(jkt: jkt, jti: "refused-push", expiresAt: proofExpiry(h), now: h.clock.now) },
                "the refused push recorded nothing")
        #expect(try !h.store.write { try h.store.useProof(jkt: jkt, jti: "accepted-push", expiresAt: proofExpiry(h), now: h.clock.now) })
    }

    /// A registered client may add these flags with RFC 7592, never drop them (only an operator does).
    @Test func aRegisteredClientCannotDropItsStricterProfile() throws {
        let h = try Harness()
        let created = try #require(h.json("POST", "/oauth2/register", token: try h.token(), body: [
            "redirect_uris": ["https://rp.example/cb"], "dpop_bound_access_tokens": true, "require_pushed_authorization_requests": true]).json)
        let id = try #require(created["client_id"]?.stringValue), rat = try #require(created["registration_access_token"]?.stringValue)
        let replaced = h.json("PUT", "/oauth2/register/\(id)", token: rat, body: ["client_id": .string(id), "redirect_uris": ["https://rp.example/cb"]])
        #expect(replaced.status == 200 && replaced.json?["dpop_bound_access_tokens"] == true
                && replaced.json?["require_pushed_authorization_requests"] == true, "\(replaced.bodyText)")
    }

    @Test func rfc9449Section5Point2AClientMarkedDPoPBoundMustProve() throws {
        let h = try Harness()
        try h.store.write {
            var c = try #require(try h.store.client(h.primary.clientID))
            c.dpopBoundAccessTokens = true
            try h.store.updateClient(c)
        }
        let plain = h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID, h.primary.clientSecret))
        #expect(plain.status == 400 && plain.json?["error"] == "invalid_dpop_proof")
        let key = try SigningKey.generate(.es256)
        let proved = h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID, h.primary.clientSecret),
                            headers: [("DPoP", try proof(h, key, "POST", "/oauth2/token"))])
        #expect(proved.status == 200 && proved.json?["token_type"] == "DPoP")
    }

    /// Review, session 31. A stolen bound token sent with proofs of the thief's own keys is refused before any
    /// proof's jti is recorded (one row a request before); the integration surface's 401 keeps the DPoP challenge
    /// and the nonce (§7.1, §9) under its own body; userinfo takes no token from the body when an Authorization
    /// header came, even one naming the DPoP scheme alone (RFC 6750 §2).
    @Test func aProofOfAnotherKeyIsRefusedUnrecordedAndEverySurfaceSaysDPoP() throws {
        let h = try Harness(dpopNonces: true)
        let key = try SigningKey.generate(.es256)
        let tokenPath = "/oauth2/token"
        func nonceProof(_ key: SigningKey, _ method: String, _ path: String, nonce: String?, token: String? = nil) throws -> String {
            var claims: [String: JSON?] = ["htm": .string(method), "htu": .string(Harness.issuer + path), "iat": .int(h.clock.now / 1000)]
            if let nonce { claims["nonce"] = .string(nonce) }
            if let token { claims["ath"] = .string(Base64.urlEncode(Digest.sha256(token))) }
            return try DPoPTestProof.make(key, claims: claims)
        }
        let nonce = try #require(h.form(tokenPath, [("grant_type", "client_credentials")], basic: (h.primary.clientID, h.primary.clientSecret),
                                        headers: [("DPoP", try nonceProof(key, "POST", tokenPath, nonce: nil))]).headers[.dpopNonce])
        let issued = h.form(tokenPath, [("grant_type", "client_credentials"), ("scope", "clients:read manageExternalClients")],
                            basic: (h.primary.clientID, h.primary.clientSecret), headers: [("DPoP", try nonceProof(key, "POST", tokenPath, nonce: nonce))])
        let token = try #require(issued.json?["access_token"]?.stringValue, "\(issued.bodyText)")
        let recorded = try h.fixture.rows("dpop_proofs").count
        for path in ["/api/v1/clients/\(h.primary.clientID)", "/external/v1/oauth/client/current"] {
            let thief = h.call("GET", path, headers: [("Authorization", "DPoP \(token)"),
                                                      ("DPoP", try nonceProof(try SigningKey.generate(.es256), "GET", path, nonce: nonce, token: token))])
            #expect(thief.status == 401 && thief.headers[.wwwAuthenticate]?.hasPrefix("DPoP error=\"invalid_dpop_proof\"") == true,
                    "\(path): \(thief.headers) \(thief.bodyText)")
        }
        #expect(try h.fixture.rows("dpop_proofs").count == recorded, "no proof of another key is recorded")
        // The integration surface: its body, and RFC 9449's challenge and nonce.
        let integration = "/external/v1/oauth/client/current"
        let asBearer = h.call("GET", integration, headers: [("Authorization", "Bearer \(token)")])
        #expect(asBearer.status == 401 && asBearer.json?["code"] == "AU0001")
        #expect(asBearer.headers[.wwwAuthenticate]?.hasPrefix("DPoP error=\"invalid_token\"") == true, "\(asBearer.headers)")
        let noNonce = h.call("GET", integration, headers: [("Authorization", "DPoP \(token)"), ("DPoP", try nonceProof(key, "GET", integration, nonce: nil, token: token))])
        #expect(noNonce.status == 401 && noNonce.headers[.wwwAuthenticate]?.contains("use_dpop_nonce") == true && noNonce.headers[.dpopNonce] != nil,
                "\(noNonce.headers)")
        let read = h.call("GET", integration, headers: [("Authorization", "DPoP \(token)"), ("DPoP", try nonceProof(key, "GET", integration, nonce: nonce, token: token))])
        #expect(read.status == 200, "\(read.bodyText)")
        let unbound = try h.token(scope: "manageExternalClients")
        let plainRefusal = h.call("GET", integration, headers: [("Authorization", "Bearer x\(unbound)")])
        #expect(plainRefusal.status == 401 && plainRefusal.headers[.wwwAuthenticate] == "Bearer realm=\"latchkey\"")
    }

    /// The integration surface says "the calling client no longer exists" (AU0006) only to the holder of the
    /// token's key: a deleted client's DPoP-bound token sent as a bearer token, or with another key's proof, is
    /// refused as any bound token is (it was AU0006 whatever the proof, session 32's note).
    @Test func aDeletedClientsBoundTokenIsSaidGoneOnlyWithItsProof() throws {
        let h = try Harness()
        let doomed = try h.createClient(["client_name": "doomed", "scope": "manageExternalClients"], token: try h.token())
        let key = try SigningKey.generate(.es256)
        let issued = h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (doomed.id, doomed.secret),
                            headers: [("DPoP", try proof(h, key, "POST", "/oauth2/token"))])
        let token = try #require(issued.json?["access_token"]?.stringValue, "\(issued.bodyText)")
        #expect(h.json("DELETE", "/api/v1/clients/\(doomed.id)", token: try h.token()).status == 204)
        let path = "/external/v1/oauth/client/current"
        let recorded = try h.fixture.rows("dpop_proofs").count
        for (name, headers) in [("bearer", [("Authorization", "Bearer \(token)")]),
                                ("no proof", [("Authorization", "DPoP \(token)")]),
                                ("another key", [("Authorization", "DPoP \(token)"),
                                                 ("DPoP", try proof(h, try SigningKey.generate(.es256), "GET", path, token: token))])] {
            let r = h.call("GET", path, headers: headers)
            #expect(r.status == 401 && r.json?["code"] == "AU0001", "\(name): \(r.status) \(r.bodyText)")
        }
        let holder = h.call("GET", path, headers: [("Authorization", "DPoP \(token)"), ("DPoP", try proof(h, key, "GET", path, token: token))])
        #expect(holder.status == 404 && holder.json?["code"] == "AU0006", "\(holder.bodyText)")
        #expect(try h.fixture.rows("dpop_proofs").count == recorded, "no proof recorded for an answer that is an error")
    }

    /// RFC 6750 §2: userinfo takes its token from one place; with an Authorization header (the DPoP scheme alone,
    /// no token), a token in the body is not taken instead (review, session 31: it was, with its proof).
    @Test func userinfoTakesNoTokenFromTheBodyWhenAnAuthorizationHeaderCame() throws {
        let h = try Harness()
        let (_, key, _, access) = try boundTokens(h)
        let path = "/oauth2/userinfo"
        func post(_ authorization: String?) throws -> Response {
            var headers = [("Content-Type", "application/x-www-form-urlencoded"), ("DPoP", try proof(h, key, "POST", path, token: access))]
            if let authorization { headers.append(("Authorization", authorization)) }
            return h.call("POST", path, headers: headers, body: Array(FormEncoding.serialize([("access_token", access)]).utf8))
        }
        #expect(try post("DPoP").status == 401)
        #expect(try post("DPoP \(access)").status == 200)
    }

    /// Who calls before what the token allows: a bound token sent without a
    /// proof of its key is 401 on every surface, whether or not its scope
    /// covers the route (it was 403 where it did not, telling whoever holds a
    /// stolen token what it may do); with the proof, the scope is judged.
    @Test func rfc9449Section7_1TheBindingIsCheckedBeforeTheScope() throws {
        let h = try Harness()
        let key = try SigningKey.generate(.es256)
        let narrow = try #require(h.form("/oauth2/token", [("grant_type", "client_credentials"), ("scope", "clients:read")],
                                         basic: (h.primary.clientID, h.primary.clientSecret),
                                         headers: [("DPoP", try proof(h, key, "POST", "/oauth2/token"))]).json?["access_token"]?.stringValue)
        let (_, userKey, _, access) = try boundTokens(h, scope: "profile offline_access")
        let routes: [(String, String, String, SigningKey, [UInt8])] = [
            ("POST", "/api/v1/clients", narrow, key, Array(#"{"client_name": "x"}"#.utf8)),
            ("POST", "/external/v1/oauth/client", narrow, key, Array(#"{"password": "long-enough", "application": "x"}"#.utf8)),
            ("GET", "/v3/oauth-clients", narrow, key, []),
            // Its caller and the client read in one read transaction: the proof checked there was recorded, a write
            // inside a read, and the process stopped (review of the change, session 32).
            ("GET", "/api/v1/clients/\(h.primary.clientID)", try #require(h.form("/oauth2/token", [("grant_type", "client_credentials"),
                ("scope", "audit:read")], basic: (h.primary.clientID, h.primary.clientSecret),
                headers: [("DPoP", try proof(h, key, "POST", "/oauth2/token"))]).json?["access_token"]?.stringValue), key, []),
            ("GET", "/api/oauth/app", narrow, key, []),
            ("GET", "/api/v1/me/connections", access, userKey, []),
            ("GET", "/oauth2/userinfo", access, userKey, []),
        ]
        for (method, path, token, signer, body) in routes {
            for scheme in ["DPoP", "Bearer"] {
                let r = h.call(method, path, headers: [("Authorization", "\(scheme) \(token)"), ("Content-Type", "application/json")], body: body)
                #expect(r.status == 401, "\(method) \(path) as \(scheme) without a proof: \(r.status)")
            }
            let proven = h.call(method, path, headers: [("Authorization", "DPoP \(token)"), ("Content-Type", "application/json"),
                                                        ("DPoP", try proof(h, signer, method, path, token: token))], body: body)
            #expect(proven.status == 403, "\(method) \(path) with its proof: \(proven.status) \(proven.bodyText)")
        }
        #expect(try h.store.read { try h.store.clients(organizationID: h.primary.organizationID, namePrefix: nil, limit: 100, offset: 0) }.total == 2)
    }

    /// A public client's code redeemed with a proof of a new key: the client, the key and the bound tokens.
    func boundTokens(_ h: Harness, scope: String = "openid profile email offline_access") throws -> (client: String, key: SigningKey, refresh: String, access: String) {
        _ = try h.user()
        let (client, _) = try h.app(public: true)
        let key = try SigningKey.generate(.es256)
        let b = Browser(h), pkce = PKCE()
        let code = try flow.code(h, b, client: client, pkce: pkce, scope: scope)
        let tokens = h.form("/oauth2/token", [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", Harness.redirect),
                                              ("code_verifier", pkce.verifier), ("client_id", client)],
                            headers: [("DPoP", try proof(h, key, "POST", "/oauth2/token"))])
        #expect(tokens.status == 200 && tokens.json?["token_type"] == "DPoP", "\(tokens.bodyText)")
        return (client, key, try #require(tokens.json?["refresh_token"]?.stringValue), try #require(tokens.json?["access_token"]?.stringValue))
    }

    /// Review, session 25: anyone may name a public client, so its proof is verified only once the code or token
    /// the request names is found to be the client's. A made-up one is invalid_grant, whatever the proof (no
    /// signature checked under a key of the caller's choosing); for its own, the proof is checked as always.
    @Test func aPublicClientsProofIsVerifiedOnlyForACodeOrTokenOfItsOwn() throws {
        let h = try Harness()
        let (client, key, refresh, _) = try boundTokens(h)
        func token(_ items: [(String, String)], _ proof: String) -> Response {
            h.form("/oauth2/token", items + [("client_id", client)], headers: [("DPoP", proof)])
        }
        let madeUp: [[(String, String)]] = [
            [("grant_type", "authorization_code"), ("code", "lkc_made-up"), ("redirect_uri", Harness.redirect),
             ("code_verifier", String(repeating: "v", count: 43))],
            [("grant_type", "refresh_token"), ("refresh_token", "lkr_made-up")],
            [("grant_type", "refresh_token"), ("refresh_token", refresh + "x")],
        ]
        for items in madeUp {
            let r = token(items, "not.a.proof")
            #expect(r.status == 400 && r.json?["error"] == "invalid_grant", "\(items[0]) \(r.bodyText)")
        }
        let own = token([("grant_type", "refresh_token"), ("refresh_token", refresh)], "not.a.proof")
        #expect(own.status == 400 && own.json?["error"] == "invalid_dpop_proof", "\(own.bodyText)")
        let rotated = token([("grant_type", "refresh_token"), ("refresh_token", refresh)], try proof(h, key, "POST", "/oauth2/token"))
        #expect(rotated.status == 200 && rotated.json?["token_type"] == "DPoP", "\(rotated.bodyText)")
    }

    @Test func rfc9449Section5APublicClientsRefreshTokenIsBoundToItsKey() throws {
        let h = try Harness()
        let (client, key, refresh, access) = try boundTokens(h)
        // Introspection shows the binding of the refresh token too (SPEC 10.2: `cnf` at introspection).
        let introspected = h.form("/oauth2/introspect", [("token", refresh)], basic: (h.primary.clientID, h.primary.clientSecret))
        let jkt = try JWK.thumbprint(key)
        #expect(introspected.json?["token_type"] == "refresh_token" && introspected.json?["cnf"] == ["jkt": .string(jkt)], "\(introspected.bodyText)")
        // Userinfo with the bound token: its key's proof, or nothing.
        #expect(h.call("GET", "/oauth2/userinfo", headers: [("Authorization", "Bearer \(access)")]).status == 401)
        let info = h.call("GET", "/oauth2/userinfo", headers: [("Authorization", "DPoP \(access)"),
                                                               ("DPoP", try proof(h, key, "GET", "/oauth2/userinfo", token: access))])
        #expect(info.status == 200 && info.json?["sub"] != nil, "\(info.bodyText)")
        func refreshWith(_ signer: SigningKey?) throws -> Response {
            h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)],
                   headers: try signer.map { [("DPoP", try proof(h, $0, "POST", "/oauth2/token"))] } ?? [])
        }
        #expect(try refreshWith(nil).status == 400, "no proof")
        #expect(try refreshWith(try SigningKey.generate(.es256)).status == 400, "another key")
        let refreshed = try refreshWith(key)
        #expect(refreshed.status == 200 && refreshed.json?["token_type"] == "DPoP", "\(refreshed.bodyText)")
        // The rotated-out token in the hands of someone without the key: refused for the proof, and no revocation of
        // the family (its reuse would revoke it, but a holder without the key cannot use it at all).
        for signer in [nil, try SigningKey.generate(.es256)] {
            let stolen = try refreshWith(signer)
            #expect(stolen.status == 400 && stolen.json?["error"] == "invalid_dpop_proof", "\(stolen.bodyText)")
        }
        let next = try #require(refreshed.json?["refresh_token"]?.stringValue)
        let stillAlive = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", next), ("client_id", client)],
                                headers: [("DPoP", try proof(h, key, "POST", "/oauth2/token"))])
        #expect(stillAlive.status == 200, "\(stillAlive.bodyText)")
        let discovery = try #require(h.call("GET", "/.well-known/openid-configuration").json)
        #expect(discovery["dpop_signing_alg_values_supported"] == ["ES256", "RS256", "EdDSA"])
    }

    /// RFC 9449 §5 with RFC 7009: a public client's bound tokens are revoked only with a proof of their key
    /// (attacker review, session 24: the client id alone revoked a stolen bound refresh token's whole family). Without
    /// one, or with another key's, the answer is 400 `invalid_dpop_proof` (the token is the caller's own: it can
    /// send one), nothing ends and no proof is recorded; a proof is recorded with the revocation it allowed.
    @Test func rfc9449Section5APublicClientsBoundTokensAreRevokedOnlyWithTheirKey() throws {
        let h = try Harness()
        let (client, key, refresh, access) = try boundTokens(h)
        func revoke(_ token: String, _ signer: SigningKey?) throws -> Response {
            h.form("/oauth2/revoke", [("token", token), ("client_id", client)],
                   headers: try signer.map { [("DPoP", try proof(h, $0, "POST", "/oauth2/revoke"))] } ?? [])
        }
        func active(_ token: String) -> Bool {
            h.form("/oauth2/introspect", [("token", token)], basic: (h.primary.clientID, h.primary.clientSecret)).json?["active"] == true
        }
        let stranger = try SigningKey.generate(.es256)
        for (i, token) in [refresh, access].enumerated() {
            let withoutProof = try revoke(token, nil)
            #expect(withoutProof.status == 400 && withoutProof.json?["error"] == "invalid_dpop_proof", "\(withoutProof.bodyText)")
            let strangers = try DPoPTestProof.make(stranger, claims: ["htm": "POST", "htu": .string(Harness.issuer + "/oauth2/revoke"),
                                                                       "iat": .int(h.clock.now / 1000), "jti": .string("refused-\(i)")])
            let otherKey = h.form("/oauth2/revoke", [("token", token), ("client_id", client)], headers: [("DPoP", strangers)])
            #expect(otherKey.status == 400 && otherKey.json?["error"] == "invalid_dpop_proof", "\(otherKey.bodyText)")
            #expect(active(token), "revoked without the key")
            // The refused revocation recorded no proof: this one's jti is still free.
            #expect(try h.store.write { try h.store.useProof(jkt: try JWK.thumbprint(stranger), jti: "refused-\(i)", expiresAt: proofExpiry(h), now: h.clock.now) })
        }
        // A proof that is no proof is refused as one.
        let garbage = h.form("/oauth2/revoke", [("token", access), ("client_id", client)], headers: [("DPoP", "not.a.proof")])
        #expect(garbage.status == 400 && garbage.json?["error"] == "invalid_dpop_proof", "\(garbage.bodyText)")
        // A proof of the key, once: the same proof again is a replay.
        let once = try proof(h, key, "POST", "/oauth2/revoke")
        #expect(h.form("/oauth2/revoke", [("token", access), ("client_id", client)], headers: [("DPoP", once)]).status == 200)
        #expect(!active(access))
        let replayed = h.form("/oauth2/revoke", [("token", refresh), ("client_id", client)], headers: [("DPoP", once)])
        #expect(replayed.status == 400 && replayed.json?["error"] == "invalid_dpop_proof", "\(replayed.bodyText)")
        #expect(active(refresh))
        #expect(try revoke(refresh, key).status == 200)
        #expect(!active(refresh))
        // Unknown tokens are answered 200 with or without a proof, and spend none. A proof is read only for a bound
        // token: for any other, not even one that is no proof is looked at (review, session 25: anyone naming a
        // public client had a signature checked, under a key of their choosing, for a made-up token).
        #expect(h.form("/oauth2/revoke", [("token", "lkr_unknown"), ("client_id", client)], headers: [("DPoP", "not.a.proof")]).status == 200)
        let unknownProof = try proof(h, key, "POST", "/oauth2/revoke")
        #expect(h.form("/oauth2/revoke", [("token", "lkr_unknown"), ("client_id", client)], headers: [("DPoP", unknownProof)]).status == 200)
        #expect(h.form("/oauth2/revoke", [("token", access), ("client_id", client)], headers: [("DPoP", unknownProof)]).status == 200)
    }
}

/// Proofs as a client library makes them (the header carries the public key).
enum DPoPTestProof {
    static func make(_ key: SigningKey, claims: [String: JSON?]) throws -> String {
        // A fresh jti unless `claims` names one.
        var payload: [(String, JSON)] = claims.keys.contains("jti") ? [] : [("jti", .string(Base64.urlEncode(SecureRandom.bytes(12))))]
        for (name, value) in claims { if let value { payload.append((name, value)) } }
        let header: JSON = ["typ": "dpop+jwt", "alg": .string(key.algorithm.rawValue), "jwk": try JWK.publicJWK(key, kid: "k")]
        let input = Base64.urlEncode(header.serialized()) + "." + Base64.urlEncode(JSON.object(payload).serialized())
        return input + "." + Base64.urlEncode(try key.sign(Array(input.utf8)))
    }
}

/// What a proof made now (`iat` the harness's clock) is recorded until: probing the store with it asks whether
/// that proof was taken (the record is keyed by the expiry the proof itself gives, `DPoP.verify`).
private func proofExpiry(_ h: Harness) -> Int64 { (h.clock.now / 1000 + 2 * DPoP.windowSeconds) * 1000 }

import Common
import HTTPCore
import OAuth
import TestSupport
import Testing

/// `/oauth2/register` at the HTTP surface (RFC 7591 §3, RFC 7592 §2):
/// status codes, error bodies and challenges, for every kind of caller.
@Suite struct RegistrationEndpointTests {
    static let metadata: JSON = ["redirect_uris": ["https://rp.example/cb"], "client_name": "RP", "token_endpoint_auth_method": "client_secret_post"]

    func register(_ h: Harness, token: String?, body: JSON = metadata) -> Response {
        h.json("POST", "/oauth2/register", token: token, body: body)
    }

    @Test func anInitialAccessTokenRegistersAndTheClientManagesItself() throws {
        let h = try Harness()
        let r = register(h, token: try h.token())
        #expect(r.status == 201, "\(r.bodyText)")
        #expect(r.headers[.cacheControl] == "no-store")
        let body = try #require(r.json)
        let id = try #require(body["client_id"]?.stringValue), token = try #require(body["registration_access_token"]?.stringValue)
        #expect(body["token_endpoint_auth_method"] == "client_secret_post" && body["id_token_signed_response_alg"] == "RS256")
        #expect(body["client_secret"]?.stringValue?.hasPrefix("lks_") == true)
        // RFC 7592: read (no secret, no token), replace, delete with the registration access token.
        let read = h.json("GET", "/oauth2/register/\(id)", token: token)
        #expect(read.status == 200 && read.json?["client_secret"] == nil && read.json?["registration_access_token"] == nil)
        // A Bearer token (§3); with the DPoP scheme, as none (session 19).
        #expect(h.call("GET", "/oauth2/register/\(id)", headers: [("Authorization", "DPoP \(token)")]).status == 401)
        let replaced = h.json("PUT", "/oauth2/register/\(id)", token: token, body: ["client_id": .string(id), "redirect_uris": ["https://rp.example/2"]])
        #expect(replaced.status == 200 && replaced.json?["redirect_uris"] == ["https://rp.example/2"])
        // §2.2: a client_secret sent must be the current one (attacker review, session 17: any value was ignored).
        let secret = try #require(body["client_secret"]?.stringValue)
        let wrong = h.json("PUT", "/oauth2/register/\(id)", token: token,
                           body: ["client_id": .string(id), "redirect_uris": ["https://rp.example/3"], "client_secret": "lks_wrong"])
        #expect(wrong.status == 400 && wrong.json?["error"] == "invalid_client_metadata", "\(wrong.bodyText)")
        let right = h.json("PUT", "/oauth2/register/\(id)", token: token,
                           body: ["client_id": .string(id), "redirect_uris": ["https://rp.example/3"], "client_secret": .string(secret)])
        #expect(right.status == 200 && right.json?["redirect_uris"] == ["https://rp.example/3"], "\(right.bodyText)")
        // Wrong ones count against the client's failure limit (10 a minute), as at the token endpoint.
        for _ in 0..<9 {
            #expect(h.json("PUT", "/oauth2/register/\(id)", token: token,
                           body: ["client_id": .string(id), "redirect_uris": ["https://rp.example/3"], "client_secret": "lks_guess"]).status == 400)
        }
        let limited = h.json("PUT", "/oauth2/register/\(id)", token: token,
                             body: ["client_id": .string(id), "redirect_uris": ["https://rp.example/3"], "client_secret": "lks_guess"])
        #expect(limited.status == 429 && limited.headers[.retryAfter] != nil, "\(limited.status) \(limited.bodyText)")
        #expect(h.json("DELETE", "/oauth2/register/\(id)", token: token).status == 204)
        // Every write names its request in the audit log (SPEC 6.0), the token holder's included.
        let events = try h.store.auditEvents(organizationID: h.primary.organizationID, limit: 100, offset: 0).events.filter { $0.target == id }
        #expect(Set(events.map(\.action)) == ["client.created", "client.updated", "client.deleted"])
        #expect(events.allSatisfy { $0.requestID == "req-test" }, "\(events.map(\.requestID))")
        #expect(h.json("GET", "/oauth2/register/\(id)", token: token).status == 401)
    }

    @Test func everyOtherCallerIsRefusedWithTheRightAnswer() throws {
        let h = try Harness()
        // No token and no open organization: 401 with a challenge.
        let anonymous = register(h, token: nil)
        #expect(anonymous.status == 401 && anonymous.json?["error"] == "invalid_token")
        #expect(anonymous.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
        // A token narrowed to clients:read is not an initial access token.
        #expect(register(h, token: try h.token(scope: "clients:read")).json?["error"] == "insufficient_scope")
        // A garbage bearer token.
        #expect(register(h, token: "not-a-token").status == 401)
        // A registered client's registration token is not a management token, nor another client's key.
        let created = try #require(register(h, token: try h.token()).json)
        let token = try #require(created["registration_access_token"]?.stringValue)
        #expect(register(h, token: token).status == 401)
        #expect(h.json("GET", "/oauth2/register/\(h.primary.clientID)", token: token).status == 401)
        #expect(h.json("GET", "/api/v1/clients", token: token).status == 401)
    }

    /// Attacker review, session 9: an anonymous registrant's own update (RFC 7592 §2.2) gave it client_credentials and
    /// the organization's API scopes; it stays within what an anonymous registration may ask for.
    @Test func anAnonymousRegistrantsUpdatesStayWithinTheAnonymousLimits() throws {
        let h = try Harness()
        try ClientRegistration.setOpen(true, organizationID: h.primary.organizationID, store: h.store)
        let created = try #require(register(h, token: nil).json)
        let id = try #require(created["client_id"]?.stringValue), token = try #require(created["registration_access_token"]?.stringValue)
        let base: [(String, JSON)] = [("client_id", .string(id)), ("redirect_uris", ["https://rp.example/cb"]), ("client_name", "RP")]
        for (name, value) in [("grant_types", JSON(["authorization_code", "client_credentials"])), ("scope", "openid createSubscription"),
                              ("scope", "openid gov.user.oauth.authorize")] {
            let r = h.json("PUT", "/oauth2/register/\(id)", token: token, body: .object(base + [(name, value)]))
            #expect(r.status == 400 && r.json?["error"] == "invalid_client_metadata", "\(name): \(r.bodyText)")
        }
        let secret = try #require(created["client_secret"]?.stringValue)
        #expect(h.form("/oauth2/token", [("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret)])
            .json?["error"] == "unauthorized_client")
        // What an anonymous registration may have, it may still change.
        let allowed = h.json("PUT", "/oauth2/register/\(id)", token: token, body: .object(base + [("scope", "openid email")]))
        #expect(allowed.status == 200 && allowed.json?["scope"] == "openid email", "\(allowed.bodyText)")
        // A client registered with a management token is not held to them.
        let managed = try #require(register(h, token: try h.token()).json)
        let managedID = try #require(managed["client_id"]?.stringValue)
        let widened = h.json("PUT", "/oauth2/register/\(managedID)", token: try #require(managed["registration_access_token"]?.stringValue),
                             body: ["client_id": .string(managedID), "redirect_uris": ["https://rp.example/cb"], "scope": "openid createSubscription"])
        #expect(widened.status == 200, "\(widened.bodyText)")
    }

    /// Attacker review, session 17: registering and deleting in a loop kept a retired id and two audit events each time,
    /// without end. Anonymous registrations now spend an allowance (the organization's client limit a day) that a delete
    /// gives nothing back to; a refused registration spends none, and one with an initial access token none either.
    @Test func anonymousRegistrationsSpendADailyAllowanceThatDeletesDoNotRefund() throws {
        let h = try Harness()
        let org = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Open", clientLimit: 2)
        try ClientRegistration.setOpen(true, organizationID: org.organizationID, store: h.store)
        // Invalid metadata is refused before anything is spent.
        #expect(register(h, token: nil, body: ["redirect_uris": ["http://rp.example/cb"]]).status == 400)
        for _ in 0..<2 {
            let created = try #require(register(h, token: nil).json)
            let id = try #require(created["client_id"]?.stringValue)
            #expect(h.json("DELETE", "/oauth2/register/\(id)", token: try #require(created["registration_access_token"]?.stringValue)).status == 204)
        }
        let spent = register(h, token: nil)
        #expect(spent.status == 429 && spent.json?["error"] == "temporarily_unavailable", "\(spent.bodyText)")
        #expect(spent.headers[.retryAfter] == "86400" && spent.headers[.cacheControl] == "no-store")
        #expect(try h.store.read { try h.store.clientCount(organizationID: org.organizationID) } == 1, "its primary: the refused one left nothing")
        // An initial access token's registrations are the organization's own business.
        #expect(register(h, token: try h.token()).status == 201)
        h.clock.advance(seconds: 3_600)
        #expect(register(h, token: nil).headers[.retryAfter] == "82800")
        h.clock.advance(seconds: 82_800)
        #expect(register(h, token: nil).status == 201, "a new window")
    }

    /// Attacker review, session 18: an anonymous client's RFC 7592 replacements, each an audit event and a version,
    /// were bounded by nginx's write rate alone (about 864k a day per address). They spend the organization's
    /// anonymous allowance now, as its registration did; a refused one spends none, and a client an initial access
    /// token registered writes as its organization does.
    @Test func anAnonymousClientsReplacementsSpendTheAnonymousAllowance() throws {
        let h = try Harness()
        let org = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Open", clientLimit: 3)
        try ClientRegistration.setOpen(true, organizationID: org.organizationID, store: h.store)
        let created = try #require(register(h, token: nil).json)
        let id = try #require(created["client_id"]?.stringValue), rat = try #require(created["registration_access_token"]?.stringValue)
        func replace(_ name: String, scope: String = "openid") -> Response {
            h.json("PUT", "/oauth2/register/\(id)", token: rat,
                   body: ["client_id": .string(id), "redirect_uris": ["https://rp.example/cb"], "client_name": .string(name), "scope": .string(scope)])
        }
        #expect(replace("refused", scope: "openid clients:write").status == 400, "refused: spends nothing")
        #expect(replace("first").status == 200)
        #expect(replace("second").status == 200)
        let spent = replace("third")
        #expect(spent.status == 429 && spent.json?["error"] == "temporarily_unavailable" && spent.headers[.retryAfter] == "86400", "\(spent.bodyText)")
        #expect(try h.store.read { try h.store.client(id) }?.name == "second", "the refused replacement changed nothing")
        #expect(register(h, token: nil).status == 429, "registrations share the allowance")
        // A client registered with an initial access token is its organization's business.
        let managed = try #require(register(h, token: try h.token()).json)
        let managedID = try #require(managed["client_id"]?.stringValue)
        for name in ["a", "b", "c", "d"] {
            #expect(h.json("PUT", "/oauth2/register/\(managedID)", token: try #require(managed["registration_access_token"]?.stringValue),
                           body: ["client_id": .string(managedID), "redirect_uris": ["https://rp.example/cb"], "client_name": .string(name)]).status == 200)
        }
        h.clock.advance(seconds: 86_400)
        #expect(replace("a new window").status == 200)
    }

    /// Attacker review, session 17: an operator who rotated a registered client's secret (its configuration leaked)
    /// or took a grant, scope or redirect URI from it was undone by the registration access token kept beside that
    /// secret (a PUT switching the method back got a new secret; a PUT put the URI back). The operator's cut ends the
    /// token; the client's own changes and an operator's harmless ones keep it.
    @Test func anOperatorsCutEndsTheRegistrationAccessToken() throws {
        let h = try Harness()
        let operatorToken = try h.token()
        func registered() throws -> (id: String, token: String) {
            let body = try #require(register(h, token: operatorToken, body: ["redirect_uris": ["https://rp.example/cb", "https://rp.example/2"],
                                                                           "client_name": "RP", "scope": "openid profile",
                                                                           "grant_types": ["authorization_code", "refresh_token"]]).json)
            return (try #require(body["client_id"]?.stringValue), try #require(body["registration_access_token"]?.stringValue))
        }
        func read(_ c: (id: String, token: String)) -> Int { h.json("GET", "/oauth2/register/\(c.id)", token: c.token).status.code }
        let merge = "application/merge-patch+json"
        // Harmless: a description. The client's own narrowing: its own business.
        let kept = try registered()
        #expect(h.json("PATCH", "/api/v1/clients/\(kept.id)", token: operatorToken, body: ["description": "ours"], contentType: merge).status == 200)
        #expect(h.json("PUT", "/oauth2/register/\(kept.id)", token: kept.token,
                       body: ["client_id": .string(kept.id), "redirect_uris": ["https://rp.example/cb"], "scope": "openid"]).status == 200)
        #expect(read(kept) == 200)
        // An operator's cuts.
        let rotated = try registered()
        #expect(h.json("POST", "/api/v1/clients/\(rotated.id)/secret", token: operatorToken, body: [:]).status == 200)
        #expect(read(rotated) == 401)
        let switched = h.json("PUT", "/oauth2/register/\(rotated.id)", token: rotated.token,
                              body: ["client_id": .string(rotated.id), "redirect_uris": ["https://rp.example/cb"], "token_endpoint_auth_method": "none"])
        #expect(switched.status == 401, "no new secret for whoever kept the old token")
        for (field, value) in [("redirect_uris", JSON(["https://rp.example/cb"])), ("scope", "openid"), ("grant_types", JSON(["authorization_code"])),
                               // A credential replaced by switching the method: the holder could switch back and get a secret.
                               ("token_endpoint_auth_method", "client_secret_post"), ("backchannel_logout_uri", "https://rp.example/bcl")] {
            let cut = try registered()
            #expect(h.json("PATCH", "/api/v1/clients/\(cut.id)", token: operatorToken, body: .object([(field, value)]), contentType: merge).status == 200)
            #expect(read(cut) == 401, "\(field)")
        }
    }

    @Test func badBodiesAreRFC7591Errors() throws {
        let h = try Harness()
        let token = try h.token()
        let fragment = register(h, token: token, body: ["redirect_uris": ["https://rp.example/cb#f"]])
        #expect(fragment.status == 400 && fragment.json?["error"] == "invalid_redirect_uri")
        let alg = register(h, token: token, body: ["redirect_uris": ["https://rp.example/cb"], "id_token_signed_response_alg": "HS256"])
        #expect(alg.status == 400 && alg.json?["error"] == "invalid_client_metadata")
        let malformed = h.call("POST", "/oauth2/register", headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "application/json")],
                               body: Array("{".utf8))
        #expect(malformed.status == 400 && malformed.json?["error"] == "invalid_client_metadata")
        let form = h.call("POST", "/oauth2/register", headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "application/x-www-form-urlencoded")],
                          body: Array("a=b".utf8))
        #expect(form.status == 415 && form.json?["error"] == "invalid_client_metadata")
    }

    @Test func discoveryNamesTheRegistrationEndpoint() throws {
        let h = try Harness()
        #expect(h.call("GET", "/.well-known/openid-configuration").json?["registration_endpoint"] == .string(Harness.issuer + "/oauth2/register"))
    }
}

extension RegistrationEndpointTests {
    /// A client's changes to itself without a management scope are each an audit row: `AbuseGuards.ownChangesPerHour`
    /// a client (its own secret on the native and integration surfaces, its RFC 7592 registration), then 429 with
    /// Retry-After until the hour has passed; another client's are its own (review, session 34: a token with no
    /// scope rotated its own secret at nginx's limit, an audit row each). A wrong registration token spends nothing.
    @Test func aClientChangesItselfAtMostTwentyTimesAnHour() throws {
        let h = try Harness()
        let limit = AbuseGuards.ownChangesPerHour
        let bare = try h.createClient(["client_name": "bare", "scope": ""], token: try h.token())
        let own = try h.token(clientID: bare.id, secret: bare.secret)
        for i in 0..<limit {
            let r = i % 2 == 0 ? h.json("POST", "/api/v1/clients/current/secret", token: own, body: ["grace_period_seconds": 3600])
                               : h.json("PUT", "/external/v1/oauth/password", token: own, body: ["password": .string("own-password-\(i)")])
            #expect(r.status.code / 100 == 2, "\(i): \(r.status) \(r.bodyText)")
        }
        let audited = try h.fixture.rows("audit_events").count
        let refused = h.json("POST", "/api/v1/clients/current/secret", token: own, body: [:])
        #expect(refused.status == 429 && refused.headers[.retryAfter].flatMap { Int($0) }.map { $0 > 0 && $0 <= 3600 } == true)
        #expect(refused.json?["detail"]?.stringValue?.hasPrefix("Too many changes;") == true, "\(refused.bodyText)")
        #expect(h.json("PUT", "/external/v1/oauth/password", token: own, body: ["password": "another-own"]).status == 429)
        #expect(try h.fixture.rows("audit_events").count == audited, "nothing written")
        h.clock.advance(seconds: 3601)
        let later = try h.token(clientID: bare.id, secret: "own-password-\(limit - 1)")
        #expect(h.json("POST", "/api/v1/clients/current/secret", token: later, body: [:]).status == 200)

        // RFC 7592: the registration's replacements likewise; a wrong token spends none.
        let r = register(h, token: try h.token())
        let id = try #require(r.json?["client_id"]?.stringValue), token = try #require(r.json?["registration_access_token"]?.stringValue)
        for _ in 0..<3 { #expect(h.json("PUT", "/oauth2/register/\(id)", token: "wrong", body: ["client_id": .string(id)]).status == 401) }
        for i in 0..<limit {
            let replaced = h.json("PUT", "/oauth2/register/\(id)", token: token,
                                  body: ["client_id": .string(id), "redirect_uris": .array([.string("https://rp.example/\(i)")])])
            #expect(replaced.status == 200, "\(i): \(replaced.bodyText)")
        }
        let over = h.json("PUT", "/oauth2/register/\(id)", token: token, body: ["client_id": .string(id), "redirect_uris": ["https://rp.example/x"]])
        #expect(over.status == 429 && over.headers[.retryAfter] != nil, "\(over.status) \(over.bodyText)")
        // The primary's own secret is its own allowance.
        #expect(h.json("POST", "/api/v1/clients/current/secret", token: try h.token(), body: ["grace_period_seconds": 3600]).status == 200)
    }
}

import Common
import HTTPCore
import OAuth
import Server
import TestSupport
import Testing

/// The whole route table against every kind of caller a route must turn
/// away. Every route is named here with who may call it; a route added to
/// the table without a line here fails the test, so no new route can be
/// left out of this check by forgetting it. Each protected route is called
/// with each credential its guard refuses (none, a made-up token, a user's
/// token, a deleted client's, another organization's, a management token
/// where a user is expected, a wrong secret), with a body it would take from
/// the right caller: every answer is a 4xx, and the database is as it was.
/// The statuses themselves, route by route, are in the surfaces' own tests
/// and `SecurityReviewTests.everyManagementRouteRefusesEveryWrongKindOfToken`.
@Suite struct RouteTableTests {
    /// Who may call a route.
    enum Guard {
        /// Anyone: public documents, the browser's entry points, health.
        case open
        /// A client authenticating itself (secret or assertion) in the request.
        case client
        /// A management client's own client_credentials token (SPEC 3).
        case management
        /// The upstream records' HTTP Basic client credentials (SPEC 6.5).
        case upstream
        /// A user's access token (userinfo, the app API's user routes).
        case user
        /// A signed-in browser's session cookie.
        case session
        /// The registration access token of RFC 7592.
        case registration
    }

    /// Every route of the table: its guard, and a request body the right caller could send.
    static func table(target: String) -> [String: (guard: Guard, body: JSON?)] {
        let client: JSON = ["client_name": "m"]
        return [
            "GET /healthz": (.open, nil), "GET /metrics": (.open, nil),
            "GET /.well-known/openid-configuration": (.open, nil), "GET /.well-known/oauth-authorization-server": (.open, nil),
            "GET /oauth2/jwks": (.open, nil), "GET /api/oauth/openid-configuration": (.open, nil), "GET /api/oauth/jwks": (.open, nil),
            "GET /oauth2/authorize": (.open, nil), "POST /oauth2/authorize": (.open, nil), "GET /oauth2/authorize/continue": (.open, nil),
            "GET /oauth2/logout": (.open, nil), "POST /oauth2/logout": (.open, nil),
            // Open registration (SPEC 10.1): anyone, within its limits; what it may register is its own test's.
            "POST /oauth2/register": (.open, nil),
            // Signing in: its refusals are the wrong password's (UserPasswordTests).
            "POST /api/v1/session": (.open, nil),
            // Public views of an app (SPEC 6.4): name, logo, previews.
            "GET /api/oauth/app/id/{client_id}": (.open, nil), "GET /api/oauth/app/id/{client_id}/image": (.open, nil),
            "GET /api/oauth/app/ids": (.open, nil),
            // A client's logo is public: the consent page shows it.
            "GET /api/v1/clients/{id}/logo": (.open, nil),

            "POST /oauth2/token": (.client, nil), "POST /api/oauth/token": (.client, nil), "POST /oauth2/introspect": (.client, nil),
            "POST /oauth2/revoke": (.client, nil), "POST /oauth2/par": (.client, nil), "POST /oauth2/device_authorization": (.client, nil),

            "GET /oauth2/userinfo": (.user, nil), "POST /oauth2/userinfo": (.user, nil),
            "GET /api/oauth/userinfo": (.user, nil), "POST /api/oauth/userinfo": (.user, nil),
            "POST /api/oauth/auth/code": (.user, nil), "GET /api/oauth/connection": (.user, nil),
            "GET /api/oauth/connection/id/{client_id}": (.user, nil), "DELETE /api/oauth/connection/id/{client_id}": (.user, nil),

            "GET /api/v1/session": (.session, nil), "DELETE /api/v1/session": (.session, nil),
            "GET /api/v1/authorization-requests/{id}": (.session, nil),
            "POST /api/v1/authorization-requests/{id}/accept": (.session, ["scope": ["openid"]]),
            "POST /api/v1/authorization-requests/{id}/reject": (.session, [:]),
            "POST /api/v1/device": (.session, ["user_code": "BCDF-GHJK"]),
            "GET /api/v1/me/profile": (.session, nil), "PUT /api/v1/me/profile": (.session, ["name": "Mallory"]),
            "GET /api/v1/me/connections": (.session, nil), "GET /api/v1/me/connections/{client_id}": (.session, nil),
            "DELETE /api/v1/me/connections/{client_id}": (.session, nil),

            "GET /oauth2/register/{client_id}": (.registration, nil), "PUT /oauth2/register/{client_id}": (.registration, ["client_id": .string(target)]),
            "DELETE /oauth2/register/{client_id}": (.registration, nil),

            "GET /api/v1/organization": (.management, nil), "GET /api/v1/audit": (.management, nil),
            "POST /api/v1/clients": (.management, client), "GET /api/v1/clients": (.management, nil),
            "GET /api/v1/clients/current": (.management, nil), "POST /api/v1/clients/current/secret": (.management, nil),
            "GET /api/v1/clients/{id}": (.management, nil), "PATCH /api/v1/clients/{id}": (.management, ["description": "d"]),
            "PUT /api/v1/clients/{id}": (.management, client), "DELETE /api/v1/clients/{id}": (.management, nil),
            "POST /api/v1/clients/{id}/secret": (.management, nil), "PUT /api/v1/clients/{id}/logo": (.management, nil),
            "DELETE /api/v1/clients/{id}/logo": (.management, nil),
            "POST /external/v1/oauth/client": (.management, ["password": "long-enough", "application": "m"]),
            "PUT /external/v1/oauth/client": (.management, ["clientId": .string(target), "application": "m"]),
            "GET /external/v1/oauth/client": (.management, nil),
            "PUT /external/v1/oauth/client/password-reset": (.management, ["clientId": .string(target), "password": "long-enough"]),
            "GET /external/v1/oauth/client/current": (.management, nil), "PUT /external/v1/oauth/password": (.management, ["password": "long-enough"]),
            "DELETE /external/v1/oauth/client/{clientId}": (.management, nil),
            "POST /v3/oauth-clients": (.management, IdentitySurfaceTests.createBody), "GET /v3/oauth-clients": (.management, nil),
            "GET /v3/oauth-clients/{id}": (.management, nil), "PATCH /v3/oauth-clients/{id}": (.management, ["name": "m"]),
            "DELETE /v3/oauth-clients/{id}": (.management, nil),
            "GET /api/oauth/app": (.management, nil), "POST /api/oauth/app": (.management, ["name": "m", "redirect_uri": "https://m.example/cb"]),
            "PUT /api/oauth/app/id/{client_id}": (.management, ["name": "m", "redirect_uri": "https://m.example/cb"]),
            "PUT /api/oauth/app/id/{client_id}/image": (.management, nil), "PUT /api/oauth/app/id/{client_id}/rotate": (.management, nil),
            "DELETE /api/oauth/app/id/{client_id}": (.management, nil),

            "POST /uc/resources/oauthclient": (.upstream, nil), "PUT /uc/resources/oauthclient": (.upstream, nil),
            "GET /uc/resources/oauthclient": (.upstream, nil), "DELETE /uc/resources/oauthclient": (.upstream, nil),
            "GET /uc/resources/oauthclient/list": (.upstream, nil),
        ]
    }

    /// The tables a refused request may still write: the failure counts that make repeated refusals cost more (SPEC 7.1).
    static let countersOfRefusals: Set<String> = ["failure_counts"]

    @Test func everyRouteIsNamedWithItsGuardAndRefusesEveryCallerItsGuardTurnsAway() throws {
        let h = try Harness()
        let review = SecurityReviewTests()
        let (_, _, userToken) = try review.userTokenOfAManagingClient(h)
        let primary = try h.token()
        let target = try #require(h.json("POST", "/api/oauth/app", token: primary,
                                         body: ["name": "target", "redirect_uri": "https://t.example/cb"]).json?["client_id"]?.stringValue)
        let doomed = try #require(h.json("POST", "/api/v1/clients", token: primary, body: [
            "client_name": "doomed", "scope": .string(Scopes.join(Scopes.primary.filter { $0 != "keys:manage" })),
        ]).json)
        let doomedID = try #require(doomed["client_id"]?.stringValue)
        let doomedSecret = try #require(doomed["client_secret"]?.stringValue)
        let deletedToken = try h.token(clientID: doomedID, secret: doomedSecret)
        #expect(h.json("DELETE", "/api/v1/clients/\(doomedID)", token: primary).status == 204)
        let orgB = try Provisioning(env: h.env, store: h.store).createOrganization(name: "B", clientLimit: 10)
        let foreign = try h.token(clientID: orgB.clientID, secret: orgB.clientSecret)

        let table = Self.table(target: target)
        let routes = h.worker.app.router.routes.map { "\($0.method) \($0.handler.pattern)" }
        #expect(Set(routes).count == routes.count)
        for route in routes where table[route] == nil { Issue.record("\(route) is in the route table but not named here with its guard") }
        for route in table.keys where !routes.contains(route) { Issue.record("\(route) is named here but not in the route table") }

        let bearer = { (token: String) in [("Authorization", "Bearer \(token)")] }
        let basic = { (id: String, secret: String) in [("Authorization", Harness.basic(id, secret))] }
        let wrong: [Guard: [(String, [(String, String)])]] = [
            .client: [("no credentials", []), ("a wrong secret", basic(h.primary.clientID, "lks_wrong")),
                      ("a deleted client's secret", basic(doomedID, doomedSecret)), ("a bearer token", bearer(primary))],
            .management: [("no credentials", []), ("a made-up token", bearer("not-a-token")), ("a user's token", bearer(userToken)),
                          ("a deleted client's token", bearer(deletedToken)), ("a secret instead of a token", basic(h.primary.clientID, h.primary.clientSecret))],
            .upstream: [("no credentials", []), ("a wrong secret", basic(h.primary.clientID, "lks_wrong")), ("a user's token", bearer(userToken)),
                        ("a deleted client's secret", basic(doomedID, doomedSecret)), ("a management token", bearer(primary))],
            .user: [("no credentials", []), ("a made-up token", bearer("not-a-token")), ("a client's own token", bearer(primary)),
                    ("a deleted client's token", bearer(deletedToken))],
            .session: [("no credentials", []), ("a user's token", bearer(userToken)), ("a management token", bearer(primary)),
                       ("a made-up session", [("Cookie", "__Host-lk_session=not-a-session; __Host-lk_csrf=x"), ("X-CSRF-Token", "x")])],
            .registration: [("no credentials", []), ("a made-up token", bearer("not-a-token")), ("a management token", bearer(primary)),
                            ("a user's token", bearer(userToken))],
        ]
        func path(_ pattern: String) -> String {
            pattern.replacingOccurrences(of: "{id}", with: target).replacingOccurrences(of: "{client_id}", with: target)
                .replacingOccurrences(of: "{clientId}", with: target)
        }
        func snapshot() throws -> [String: [[String: StoredValue]]] {
            let store = try #require(h.store as? any TransferableStore)
            return Dictionary(uniqueKeysWithValues: try store.dumpAll().filter { !Self.countersOfRefusals.contains($0.table) }.map { table in
                (table.table, table.rows.map { Dictionary(uniqueKeysWithValues: zip(table.columns, $0)) })
            })
        }
        let before = try snapshot()
        #expect(before["clients"]?.count ?? 0 >= 4 && before["signing_keys"]?.isEmpty == false)
        var calls = 0
        for route in routes {
            guard let (guardKind, body) = table[route], let callers = wrong[guardKind] else { continue }
            let method = String(route.prefix { $0 != " " })
            let pattern = String(route.dropFirst(method.count + 1))
            // Another organization's token is a caller of its own: refused where the route names a client of this one.
            let foreignCaller = guardKind == .management && pattern.contains("{") ? [("another organization's token", bearer(foreign))] : []
            for (label, headers) in callers + foreignCaller {
                let query = method == "GET" && pattern.hasPrefix("/uc/") ? "clientid=\(target)" : ""
                var all = headers
                var bytes: [UInt8] = []
                if guardKind == .client {
                    all.append(("Content-Type", "application/x-www-form-urlencoded"))
                    bytes = Array("grant_type=client_credentials&token=x&client_id=\(h.primary.clientID)&scope=openid".utf8)
                } else if let body {
                    all.append(("Content-Type", "application/json"))
                    bytes = body.serialized()
                }
                let r = h.call(method, path(pattern), query: query, headers: all, body: bytes)
                calls += 1
                #expect((400..<500).contains(r.status.code), "\(route) with \(label) answered \(r.status.code) \(r.bodyText.prefix(200))")
            }
        }
        #expect(calls > 200)
        #expect(try snapshot() == before, "a refused request changed the database")
        // The target is as it was, and the right callers still pass.
        #expect(h.json("GET", "/api/v1/clients/\(target)", token: primary).status == 200)
        #expect(h.json("GET", "/oauth2/userinfo", token: userToken).status == 200)
    }
}

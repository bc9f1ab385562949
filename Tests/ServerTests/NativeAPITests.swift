import Common
import HTTPCore
import Imaging
import OAuth
import TestSupport
import Testing

/// The native management API: every route and every rule of SPEC 6.0/6.1.
@Suite struct NativeAPITests {
    func create(_ h: Harness, _ token: String, _ body: JSON) throws -> JSON {
        let r = h.json("POST", "/api/v1/clients", token: token, body: body)
        guard r.status == 201, let json = r.json else { throw HarnessError("create failed: \(r.status) \(r.bodyText)") }
        return json
    }

    @Test func createReturnsTheClientTheSecretOnceAndALocation() throws {
        let h = try Harness()
        let token = try h.token()
        let r = h.json("POST", "/api/v1/clients", token: token, body: [
            "client_name": "Demo API Client", "scope": "openid profile clients:read", "redirect_uris": ["https://app.example/cb"],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"], "extra_data": ["team": "blue"],
        ])
        #expect(r.status == 201)
        let body = try #require(r.json)
        let id = try #require(body["client_id"]?.stringValue)
        #expect(r.headers[.location] == "\(Harness.issuer)/api/v1/clients/\(id)")
        #expect(body["client_secret"]?.stringValue?.hasPrefix("lks_") == true)
        #expect(body["primary"] == false)
        #expect(body["organization_id"] == .string(h.primary.organizationID))
        #expect(body["token_endpoint_auth_method"] == "client_secret_basic")
        #expect(body["access_token_ttl"] == 900)
        #expect(body["version"] == 1)
        #expect(body["extra_data"] == ["team": "blue"])
        #expect(body["created_at"]?.stringValue?.hasSuffix("Z") == true)
        // Reads never show the secret.
        let read = h.json("GET", "/api/v1/clients/\(id)", token: token)
        #expect(read.status == 200)
        #expect(read.json?["client_secret"] == nil)
        #expect(read.headers[.eTag] == "\"1\"")
        // The secret works at the token endpoint.
        let secret = try #require(body["client_secret"]?.stringValue)
        #expect(try h.token(clientID: id, secret: secret, scope: "clients:read").isEmpty == false)
    }

    @Test func publicClientsGetNoSecret() throws {
        let h = try Harness()
        let body = try create(h, try h.token(), ["client_name": "SPA", "token_endpoint_auth_method": "none",
                                                "redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["authorization_code"]])
        #expect(body["client_secret"] == nil)
        let id = try #require(body["client_id"]?.stringValue)
        #expect(h.json("POST", "/api/v1/clients/\(id)/secret", token: try h.token()).status == 409)
    }

    @Test func callerChosenClientIDs() throws {
        let h = try Harness()
        let token = try h.token()
        let body = try create(h, token, ["client_id": "my-app-01", "client_name": "Mine"])
        #expect(body["client_id"] == "my-app-01")
        #expect(h.json("POST", "/api/v1/clients", token: token, body: ["client_id": "my-app-01", "client_name": "Again"]).status == 409)
        for bad in ["abc", "has space", "under_score", String(repeating: "a", count: 51), "current"] {
            let r = h.json("POST", "/api/v1/clients", token: token, body: ["client_id": .string(bad), "client_name": "x"])
            #expect(r.status == 400, "client_id \(bad)")
        }
    }

    @Test func listPaginatesFiltersAndCounts() throws {
        let h = try Harness()
        let token = try h.token()
        for i in 0..<5 { _ = try create(h, token, ["client_name": .string("alpha \(i)")]) }
        _ = try create(h, token, ["client_name": "beta"])
        let all = h.json("GET", "/api/v1/clients", token: token)
        #expect(all.headers[.xTotalCount] == "7")
        let page = h.call("GET", "/api/v1/clients", query: "limit=2&offset=1", headers: [("Authorization", "Bearer \(token)")])
        #expect(page.json?["clients"]?.arrayValue?.count == 2)
        let filtered = h.call("GET", "/api/v1/clients", query: "client_name=alpha", headers: [("Authorization", "Bearer \(token)")])
        #expect(filtered.headers[.xTotalCount] == "5")
        for q in ["limit=0", "limit=251", "limit=x", "offset=-1"] {
            #expect(h.call("GET", "/api/v1/clients", query: q, headers: [("Authorization", "Bearer \(token)")]).status == 400, "\(q)")
        }
    }

    @Test func mergePatchChangesOnlyWhatItNames() throws {
        let h = try Harness()
        let token = try h.token()
        let id = try #require(try create(h, token, ["client_name": "Before", "description": "d", "extra_data": ["a": 1, "b": ["c": 2]]])["client_id"]?.stringValue)
        let r = h.json("PATCH", "/api/v1/clients/\(id)", token: token,
                       body: ["client_name": "After", "description": nil, "extra_data": ["b": ["c": nil, "d": 3]]],
                       contentType: "application/merge-patch+json")
        #expect(r.status == 200)
        let body = try #require(r.json)
        #expect(body["client_name"] == "After")
        #expect(body["description"] == nil)
        #expect(body["extra_data"] == ["a": 1, "b": ["d": 3]])
        #expect(body["version"] == 2)
        #expect(r.headers[.eTag] == "\"2\"")
        // application/json is accepted too; other types are 415.
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: ["enabled": false]).json?["enabled"] == false)
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: ["enabled": true], contentType: "text/plain").status == 415)
    }

    @Test func putReplacesWritableFields() throws {
        let h = try Harness()
        let token = try h.token()
        let id = try #require(try create(h, token, ["client_name": "X", "description": "gone after put", "access_token_ttl": 120])["client_id"]?.stringValue)
        let r = h.json("PUT", "/api/v1/clients/\(id)", token: token, body: ["client_name": "Y"])
        #expect(r.status == 200)
        #expect(r.json?["description"] == nil)
        #expect(r.json?["access_token_ttl"] == 900)
        #expect(h.json("PUT", "/api/v1/clients/\(id)", token: token, body: ["description": "no name"]).status == 400)
    }

    @Test func staleVersionsAreRefused() throws {
        let h = try Harness()
        let token = try h.token()
        let id = try #require(try create(h, token, ["client_name": "V"])["client_id"]?.stringValue)
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: ["client_name": "V2"], headers: [("If-Match", "\"1\"")]).status == 200)
        let stale = h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: ["client_name": "V3"], headers: [("If-Match", "\"1\"")])
        #expect(stale.status == 412)
        #expect(stale.json?["code"] == "precondition_failed")
        #expect(h.json("PUT", "/api/v1/clients/\(id)", token: token, body: ["client_name": "V3", "version": 1]).status == 409)
        #expect(h.json("PUT", "/api/v1/clients/\(id)", token: token, body: ["client_name": "V3", "version": 2]).status == 200)
        #expect(h.json("GET", "/api/v1/clients/\(id)", token: token).json?["client_name"] == "V3")
    }

    @Test func readOnlyAndUnknownFieldsAreRefused() throws {
        let h = try Harness()
        let token = try h.token()
        let id = try #require(try create(h, token, ["client_name": "R"])["client_id"]?.stringValue)
        for field in ["organization_id", "primary", "logo_uri", "created_at", "updated_at", "client_secret"] {
            let r = h.json("POST", "/api/v1/clients", token: token, body: JSON.object([("client_name", "x"), (field, "v")]))
            #expect(r.status == 400, "\(field)")
            #expect(r.json?["code"] == "read_only_field")
            #expect(r.json?["errors"]?.arrayValue?.first?["field"] == JSON.string(field))
        }
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: token, body: ["client_id": "other"]).json?["code"] == "read_only_field")
        #expect(h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "x", "colour": "red"]).json?["code"] == "unknown_field")
    }

    @Test func deleteIsPrimaryOnlyAndNeverThePrimary() throws {
        let h = try Harness()
        let token = try h.token()
        let created = try create(h, token, ["client_name": "Secondary", "scope": "clients:read clients:write"])
        let id = try #require(created["client_id"]?.stringValue)
        let secondaryToken = try h.token(clientID: id, secret: created["client_secret"]?.stringValue)
        let victim = try #require(try create(h, token, ["client_name": "Victim"])["client_id"]?.stringValue)
        let refused = h.json("DELETE", "/api/v1/clients/\(victim)", token: secondaryToken)
        #expect(refused.status == 403)
        #expect(refused.json?["code"] == "primary_only")
        let primaryDelete = h.json("DELETE", "/api/v1/clients/\(h.primary.clientID)", token: token)
        #expect(primaryDelete.status == 409)
        #expect(h.json("DELETE", "/api/v1/clients/\(victim)", token: token).status == 204)
        #expect(h.json("GET", "/api/v1/clients/\(victim)", token: token).status == 404)
        #expect(h.json("DELETE", "/api/v1/clients/\(victim)", token: token).status == 404)
        #expect(try h.store.secrets(clientID: victim).isEmpty)
    }

    @Test func privilegedScopesOnlyFromAHolder() throws {
        let h = try Harness()
        let token = try h.token()
        let created = try create(h, token, ["client_name": "Limited", "scope": "clients:read clients:write createSubscription"])
        let id = try #require(created["client_id"]?.stringValue)
        let limited = try h.token(clientID: id, secret: created["client_secret"]?.stringValue)
        // It may hand out what it holds and any non-privileged scope...
        #expect(h.json("POST", "/api/v1/clients", token: limited, body: ["client_name": "ok", "scope": "clients:read openid createSubscription"]).status == 201)
        // ...but not a privileged scope it lacks, on create or update.
        let escalate = h.json("POST", "/api/v1/clients", token: limited, body: ["client_name": "bad", "scope": "keys:manage"])
        #expect(escalate.status == 403)
        #expect(escalate.json?["code"] == "privileged_scope")
        #expect(h.json("PATCH", "/api/v1/clients/\(id)", token: limited, body: ["scope": "clients:read clients:write audit:read"]).status == 403)
        // Nor may a secondary client change the primary, or its logo.
        #expect(h.json("PATCH", "/api/v1/clients/\(h.primary.clientID)", token: limited, body: ["client_name": "pwned"]).status == 403)
        let logo = h.call("PUT", "/api/v1/clients/\(h.primary.clientID)/logo", headers: [("Authorization", "Bearer \(limited)"), ("Content-Type", "image/png")],
                          body: Fixtures.png300x120)
        #expect(logo.status == 403)
        // Refused before the upload is decoded (attacker review, session 13): bytes that are no image are a 403 too, not a 400.
        let garbage = h.call("PUT", "/api/v1/clients/\(h.primary.clientID)/logo", headers: [("Authorization", "Bearer \(limited)"),
                             ("Content-Type", "image/png")], body: Array("not an image".utf8))
        #expect(garbage.status == 403, "\(garbage.status) \(garbage.bodyText)")
        #expect(h.json("GET", "/api/v1/clients/\(h.primary.clientID)", token: try h.token()).json?["client_name"] != "pwned")
    }

    @Test func clientLimitCountsThePrimary() throws {
        let h = try Harness()
        let org = try Provisioning(env: h.env, store: h.store).createOrganization(name: "Small", clientLimit: 3)
        let token = try h.token(clientID: org.clientID, secret: org.clientSecret)
        _ = try create(h, token, ["client_name": "one"])
        _ = try create(h, token, ["client_name": "two"])
        let r = h.json("POST", "/api/v1/clients", token: token, body: ["client_name": "three"])
        #expect(r.status == 409)
        #expect(r.json?["code"] == "client_limit_reached")
    }

    @Test func organizationsAreIsolated() throws {
        let h = try Harness()
        let tokenA = try h.token()
        let clientA = try create(h, tokenA, ["client_name": "A's client"])
        let idA = try #require(clientA["client_id"]?.stringValue)
        _ = h.call("PUT", "/api/v1/clients/\(idA)/logo", headers: [("Authorization", "Bearer \(tokenA)"), ("Content-Type", "image/png")], body: Fixtures.png300x120)
        let org2 = try Provisioning(env: h.env, store: h.store).createOrganization(name: "B", clientLimit: 10)
        let tokenB = try h.token(clientID: org2.clientID, secret: org2.clientSecret)
        let before = try #require(try h.store.client(idA))
        let attempts: [(String, String, JSON?)] = [
            ("GET", "/api/v1/clients/\(idA)", nil),
            ("PATCH", "/api/v1/clients/\(idA)", ["client_name": "stolen"]),
            ("PUT", "/api/v1/clients/\(idA)", ["client_name": "stolen"]),
            ("DELETE", "/api/v1/clients/\(idA)", nil),
            ("POST", "/api/v1/clients/\(idA)/secret", nil),
            ("DELETE", "/api/v1/clients/\(idA)/logo", nil),
            ("GET", "/api/v1/clients/\(h.primary.clientID)", nil),
            ("DELETE", "/api/v1/clients/\(h.primary.clientID)", nil),
        ]
        for (method, path, body) in attempts {
            let r = h.json(method, path, token: tokenB, body: body)
            #expect(r.status == 404, "\(method) \(path) answered \(r.status)")
        }
        let upload = h.call("PUT", "/api/v1/clients/\(idA)/logo", headers: [("Authorization", "Bearer \(tokenB)"), ("Content-Type", "image/png")], body: Fixtures.png300x120)
        #expect(upload.status == 404)
        let list = h.json("GET", "/api/v1/clients", token: tokenB)
        #expect(list.headers[.xTotalCount] == "1")
        #expect(!(list.bodyText.contains(idA)))
        #expect(try h.store.client(idA) == before)
        #expect(try h.store.secrets(clientID: idA).count == 1)
        // B's primary cannot introspect A's tokens either.
        #expect(h.form("/oauth2/introspect", [("token", tokenA)], basic: (org2.clientID, org2.clientSecret)).json == ["active": false])
    }

    @Test func rotationWithGraceKeepsBothSecretsUntilItEnds() throws {
        let h = try Harness()
        let token = try h.token()
        let created = try create(h, token, ["client_name": "Rotating", "scope": "clients:read"])
        let id = try #require(created["client_id"]?.stringValue)
        let first = try #require(created["client_secret"]?.stringValue)
        let r = h.json("POST", "/api/v1/clients/\(id)/secret", token: token, body: ["grace_period_seconds": 3600])
        #expect(r.status == 200)
        let second = try #require(r.json?["client_secret"]?.stringValue)
        #expect(r.json?["previous_secret_expires_at"] == .string(Timestamp.rfc3339(millis: h.clock.now + 3_600_000)))
        #expect((try? h.token(clientID: id, secret: first)) != nil)
        #expect((try? h.token(clientID: id, secret: second)) != nil)
        h.clock.advance(seconds: 3601)
        #expect((try? h.token(clientID: id, secret: first)) == nil)
        #expect((try? h.token(clientID: id, secret: second)) != nil)
        // A further rotation ends every older secret at once, grace or not.
        let fresh = try h.token()
        let third = try #require(h.json("POST", "/api/v1/clients/\(id)/secret", token: fresh, body: ["grace_period_seconds": 60]).json?["client_secret"]?.stringValue)
        let fourth = try #require(h.json("POST", "/api/v1/clients/\(id)/secret", token: fresh, body: ["grace_period_seconds": 60]).json?["client_secret"]?.stringValue)
        #expect((try? h.token(clientID: id, secret: second)) == nil)
        #expect((try? h.token(clientID: id, secret: third)) != nil)
        #expect((try? h.token(clientID: id, secret: fourth)) != nil)
        #expect(h.json("POST", "/api/v1/clients/\(id)/secret", token: fresh, body: ["grace_period_seconds": 604_801]).status == 400)
    }

    @Test func aClientRotatesItsOwnSecretButNotAnothers() throws {
        let h = try Harness()
        let token = try h.token()
        let created = try create(h, token, ["client_name": "Self", "scope": "clients:read"])
        let id = try #require(created["client_id"]?.stringValue)
        let own = try h.token(clientID: id, secret: created["client_secret"]?.stringValue)
        let r = h.json("POST", "/api/v1/clients/current/secret", token: own)
        #expect(r.status == 200)
        #expect(r.json?["client_id"] == .string(id))
        #expect(r.json?["previous_secret_expires_at"] == .null)
        #expect((try? h.token(clientID: id, secret: created["client_secret"]?.stringValue)) == nil)
        let other = try create(h, token, ["client_name": "Other", "scope": "clients:read clients:write"])
        let otherToken = try h.token(clientID: other["client_id"]!.stringValue!, secret: other["client_secret"]?.stringValue)
        #expect(h.json("POST", "/api/v1/clients/\(id)/secret", token: otherToken).status == 403)
        #expect(h.json("GET", "/api/v1/clients/current", token: own).json?["client_id"] == .string(id))
    }

    @Test func organizationAndAudit() throws {
        let h = try Harness()
        let token = try h.token()
        let org = try #require(h.json("GET", "/api/v1/organization", token: token).json)
        #expect(org["organization_id"] == .string(h.primary.organizationID))
        #expect(org["primary_client_id"] == .string(h.primary.clientID))
        #expect(org["name"] == "Acme")
        let created = try create(h, token, ["client_name": "Audited"])
        let id = try #require(created["client_id"]?.stringValue)
        _ = h.json("POST", "/api/v1/clients/\(id)/secret", token: token, body: ["grace_period_seconds": 0])
        _ = h.json("DELETE", "/api/v1/clients/\(id)", token: token)
        let audit = h.json("GET", "/api/v1/audit", token: token)
        #expect(audit.status == 200)
        let events = try #require(audit.json?["events"]?.arrayValue)
        #expect(events.prefix(3).compactMap { $0["action"]?.stringValue } == ["client.deleted", "client.secret_rotated", "client.created"])
        #expect(events[0]["actor"] == .string(h.primary.clientID))
        #expect(events[0]["target"] == .string(id))
        #expect(events[0]["request_id"] == "req-test")
        #expect(events[0]["surface"] == "native")
        #expect(!audit.bodyText.contains("lks_"))
        #expect(!audit.bodyText.contains(try #require(created["client_secret"]?.stringValue)))
        #expect(h.json("GET", "/api/v1/audit", token: try h.token(scope: "clients:read")).status == 403)
        // The total is every event; `before` pages below an event id; offsets stop at AuditLog.maxOffset.
        let total = try #require(audit.headers[.xTotalCount].flatMap { Int($0) })
        #expect(total == (try h.fixture.rows("audit_events").count))
        func read(_ query: String) -> Response { h.call("GET", "/api/v1/audit", query: query, headers: [("Authorization", "Bearer \(token)")]) }
        let below = read("limit=2&before=\(try #require(events[0]["id"]?.intValue))")
        #expect(below.json?["events"]?.arrayValue?.compactMap { $0["action"]?.stringValue } == ["client.secret_rotated", "client.created"])
        #expect(below.headers[.xTotalCount] == String(total))
        for query in ["offset=10001", "before=0", "before=x", "before=-3"] {
            let refused = read(query)
            #expect(refused.status == 400 && refused.json?["code"] == "invalid_field", "\(query): \(refused.status)")
        }
        #expect(read("offset=10000").status == 200)
    }

    @Test func scopesAreCheckedPerRoute() throws {
        let h = try Harness()
        let readOnly = try h.token(scope: "clients:read")
        #expect(h.json("GET", "/api/v1/clients", token: readOnly).status == 200)
        #expect(h.json("POST", "/api/v1/clients", token: readOnly, body: ["client_name": "x"]).status == 403)
        #expect(h.json("POST", "/api/v1/clients", token: nil, body: ["client_name": "x"]).status == 401)
    }
}

/// Bad input on every write: a clear 4xx, and nothing changes.

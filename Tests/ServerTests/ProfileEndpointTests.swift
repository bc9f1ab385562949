import Common
import HTTPCore
import OAuth
import TestSupport
import Testing

/// `/api/v1/me/profile`: the signed-in user's own standard claims; the
/// session and its CSRF token, never someone else's profile, bad values
/// refused with field errors and nothing changed.
@Suite struct ProfileEndpointTests {
    @Test func theSignedInUserReadsAndReplacesTheirProfile() throws {
        let h = try Harness()
        let id = try h.user()
        let b = Browser(h)
        #expect(b.send("GET", "/api/v1/me/profile").status == 401, "signed out")
        #expect(b.login().status == 204)
        #expect(b.send("GET", "/api/v1/me/profile").json == .object([]))
        let saved = b.json("PUT", "/api/v1/me/profile", ["given_name": "Alice", "phone_number": "+44 20 7946 0958", "locale": "",
                                                        "address": ["locality": "Oxford", "country": "GB", "region": ""]])
        #expect(saved.status == 200, "\(saved.bodyText)")
        #expect(saved.json == ["given_name": "Alice", "phone_number": "+44 20 7946 0958", "address": ["locality": "Oxford", "country": "GB"]])
        #expect(try h.store.read { try h.store.userProfile(userID: id) }?.givenName == "Alice")
        // A replacement: what is not sent is cleared.
        #expect(b.json("PUT", "/api/v1/me/profile", ["family_name": "Liddell"]).json == ["family_name": "Liddell"])
    }

    @Test(arguments: [
        ("a bad time zone", ["zoneinfo": "nowhere"] as JSON, "zoneinfo"),
        ("an unknown field", ["email": "x@example.com"] as JSON, "email"),
        ("an unknown address field", ["address": ["planet": "Earth"]] as JSON, "address.planet"),
        ("a number", ["given_name": 7] as JSON, "given_name"),
    ] as [(String, JSON, String)])
    func badValuesAreFieldErrorsAndChangeNothing(_ name: String, _ body: JSON, _ field: String) throws {
        let h = try Harness()
        let id = try h.user()
        try Provisioning(env: h.env, store: h.store).setProfile(username: "alice") { $0.givenName = "Before" }
        let b = Browser(h)
        #expect(b.login().status == 204)
        let r = b.json("PUT", "/api/v1/me/profile", body)
        #expect(r.status == 400, "\(name)")
        #expect(r.json?["errors"]?.arrayValue?.first?["field"] == .string(field), "\(name): \(r.bodyText)")
        #expect(try h.store.read { try h.store.userProfile(userID: id) }?.givenName == "Before")
    }

    /// Many unknown members, top level or in the address: ten are named (independent review, session 20).
    @Test func manyUnknownMembersAreNamedTenAtMost() throws {
        let h = try Harness()
        _ = try h.user()
        let b = Browser(h)
        #expect(b.login().status == 204)
        let many = JSON.object((0..<1_500).map { ("k\($0)", JSON.int(0)) })
        for body in [many, JSON.object([("address", many)])] {
            let r = b.json("PUT", "/api/v1/me/profile", body)
            #expect(r.status == 400)
            #expect(r.json?["errors"]?.arrayValue?.count == 10, "\(r.bodyText.prefix(200))")
        }
    }

    /// Past the user's changes for the hour: 429 with `Retry-After`, which the account page tells the user.
    @Test func tooManyChangesAre429WithRetryAfter() throws {
        let h = try Harness()
        _ = try h.user()
        let b = Browser(h)
        #expect(b.login().status == 204)
        for i in 0..<AbuseGuards.profileChangesPerHour { #expect(b.json("PUT", "/api/v1/me/profile", ["given_name": .string("n\(i)")]).status == 200) }
        let refused = b.json("PUT", "/api/v1/me/profile", ["given_name": "one more"])
        #expect(refused.status == 429, "\(refused.bodyText)")
        #expect(Int(refused.headers[.retryAfter] ?? "") ?? 0 > 0)
    }

    @Test func aWriteNeedsTheCSRFTokenAndABearerTokenIsNotASession() throws {
        let h = try Harness()
        _ = try h.user()
        let b = Browser(h)
        #expect(b.login().status == 204)
        #expect(b.send("PUT", "/api/v1/me/profile", headers: [("Content-Type", "application/json")], body: Array("{}".utf8), csrf: false).status == 403)
        #expect(h.json("PUT", "/api/v1/me/profile", token: try h.token(), body: ["given_name": "Mallory"]).status == 401)
    }
}

import Common
import HTTPCore
import OAuth
import PostgresStore
import TestSupport
import Testing

/// SPEC 9 / PLATFORM-POSTGRES 3: what a request costs on PostgreSQL, in
/// round trips, through the whole handler (the worker brackets each request,
/// so the memo is validated once). Pinned so that a change which adds a
/// round trip to a hot path fails here.
@Suite(.enabled(if: TestStore.kind == .postgres, "the PostgreSQL run of scripts/test"))
struct RequestRoundTripTests {
    @Test func aTokenAndAnIntrospectionCostOneRoundTripEach() throws {
        let h = try Harness()
        let store = try #require(h.store as? PostgresStore)
        let basic = (h.primary.clientID, h.primary.clientSecret)
        // The first token of the day notes the client's use (a write, once a day), which the next read reloads.
        _ = try h.token()
        _ = try h.token()
        var before = store.roundTrips
        let token = try h.token()
        #expect(store.roundTrips - before == 1)
        before = store.roundTrips
        for _ in 0..<200 { _ = try h.token() }
        #expect(store.roundTrips - before == 200)
        _ = h.form("/oauth2/introspect", [("token", token)], basic: basic)
        before = store.roundTrips
        let r = h.form("/oauth2/introspect", [("token", token)], basic: basic)
        #expect(r.status == 200 && r.json?["active"]?.boolValue == true)
        #expect(store.roundTrips - before == 1)
    }

    /// The round trips of a code flow by a signed-in user who is asked
    /// again (prompt=consent), as the benchmark runs it: the authorize (the
    /// generation, the request stored in one, the session with its user,
    /// the connection), the accept (the generation, the session with its
    /// user, the request; BEGIN + answered, the code + the connection, the
    /// connection + COMMIT) and the exchange (the generation, BEGIN + the code
    /// with its user and connection, the redemption, the grant + COMMIT).
    @Test func aCodeFlowCostsFourteenRoundTrips() throws {
        let h = try Harness()
        let store = try #require(h.store as? PostgresStore)
        _ = try h.user()
        let (client, _) = try h.app()
        let flow = UserFlowTests()
        let b = Browser(h)
        // A first flow: signs in, and notes the client's first use of the day (a write of its own).
        let warm = PKCE()
        #expect(flow.exchange(h, client: client, code: try flow.code(h, b, client: client, pkce: warm), verifier: warm.verifier).status == 200)
        for _ in 0..<2 {
            let pkce = PKCE()
            var before = store.roundTrips
            let first = b.authorize(flow.authorizeParams(client, pkce, extra: [("prompt", "consent")]))
            let location = try #require(first.headers[.location])
            let request = try #require(queryItems(location)["request"])
            #expect(store.roundTrips - before == 4)
            before = store.roundTrips
            let accepted = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid"], "remember": true])
            let redirect = try #require(accepted.json?["redirect_to"]?.stringValue)
            let code = try #require(queryItems(redirect)["code"])
            #expect(store.roundTrips - before == 6)
            before = store.roundTrips
            #expect(flow.exchange(h, client: client, code: code, verifier: pkce.verifier).status == 200)
            #expect(store.roundTrips - before == 4)
        }
    }

    /// PLATFORM-POSTGRES 3: the BEGIN travels with the first statement and
    /// the writes nobody reads (the new refresh token, the use of the
    /// connection) with the COMMIT, and a request validates the memo once. A
    /// rotation: the generation read (the client is memoized), then three
    /// round trips (BEGIN + the token with its family, the rotation, the
    /// rest + COMMIT); the signature after it reads nothing. Eight before.
    @Test func aRefreshRotationCostsFourRoundTrips() throws {
        let h = try Harness()
        let store = try #require(h.store as? PostgresStore)
        _ = try h.user()
        let (client, _) = try h.app()
        let flow = UserFlowTests()
        let pkce = PKCE()
        let first = flow.exchange(h, client: client, code: try flow.code(h, Browser(h), client: client, pkce: pkce), verifier: pkce.verifier)
        var refresh = try #require(first.json?["refresh_token"]?.stringValue)
        for round in 0..<3 {
            let before = store.roundTrips
            let r = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)])
            #expect(r.status == 200)
            refresh = try #require(r.json?["refresh_token"]?.stringValue)
            if round > 0 { #expect(store.roundTrips - before == 4) }
        }
    }
}

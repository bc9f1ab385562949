import Common
import Cryptography
import HTTPCore
import JOSE
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

    /// A private_key_jwt token: the generation (the client and its keys from
    /// the memo, validated once for the whole request) and the assertion's
    /// jti, written in a pipeline of its own. (Before, the client was read
    /// past the memo, a third round trip.)
    @Test func aPrivateKeyJWTTokenCostsTwoRoundTrips() throws {
        let h = try Harness()
        let store = try #require(h.store as? PostgresStore)
        let key = try SigningKey.generate(.es256)
        let created = h.json("POST", "/api/v1/clients", token: try h.token(scope: "clients:write"), body: [
            "client_name": "Signed", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
            "jwks": ["keys": [try JWK.publicJWK(key, kid: "k1")]],
        ])
        let clientID = try #require(created.json?["client_id"]?.stringValue, "\(created.bodyText)")
        func assertion(jti: String? = nil) throws -> String {
            let now = h.clock.now / 1000
            let claims: JSON = ["iss": .string(clientID), "sub": .string(clientID), "aud": .string(Harness.issuer + "/oauth2/token"),
                                "exp": .int(now + 60), "jti": .string(jti ?? h.env.randomToken(bytes: 12))]
            return try JWS.sign(payload: claims, key: key, kid: "k1", typ: "JWT")
        }
        func token() throws -> Response {
            h.form("/oauth2/token", [("grant_type", "client_credentials"), ("client_assertion", try assertion()),
                                     ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")])
        }
        // The first token of the day notes the client's use (a write, once a day), which the next read reloads.
        _ = try token()
        _ = try token()
        let before = store.roundTrips
        let r = try token()
        #expect(r.status == 200, "\(r.bodyText)")
        #expect(store.roundTrips - before == 2)
        // Replayed, it is refused: the conditional insert answered in the COMMIT's round trip.
        let replayed = h.form("/oauth2/token", [("grant_type", "client_credentials"), ("client_assertion", try assertion(jti: "once")),
                                                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")])
        #expect(replayed.status == 200)
        #expect(h.form("/oauth2/token", [("grant_type", "client_credentials"), ("client_assertion", try assertion(jti: "once")),
                                         ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")]).status == 401)
    }

    /// A DPoP-bound client_credentials token: the generation and the proof's
    /// jti with its COMMIT.
    @Test func aDPoPBoundTokenCostsTwoRoundTrips() throws {
        let h = try Harness()
        let store = try #require(h.store as? PostgresStore)
        let key = try SigningKey.generate(.es256)
        func token(jti: String? = nil) throws -> Response {
            var claims: [String: JSON?] = ["htm": "POST", "htu": .string(Harness.issuer + "/oauth2/token"), "iat": .int(h.clock.now / 1000)]
            if let jti { claims["jti"] = .string(jti) }
            return h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID, h.primary.clientSecret),
                          headers: [("DPoP", try DPoPTestProof.make(key, claims: claims))])
        }
        _ = try token()
        _ = try token()
        let before = store.roundTrips
        let r = try token()
        #expect(r.status == 200 && r.json?["token_type"] == "DPoP", "\(r.bodyText)")
        #expect(store.roundTrips - before == 2)
        #expect(try token(jti: "once").status == 200)
        #expect(try token(jti: "once").status == 400, "a replay is refused")
    }

    /// The round trips of a code flow by a signed-in user who is asked
    /// again (prompt=consent), as the benchmark runs it: the authorize (the
    /// generation, the request stored in one, the session with its user;
    /// prompt=consent needs no connection), the accept (the generation with
    /// the session, its user and the request read ahead; BEGIN + the
    /// connection read ahead + answered, the code + the connection + COMMIT)
    /// and the exchange (the generation, BEGIN + the code with its user and
    /// connection + its redemption, the grant + COMMIT).
    /// A signed-in user and a public app with one whole flow behind them
    /// (the sign-in and the client's first use of the day are writes of
    /// their own), and the steps of the next flows.
    struct WarmFlow {
        let h: Harness
        let store: PostgresStore
        let client: String
        let flow = UserFlowTests()
        let b: Browser

        init(scope: String = "openid profile email offline_access") throws {
            h = try Harness()
            store = try #require(h.store as? PostgresStore)
            _ = try h.user()
            client = try h.app().0
            b = Browser(h)
            let warm = PKCE()
            #expect(flow.exchange(h, client: client, code: try flow.code(h, b, client: client, pkce: warm, scope: scope), verifier: warm.verifier).status == 200)
        }

        /// An authorize asking for consent: the pending request's id.
        func request(_ pkce: PKCE, scope: String = "openid profile email offline_access") throws -> String {
            let first = b.authorize(flow.authorizeParams(client, pkce, scope: scope, extra: [("prompt", "consent")]))
            let location = try #require(first.headers[.location])
            return try #require(queryItems(location)["request"])
        }

        /// The consent's answer: the code.
        func accept(_ request: String, _ scope: [String], remember: Bool) throws -> String {
            let accepted = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": JSON(scope), "remember": .bool(remember)])
            let redirect = try #require(accepted.json?["redirect_to"]?.stringValue)
            return try #require(queryItems(redirect)["code"])
        }
    }

    @Test func aCodeFlowCostsNineRoundTrips() throws {
        let w = try WarmFlow()
        let store = w.store
        for _ in 0..<2 {
            let pkce = PKCE()
            var before = store.roundTrips
            let request = try w.request(pkce)
            #expect(store.roundTrips - before == 3)
            before = store.roundTrips
            let code = try w.accept(request, ["openid"], remember: true)
            #expect(store.roundTrips - before == 3)
            before = store.roundTrips
            #expect(w.flow.exchange(w.h, client: w.client, code: code, verifier: pkce.verifier).status == 200)
            #expect(store.roundTrips - before == 3)
        }
    }

    /// What a code flow waits for PostgreSQL to flush: only the code's
    /// redemption. The request stored at the authorize and the consent's
    /// answer (the code, the connection) commit before their flush; the
    /// redemption's flush makes them durable first. A consent that narrows
    /// what was remembered, a refusal and a sign-out wait for theirs.
    @Test func aCodeFlowWaitsForOneFlushItsRedemptions() throws {
        let w = try WarmFlow(scope: "openid")
        let (h, store, client, flow, b) = (w.h, w.store, w.client, w.flow, w.b)
        func requestID() throws -> String { try w.request(PKCE(), scope: "openid profile") }
        func accept(_ request: String, _ scope: [String], remember: Bool) throws -> String { try w.accept(request, scope, remember: remember) }
        var before = store.flushesDeferred
        var request = try requestID()
        #expect(store.flushesDeferred == before + 1, "the request stored")
        before = store.flushesDeferred
        _ = try accept(request, ["openid", "profile"], remember: true)
        #expect(store.flushesDeferred == before + 1, "the code and the connection remembering more")
        // The same again: nothing narrows.
        request = try requestID()
        before = store.flushesDeferred
        _ = try accept(request, ["openid", "profile"], remember: true)
        #expect(store.flushesDeferred == before + 1)
        // Remembering less: the user took something away.
        request = try requestID()
        before = store.flushesDeferred
        _ = try accept(request, ["openid"], remember: true)
        #expect(store.flushesDeferred == before)
        // Remembering nothing.
        request = try requestID()
        before = store.flushesDeferred
        _ = try accept(request, ["openid"], remember: false)
        #expect(store.flushesDeferred == before)
        // A refusal.
        request = try requestID()
        before = store.flushesDeferred
        #expect(b.json("POST", "/api/v1/authorization-requests/\(request)/reject", [:]).status == 200)
        #expect(store.flushesDeferred == before)
        // A whole flow: the request and the answer defer their flushes, the redemption waits for its own.
        let pkce = PKCE()
        before = store.flushesDeferred
        let code = try flow.code(h, b, client: client, pkce: pkce)
        #expect(store.flushesDeferred == before + 2)
        before = store.flushesDeferred
        #expect(flow.exchange(h, client: client, code: code, verifier: pkce.verifier).status == 200)
        #expect(store.flushesDeferred == before)
        // A sign-out.
        #expect(b.send("DELETE", "/api/v1/session").status == 204)
        #expect(store.flushesDeferred == before)
    }

    /// PLATFORM-POSTGRES 3: the BEGIN travels with the first statement and
    /// the writes nobody reads (the new refresh token, the use of the
    /// connection) with the COMMIT, and a request validates the memo once. A
    /// rotation: the generation read (the client is memoized), then two
    /// round trips (BEGIN + the token with its family + its rotation, the
    /// rest + COMMIT); the signature after it reads nothing. Eight before.
    @Test func aRefreshRotationCostsThreeRoundTrips() throws {
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
            if round > 0 { #expect(store.roundTrips - before == 3) }
        }
    }
}

import TestSupport
import Testing
import Common
import HTTPCore
@testable import OAuth
@testable import Server

/// Issue 12: the answer to "not now" has one shape per surface, chosen in
/// one place. Whatever the cause (the database busy or away, the slow-hash
/// or image permits taken), a surface's 503 looks like its 429: the same
/// media type and members, with `Retry-After` and `no-store`.
@Suite struct RetryLaterRenderingTests {
    static let unavailable: [(String, Error)] = [
        ("database busy", StoreError.busy),
        ("database away", StoreError.unavailable("connection refused")),
        ("slow-hash pool full", SlowHashesBusy()),
    ]

    struct Shape: Equatable {
        var mediaType: String?
        var members: [String]?
    }

    func shape(_ r: Response) -> Shape {
        var members: [String]?
        if case let .object(pairs)? = r.json { members = pairs.map(\.0).sorted() }
        return Shape(mediaType: r.headers[.contentType], members: members)
    }

    @Test(arguments: Surface.allCases)
    func every503OfASurfaceHasTheShapeOfItsThrottle(_ surface: Surface) {
        let request = Request(method: .post, path: "/x", requestID: "req-503")
        let throttled = ErrorRendering.render(TooManyFailures(retryAfterSeconds: 7), surface: surface, request: request)
        #expect(throttled.status == .tooManyRequests)
        #expect(throttled.headers[.retryAfter] == "7")
        for (cause, error) in Self.unavailable {
            let r = ErrorRendering.render(error, surface: surface, request: request)
            #expect(r.status == .serviceUnavailable, "\(surface) \(cause)")
            #expect(r.headers[.retryAfter] == "1", "\(surface) \(cause)")
            #expect(r.headers[.cacheControl] == "no-store", "\(surface) \(cause)")
            #expect(shape(r) == shape(throttled), "\(surface) \(cause): \(r.bodyText) vs \(throttled.bodyText)")
        }
    }

    @Test func theOAuthSurfacesSayTemporarilyUnavailable() {
        for surface in [Surface.oauth, .bearer] {
            let r = ErrorRendering.render(StoreError.busy, surface: surface, request: Request(method: .post, path: "/oauth2/token"))
            #expect(r.json?["error"] == "temporarily_unavailable")
        }
    }
}

/// `Authorization: Bearer …` and `DPoP …` (RFC 6750 §2.1, RFC 9449 §7.1), read by byte.
@Suite struct AuthorizationHeaderTests {
    func request(_ value: String) -> Request { Request(method: .get, path: "/x", headers: [.authorization: value]) }

    @Test func theTokenIsWhatFollowsTheSchemeWithBlanksTrimmed() {
        let cases: [(String, String?)] = [
            ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("  BEARER abc", "abc"), ("DPoP x.y", "x.y"), ("Bearer a b", "a b"),
            ("Bearer", nil), ("Bearer ", nil), ("Bearer   ", nil), ("Basic abc", nil), ("Bearer\tabc", nil), (" ", nil), ("", nil),
        ]
        for (header, token) in cases { #expect(EndpointKit.bearerToken(request(header)) == token, "\(header)") }
        for (header, dpop) in [("DPoP x", true), ("  dpop x", true), ("DPoP", true), ("DPoPs x", false), ("Bearer x", false), ("DPo x", false),
                               ("   ", false)] {
            #expect(EndpointKit.usesDPoPScheme(request(header)) == dpop, "\(header)")
        }
        #expect(!EndpointKit.usesDPoPScheme(Request(method: .get, path: "/x")) && EndpointKit.bearerToken(Request(method: .get, path: "/x")) == nil)
    }
}

/// SPEC 2: error bodies repeat the request id, the OAuth endpoints' included (SPEC audit, session 9).
@Suite struct OAuthErrorRequestIDTests {
    @Test func oauthErrorBodiesCarryTheRequestID() throws {
        let h = try Harness()
        let token = h.form("/oauth2/token", [("grant_type", "client_credentials")], basic: (h.primary.clientID, "wrong"))
        #expect(token.status == 401 && token.json?["error"] == "invalid_client" && token.json?["request_id"] == "req-test")
        let grant = h.form("/oauth2/token", [("grant_type", "password")], basic: (h.primary.clientID, h.primary.clientSecret))
        #expect(grant.json?["error"] == "unsupported_grant_type" && grant.json?["request_id"] == "req-test")
        let userinfo = h.call("GET", "/oauth2/userinfo", headers: [("Authorization", "Bearer nope")])
        #expect(userinfo.status == 401 && userinfo.json?["request_id"] == "req-test")
        #expect(userinfo.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
    }
}

/// RFC 6749 §3.2: each token request parameter at most once; an empty one counts as omitted, yet as sent.
@Suite struct TokenFormParameterTests {
    @Test func anEmptyParameterIsOmittedButStillCountsAsSent() throws {
        let h = try Harness()
        let basic = (h.primary.clientID, h.primary.clientSecret)
        let empty = h.form("/oauth2/token", [("grant_type", "client_credentials"), ("scope", "")], basic: basic)
        #expect(empty.status == 200 && Set((empty.json?["scope"]?.stringValue ?? "").split(separator: " ").map(String.init)) == Set(Scopes.primary))
        for pairs in [[("scope", ""), ("scope", "clients:read")], [("scope", "clients:read"), ("scope", "")], [("scope", ""), ("scope", "")]] {
            let twice = h.form("/oauth2/token", [("grant_type", "client_credentials")] + pairs, basic: basic)
            #expect(twice.status == 400 && twice.json?["error"] == "invalid_request", "\(pairs)")
        }
    }
}

/// SPEC 3: an endpoint that takes a user's bearer token challenges with `Bearer` when nothing at all was sent.
@Suite struct UserEndpointChallengeTests {
    @Test func connectionsWithoutSessionOrTokenChallengeWithBearer() throws {
        let h = try Harness()
        for (method, path) in [("GET", "/api/v1/me/connections"), ("DELETE", "/api/v1/me/connections/some-client")] {
            let r = h.call(method, path)
            #expect(r.status == 401 && r.headers[.wwwAuthenticate] == "Bearer", "\(path): \(r.headers[.wwwAuthenticate] ?? "none")")
            #expect(r.json?["code"] == "login_required")
        }
        // A session-only endpoint has nothing to challenge with.
        #expect(h.call("GET", "/api/v1/session").headers[.wwwAuthenticate] == nil)
    }
}

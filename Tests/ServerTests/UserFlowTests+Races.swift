import Common
import HTTPCore
@testable import OAuth
import TestSupport
import Testing

/// Two requests of one browser answering the same pending request (a reload racing the first load, the consent
/// page's accept racing a continue): the second is a page, never a 500 (attacker review, session 25).
extension UserFlowTests {
    @Test func aRequestAnsweredWhileItIsContinuedIsAPageNotAServerError() throws {
        let (h, _, client, pkce, signedIn) = try started()
        // Consent remembered: a continue answers at once, with no page in between.
        _ = try code(h, signedIn, client: client, pkce: pkce, remember: true)
        let b = Browser(h)
        let first = try #require(b.authorize(authorizeParams(client, pkce)).headers[.location])
        #expect(first.hasPrefix("/login/"))
        let requestID = try #require(queryItems(first)["request"])
        #expect(b.login().status == 204)
        // The continue has loaded the request; another request of the browser answers it before this one's grant.
        let service = AuthorizationService(env: h.env, store: h.store)
        let stored = try #require(try service.pending(requestID, browser: b.cookies["__Host-lk_browser"]))
        #expect(try h.store.write { try h.store.markAuthorizationRequestAnswered(idHash: stored.idHash, at: h.clock.now) })
        let decision = try service.proceed(stored, requestID: requestID, sessionToken: b.cookies["__Host-lk_session"])
        #expect(decision == .errorPage(AuthorizationService.unknownRequestMessage), "\(decision)")
        // Through the endpoint, the same request again: the page, as for any request already answered.
        let again = b.send("GET", "/oauth2/authorize/continue", query: "request=\(requestID)")
        #expect(again.status == 400 && again.headers[.location] == nil, "\(again.status)")
    }
}

extension UserFlowTests {
    /// A request answered once is answered: a second answer (the page's accept sent twice, or a reject racing an
    /// accept) is 409 `already_answered` whether the first committed before the second read the request or after,
    /// and changes nothing; another browser still learns nothing of it (404).
    @Test func aSecondAnswerIsAConflictWhicheverCameFirst() throws {
        let (h, user, client, _, b) = try started()
        b.login()
        let location = try #require(b.authorize(authorizeParams(client, PKCE(), scope: "openid profile")).headers[.location])
        let request = try #require(queryItems(location)["request"])
        let first = b.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid", "profile"]])
        #expect(first.status == 200 && first.json?["redirect_to"] != nil, "\(first.bodyText)")
        let before = try h.store.read { try h.store.connection(userID: user, clientID: client) }
        for (action, body) in [("accept", ["scope": ["openid"]] as JSON), ("reject", [:] as JSON)] {
            let again = b.json("POST", "/api/v1/authorization-requests/\(request)/\(action)", body)
            #expect(again.status == 409 && again.json?["code"] == "already_answered" && again.json?["redirect_to"] == nil,
                    "\(action): \(again.status) \(again.bodyText)")
        }
        #expect(try h.store.read { try h.store.connection(userID: user, clientID: client) } == before)
        let other = Browser(h)
        other.login()
        #expect(other.json("POST", "/api/v1/authorization-requests/\(request)/accept", ["scope": ["openid"]]).status == 404)
        // The request's details are still gone for the page (an answered request is not shown again).
        #expect(b.send("GET", "/api/v1/authorization-requests/\(request)").status == 404)
    }
}

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

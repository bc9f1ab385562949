import Common
@testable import OAuth
import TestSupport
import Testing

/// A pending authorization request is answered once (SPEC 9), by a code or
/// by an error.
@Suite struct AuthorizationAnswerTests {
    /// Review, session 28: a request that another of the browser's requests
    /// answered (with a code) after this one read it was answered again with
    /// an error at the redirect URI: a code and an error for one request.
    @Test func anErrorNeverAnswersARequestAnsweredMeanwhile() throws {
        let h = try StoreFixture()
        let (client, _) = try h.app()
        let service = AuthorizationService(env: h.env, store: h.store)
        let request = AuthorizationRequest(clientID: client, redirectURI: StoreFixture.redirect, redirectURISent: true, scope: ["openid"],
                                           state: "s", nonce: nil, codeChallenge: nil, prompt: ["none"], maxAge: nil)
        let now = h.clock.now
        func stored(_ idHash: String) throws -> StoredAuthorizationRequest {
            try h.store.write { try h.store.insertAuthorizationRequest(idHash: idHash, request: request, createdAt: now, expiresAt: now + 600_000) }
            return try #require(try h.store.read { try h.store.authorizationRequest(idHash: idHash) })
        }
        let raced = try stored("raced")
        #expect(try h.store.write { try h.store.markAuthorizationRequestAnswered(idHash: "raced", at: now) })
        #expect(try service.proceed(raced, requestID: "r1", sessionToken: nil) == .errorPage(AuthorizationService.unknownRequestMessage))
        // Unanswered, the same request gets its error at the redirect URI, once.
        let fresh = try stored("fresh")
        guard case let .respond(response) = try service.proceed(fresh, requestID: "r2", sessionToken: nil) else {
            Issue.record("not answered at the redirect URI")
            return
        }
        #expect(response.fields.first { $0.name == "error" }?.value == "login_required")
        #expect(try service.proceed(fresh, requestID: "r2", sessionToken: nil) == .errorPage(AuthorizationService.unknownRequestMessage))
    }
}

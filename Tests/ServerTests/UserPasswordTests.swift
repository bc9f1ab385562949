import Common
import HTTPCore
@testable import OAuth
import TestSupport
import Testing

/// `latchkey user password` (`Provisioning.setPassword`): the old password
/// signs in no more, and every session of the user ends as at a sign-out,
/// with the grants bound to it.
@Suite struct UserPasswordTests {
    static let newPassword = "a new passphrase, 2"

    @Test func aNewPasswordEndsEverySessionOfTheUserAndTheirGrants() throws {
        let h = try Harness()
        _ = try h.user()
        _ = try h.user("bob")
        let (client, _) = try h.app()
        let flow = UserFlowTests()
        let first = Browser(h), second = Browser(h), bob = Browser(h)
        // A grant made in the session (no offline_access: it ends with the session, Back-Channel Logout 1.0 §2.7).
        let pkce = PKCE()
        let tokens = flow.exchange(h, client: client, code: try flow.code(h, first, client: client, pkce: pkce, scope: "openid profile"),
                                   verifier: pkce.verifier)
        let access = try #require(tokens.json?["access_token"]?.stringValue)
        func userinfo() -> HTTPResponse.Status { h.call("GET", "/oauth2/userinfo", headers: [("Authorization", "Bearer \(access)")]).status }
        #expect(userinfo() == 200)
        #expect(second.login().status == 204)
        #expect(bob.login("bob").status == 204)
        let changed = try Provisioning(env: h.env, store: h.store).setPassword(username: "alice", password: Self.newPassword, keepSessions: false)
        #expect(changed.sessionsEnded == 2)
        #expect(first.send("GET", "/api/v1/session").status == 401)
        #expect(second.send("GET", "/api/v1/session").status == 401)
        #expect(bob.send("GET", "/api/v1/session").status == 200, "another user's session goes on")
        #expect(userinfo() == 401, "the grant made in an ended session")
        let again = Browser(h)
        #expect(again.login().status == 401, "the old password")
        #expect(again.login("alice", Self.newPassword).status == 204)
    }

    /// A user holds at most `SessionService.sessionsPerUser` sessions: the sign-in past them ends the oldest.
    @Test func theSignInPastAUsersSessionLimitEndsTheirOldestSession() throws {
        let h = try Harness()
        let alice = try h.user()
        let browsers = (0...SessionService.sessionsPerUser).map { _ in Browser(h) }
        for b in browsers.dropLast() {
            #expect(b.login().status == 204)
            h.fixture.clock.advance(seconds: 1)
        }
        #expect(browsers.dropLast().allSatisfy { $0.send("GET", "/api/v1/session").status == 200 })
        #expect(browsers.last?.login().status == 204)
        #expect(browsers.first?.send("GET", "/api/v1/session").status == 401)
        #expect(browsers.dropFirst().allSatisfy { $0.send("GET", "/api/v1/session").status == 200 })
        // A browser signing in again at the limit replaces its own session and ends no other (review of the change,
        // session 29: the oldest other one ended first, then its own, leaving one fewer).
        h.fixture.clock.advance(seconds: 1)
        #expect(browsers[50].login().status == 204)
        #expect(browsers.dropFirst().allSatisfy { $0.send("GET", "/api/v1/session").status == 200 })
        #expect(try h.fixture.texts("sessions", "user_id").filter { $0 == alice }.count == SessionService.sessionsPerUser)
    }

    /// A sign-in verifies the password's hash before it stores its session:
    /// one that verified the old password while the change ran gets none.
    @Test func aSignInThatVerifiedTheOldPasswordGetsNoSession() throws {
        let h = try Harness()
        _ = try h.user()
        let before = try #require(try h.store.read { try h.store.user(username: "alice") })
        _ = try Provisioning(env: h.env, store: h.store).setPassword(username: "alice", password: Self.newPassword, keepSessions: false)
        let sessions = SessionService(env: h.env, store: h.store)
        #expect(try sessions.start(before, now: h.fixture.clock.now) == nil)
        let after = try #require(try h.store.read { try h.store.user(username: "alice") })
        #expect(try sessions.start(after, now: h.fixture.clock.now) != nil)
    }

    /// A code issued in an ended session is spent; `--revoke-grants` ends the
    /// grants that outlive sessions too (offline_access), app by app.
    @Test func revokeGrantsDisconnectsEveryAppAndACodeOfAnEndedSessionIsSpent() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let flow = UserFlowTests()
        let b = Browser(h)
        let offline = PKCE()
        let tokens = flow.exchange(h, client: client, code: try flow.code(h, b, client: client, pkce: offline), verifier: offline.verifier)
        let refresh = try #require(tokens.json?["refresh_token"]?.stringValue)
        let pending = PKCE()
        let code = try flow.code(h, b, client: client, pkce: pending)
        let changed = try Provisioning(env: h.env, store: h.store).setPassword(username: "alice", password: Self.newPassword, keepSessions: false,
                                                                               revokeGrants: true)
        #expect(changed.sessionsEnded == 1 && changed.appsDisconnected == 1)
        #expect(flow.exchange(h, client: client, code: code, verifier: pending.verifier).json?["error"]?.stringValue == "invalid_grant")
        let refreshed = h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)])
        #expect(refreshed.json?["error"]?.stringValue == "invalid_grant")
        #expect(try ConnectionService(env: h.env, store: h.store).list(userID: changed.userID, limit: 250, offset: 0).connections.isEmpty)
    }

    @Test func keepSessionsLeavesThemAndTheirGrants() throws {
        let h = try Harness()
        _ = try h.user()
        let (client, _) = try h.app()
        let flow = UserFlowTests()
        let b = Browser(h)
        let pkce = PKCE()
        let tokens = flow.exchange(h, client: client, code: try flow.code(h, b, client: client, pkce: pkce), verifier: pkce.verifier)
        let refresh = try #require(tokens.json?["refresh_token"]?.stringValue)
        let changed = try Provisioning(env: h.env, store: h.store).setPassword(username: "alice", password: Self.newPassword, keepSessions: true)
        #expect(changed.sessionsEnded == 0)
        #expect(b.send("GET", "/api/v1/session").status == 200)
        #expect(h.form("/oauth2/token", [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client)]).status == 200)
        #expect(Browser(h).login("alice", Self.newPassword).status == 204)
    }

    @Test func anUnknownUserOrAShortPasswordChangesNothing() throws {
        let h = try Harness()
        _ = try h.user()
        let b = Browser(h)
        #expect(b.login().status == 204)
        let provisioning = Provisioning(env: h.env, store: h.store)
        #expect(throws: ProvisioningError.self) { try provisioning.setPassword(username: "nobody", password: Self.newPassword, keepSessions: false) }
        #expect(throws: ProvisioningError.self) { try provisioning.setPassword(username: "alice", password: "short", keepSessions: false) }
        #expect(b.send("GET", "/api/v1/session").status == 200)
        #expect(Browser(h).login().status == 204, "the password is as it was")
    }
}

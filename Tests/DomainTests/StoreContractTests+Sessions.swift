@testable import OAuth
import TestSupport
import Testing

extension StoreContractTests {
    /// Sign-ins of one user racing on several connections (nodes) leave at most the user's session limit, and the
    /// newest of each stays. On PostgreSQL the sign-in held the user's row `FOR SHARE`, so sign-ins at once each
    /// counted the sessions without the others' and one more than the limit could stay (carried from earlier notes).
    @Test func signInsRacingKeepTheUsersSessionLimit() throws {
        let h = try StoreFixture()
        let alice = try h.user()
        let user = try #require(try h.store.read { try h.store.user(id: alice) })
        let env = h.env
        let limit = 3
        for _ in 0..<4 {
            let outcomes = race(h, 8) { store, _ in
                try SessionService(env: env, store: store, sessionsPerUser: limit).start(user, now: env.now()) != nil
            }
            #expect(outcomes.allSatisfy { (try? $0.get()) == true }, "\(outcomes)")
            let held = try h.texts("sessions", "user_id").filter { $0 == alice }.count
            #expect(held == limit, "\(held) sessions")
        }
    }
}

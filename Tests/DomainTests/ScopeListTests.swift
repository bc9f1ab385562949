import OAuth
import Testing

/// Scope strings and lists: each name once, in order, at every size, in work
/// linear in the input (review, session 20: 40,000 names in a client's
/// `scope` held a worker for seconds, and an anonymous pushed request of
/// 16 KB for 85 ms).
@Suite struct ScopeListTests {
    @Test(arguments: [1, 7, 8, 9, 16, 40])
    func repeatsAreDroppedAndTheOrderKept(_ count: Int) throws {
        let names = (0..<count).map { "s\($0)" }
        let text = (names + names.reversed() + names).joined(separator: " ")
        #expect(Scopes.parse(text) == names)
        #expect(Scopes.unique(names + names) == names)
    }

    /// 100,000 names, each twice: compared each with all before it, this is 10^10 comparisons.
    /// No `.timeLimit`: it counts from when the test is scheduled, and in the PostgreSQL pass the store tests'
    /// blocking calls hold the run's few threads, so this test once waited past a minute before it ran
    /// (fresh-clone run, session 20). On quadratic code it runs for many minutes instead.
    @Test func aHugeListIsDeduplicatedInLinearWork() throws {
        let names = (0..<100_000).map { "n\($0)" }
        let text = (names + names).joined(separator: " ")
        #expect(Scopes.parse(text)?.count == 100_000)
        #expect(Scopes.unique(names + names).count == 100_000)
    }

    @Test func malformedStringsAreRefused() {
        for text in [" a", "a ", "a  b", "a\u{22}b", "a\\\\b", String(repeating: "x", count: 129)] { #expect(Scopes.parse(text) == nil, "\(text)") }
        #expect(Scopes.parse("") == [])
    }
}

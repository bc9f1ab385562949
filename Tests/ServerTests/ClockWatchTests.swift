import Common
import Server
import Synchronization
import Testing

/// A node's clock against the shared database's, watched while it serves
/// (SPEC 9; session 32's review of time handling: checked only at start, a
/// clock that drifted later went unseen).
@Suite struct ClockWatchTests {
    @Test func itWarnsPastTenSecondsRepeatsEveryTenMinutesAndSaysWhenTheClockIsBack() {
        var state = ClockWatch.State()
        // Within 10 s either way: nothing to say.
        #expect(ClockWatch.observe(5_000, at: 0, state: &state) == nil)
        #expect(ClockWatch.observe(-10_000, at: 60_000, state: &state) == nil)
        // Past it: a warning, then silence for ten minutes while it stays past, then the warning again.
        #expect(ClockWatch.observe(-200_000, at: 120_000, state: &state) == .off(offsetMillis: -200_000))
        #expect(ClockWatch.observe(-201_000, at: 180_000, state: &state) == nil)
        #expect(ClockWatch.observe(15_000, at: 120_000 + 599_999, state: &state) == nil)
        #expect(ClockWatch.observe(15_000, at: 120_000 + 600_000, state: &state) == .off(offsetMillis: 15_000))
        // Back within: said once.
        #expect(ClockWatch.observe(300, at: 800_000, state: &state) == .backWithin(offsetMillis: 300))
        #expect(ClockWatch.observe(300, at: 860_000, state: &state) == nil)
        // Off again after coming back: warned at once, not ten minutes after the last warning.
        #expect(ClockWatch.observe(10_001, at: 920_000, state: &state) == .off(offsetMillis: 10_001))
    }

    @Test func theWarningNamesTheDirectionAndWhatTheDifferenceCosts() {
        let ahead = ClockWatch.warning(offsetMillis: -200_000)
        #expect(ahead.hasPrefix("this node's clock is 200 s ahead of the database's"))
        #expect(ahead.contains("access tokens one node issues are refused") && ahead.contains("taken twice"))
        #expect(ClockWatch.warning(offsetMillis: 61_000).hasPrefix("this node's clock is 61 s behind the database's"))
    }

    /// Each measure reaches `/metrics` and the log; a failed one (the database away) changes neither.
    @Test func eachMeasureIsShownInTheMetricsAndLogged() {
        let lines = LogLines()
        let metrics = Metrics()
        let offsets = Mutex<[Int64?]>([-200_000, nil, 40])
        let now = Mutex<Int64>(0)
        let watch = ClockWatch(intervalMillis: 0, metrics: metrics, logger: Logger(level: .info, sink: lines.sink),
                               now: { now.withLock { $0 } }) {
            guard let offset = offsets.withLock({ $0.removeFirst() }) else { throw ClockWatchTestError() }
            return offset
        }
        #expect(!metrics.render().contains("latchkey_clock_offset_milliseconds"))
        watch.start()
        #expect(metrics.render().contains("\nlatchkey_clock_offset_milliseconds -200000\n"))
        #expect(lines.all.count == 1 && lines.all[0].contains("\"level\":\"warn\"") && lines.all[0].contains("\"clock_offset_ms\":-200000"))
        now.withLock { $0 = 60_000 }
        watch.check()
        #expect(metrics.render().contains("\nlatchkey_clock_offset_milliseconds -200000\n"))
        #expect(lines.all.count == 1)
        watch.check()
        #expect(metrics.render().contains("\nlatchkey_clock_offset_milliseconds 40\n"))
        #expect(lines.all.count == 2 && lines.all[1].contains("back within 10 s"))
    }
}

struct ClockWatchTestError: Error {}

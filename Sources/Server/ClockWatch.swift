import Common
import Foundation
import Synchronization

/// How far this node's clock is from the shared database's, watched while
/// the node serves (SPEC 9). Nodes judge expiries and single-use windows by
/// their own clocks (docs/scaling.md): past 60 s apart, access tokens one
/// node issues are refused by another; past three minutes, a DPoP proof or a
/// client assertion may be taken twice. A clock checked once at start
/// drifts unseen afterwards (NTP stopped, a VM resumed from a pause), so a
/// thread measures it every interval, `/metrics` shows the last measure
/// (`latchkey_clock_offset_milliseconds`), and the log says when it passes
/// the warning threshold, again every ten minutes while it stays past, and
/// when it comes back.
public final class ClockWatch: Sendable {
    /// Past this (either way) the log warns.
    public static let warnBeyondMillis: Int64 = 10_000
    /// While the clock stays off, the warning is repeated this often.
    public static let repeatMillis: Int64 = 600_000

    /// What one measure makes the watch log.
    public enum Note: Equatable, Sendable {
        case off(offsetMillis: Int64)
        case backWithin(offsetMillis: Int64)
    }

    /// The watch's memory between measures: when it last warned (nil: the clock is within the threshold).
    public struct State: Equatable, Sendable {
        public var warnedAt: Int64?
        public init(warnedAt: Int64? = nil) { self.warnedAt = warnedAt }
    }

    /// What a measure (`offsetMillis`: the database's clock minus this node's) taken at `now` makes the watch
    /// log, and its state after it.
    public static func observe(_ offsetMillis: Int64, at now: Int64, state: inout State) -> Note? {
        if offsetMillis.magnitude > warnBeyondMillis.magnitude {
            if let warnedAt = state.warnedAt, now - warnedAt < repeatMillis { return nil }
            state.warnedAt = now
            return .off(offsetMillis: offsetMillis)
        }
        guard state.warnedAt != nil else { return nil }
        state.warnedAt = nil
        return .backWithin(offsetMillis: offsetMillis)
    }

    /// The line for an offset past the threshold: what the difference costs.
    public static func warning(offsetMillis: Int64) -> String {
        "this node's clock is \(offsetMillis.magnitude / 1000) s \(offsetMillis > 0 ? "behind" : "ahead of") the database's: nodes judge "
            + "times by their own clocks, so keep them synchronised (NTP); past 60 s apart, access tokens one node issues are refused by "
            + "the others, and past three minutes a DPoP proof or client assertion may be taken twice (docs/scaling.md)"
    }

    private let measure: @Sendable () throws -> Int64
    private let now: @Sendable () -> Int64
    private let metrics: Metrics
    private let logger: Logger
    private let intervalMillis: Int
    private let state = Mutex<(watch: State, stop: Bool)>((State(), false))

    /// `measure`: the database's clock minus this node's, in milliseconds (one round trip on a connection of the
    /// watch's own); `intervalMillis` 0: no thread (`check()` alone).
    public init(intervalMillis: Int, metrics: Metrics, logger: Logger, now: @escaping @Sendable () -> Int64,
                measure: @escaping @Sendable () throws -> Int64) {
        self.intervalMillis = intervalMillis
        self.metrics = metrics
        self.logger = logger
        self.now = now
        self.measure = measure
    }

    /// One measure: recorded for `/metrics` and logged as `observe` says. A failed measure (the database away)
    /// changes nothing: the requests' own errors say that.
    public func check() {
        guard let offset = try? measure() else { return }
        metrics.recordClockOffset(millis: offset)
        let note = state.withLock { Self.observe(offset, at: now(), state: &$0.watch) }
        switch note {
        case .off(let offset): logger.warn(Self.warning(offsetMillis: offset), [("clock_offset_ms", JSON(Int(offset)))])
        case .backWithin(let offset):
            logger.info("this node's clock is back within \(Self.warnBeyondMillis / 1000) s of the database's", [("clock_offset_ms", JSON(Int(offset)))])
        case nil: break
        }
    }

    /// Measures now, then every interval on a thread of its own until `stop()`.
    public func start() {
        check()
        guard intervalMillis > 0 else { return }
        let thread = Thread { [self] in
            while true {
                // Sleeps in steps of at most a second, so that stop() ends the thread soon.
                var slept = 0
                while slept < intervalMillis {
                    if state.withLock({ $0.stop }) { return }
                    let step = min(1000, intervalMillis - slept)
                    Thread.sleep(forTimeInterval: Double(step) / 1000)
                    slept += step
                }
                check()
            }
        }
        thread.name = "latchkey-clock"
        thread.start()
    }

    public func stop() {
        state.withLock { $0.stop = true }
    }
}

import Dispatch
import Synchronization

/// The generation reads of one node's worker threads (SPEC 9). A read of
/// the generation row begun after a request arrived orders that request,
/// whichever thread sent it: what was committed before the request came is
/// in what that read saw. So a thread that needs the row takes the answer
/// of a read another thread began after its request (or batch) was accepted,
/// waiting for one under way, instead of sending its own; and a read sent
/// alone waits for the one under way to end, so that the threads that ask
/// meanwhile share the next one. Each thread compares the values with its
/// own memo's. Nothing here holds a connection: each read goes out on the
/// connection of the thread that sends it.
///
/// Waits are bounded (`patienceNanos`): a thread that has waited that long
/// sends a read of its own beside the one under way, and an alone read
/// that began longer ago than that is no longer waited for (the next alone
/// read takes its place), so one stuck read (a half-open connection, until
/// its deadline) delays the requests behind it once, by the patience at
/// most, and not every request after it.
public final class GenerationReads: Sendable {
    public struct Values: Sendable, Equatable {
        public let config: Int64
        public let revocation: Int64

        public init(config: Int64, revocation: Int64) {
            self.config = config
            self.revocation = revocation
        }
    }

    struct State {
        /// Reads begun, numbered from 1 in the order they began.
        var begun: UInt64 = 0
        /// The read sent alone now under way (0: none) and when it began: the next alone read waits for it, while it is young.
        var aloneUnderWay: UInt64 = 0
        var aloneBegan: UInt64 = 0
        /// Every read under way, alone or travelling with a statement.
        var underWay: [UInt64] = []
        /// The answer of the latest-begun read that has answered.
        var latest: (number: UInt64, values: Values)?
        var waiters: [DispatchSemaphore] = []
    }

    private let state = Mutex(State())
    private let sharedCount = Atomic<Int>(0)
    private let waitCount = Atomic<Int>(0)
    let patienceNanos: UInt64

    public init(patienceMillis: Int = 10) {
        patienceNanos = UInt64(max(0, patienceMillis)) * 1_000_000
    }

    /// Requests answered with another thread's read (for `/metrics` and tests).
    public var sharedTotal: Int { sharedCount.load(ordering: .relaxed) }
    /// Times a thread waited for another's read (tests).
    var waitsTotal: Int { waitCount.load(ordering: .relaxed) }

    /// Taken once a request (or a batch of them) has been accepted: reads numbered above it began after it arrived.
    func mark() -> UInt64 {
        state.withLock { $0.begun }
    }

    /// A read that travels with a statement (it goes out whatever is shared): numbered now, before it is sent.
    func begin() -> UInt64 {
        state.withLock { s in
            s.begun += 1
            s.underWay.append(s.begun)
            return s.begun
        }
    }

    /// A read has answered (`values`) or failed (`nil`): later readers may take it; waiters look again.
    func end(_ number: UInt64, _ values: Values?) {
        let waiters = state.withLock { s -> [DispatchSemaphore] in
            s.underWay.removeAll { $0 == number }
            if s.aloneUnderWay == number { s.aloneUnderWay = 0 }
            if let values, number > (s.latest?.number ?? 0) { s.latest = (number, values) }
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.signal() }
    }

    private enum Step {
        case take(Values)
        case wait
        case send(UInt64)
    }

    /// The values of a read begun after `mark`: another thread's (waiting
    /// for it if it is under way), or else `read()`'s, sent on the caller's
    /// connection once no other alone read is under way. `wake` is the
    /// caller's own semaphore (one per thread, reused).
    func values(after mark: UInt64, wake: DispatchSemaphore, read: () throws -> Values?) throws -> Values? {
        let giveUp = DispatchTime.now().uptimeNanoseconds &+ patienceNanos
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            let step = state.withLock { s -> Step in
                if let latest = s.latest, latest.number > mark { return .take(latest.values) }
                // One under way that began after the mark will do; one that began before it ends soon,
                // and the threads waiting for it share the read after it.
                let youngAlone = s.aloneUnderWay != 0 && now &- s.aloneBegan < patienceNanos
                if (s.underWay.contains { $0 > mark } || youngAlone) && now < giveUp {
                    if !s.waiters.contains(where: { $0 === wake }) { s.waiters.append(wake) }
                    return .wait
                }
                s.begun += 1
                s.underWay.append(s.begun)
                if !youngAlone {
                    s.aloneUnderWay = s.begun
                    s.aloneBegan = now
                }
                return .send(s.begun)
            }
            switch step {
            case let .take(values):
                sharedCount.add(1, ordering: .relaxed)
                return values
            case .wait:
                waitCount.add(1, ordering: .relaxed)
                // A wake-up meant for an earlier wait may end this one early: the loop looks again.
                _ = wake.wait(timeout: DispatchTime(uptimeNanoseconds: giveUp))
            case let .send(number):
                let values: Values?
                do {
                    values = try read()
                } catch {
                    end(number, nil)
                    throw error
                }
                end(number, values)
                return values
            }
        }
    }
}

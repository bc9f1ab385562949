internal import CCurl
import Synchronization

/// Outgoing form POSTs (Back-Channel Logout tokens, `FormPostQueue`), over libcurl: http and
/// https only, no redirect followed, no proxy taken from the environment, no
/// cookies, the answer's body discarded, one timeout for connecting and
/// answering. `admits` is asked for every address libcurl is about to
/// connect to, after its own name resolution: a refused address is never
/// dialled (libcurl tries the name's next address, if any), so what is
/// checked is what is reached.
public enum FormPoster {
    public struct Outcome: Sendable, Equatable {
        /// The answer's HTTP status; nil when none came (refused, unreachable, timed out).
        public let status: Int?
        /// Whether `admits` refused an address the name resolved to.
        public let refusedAddress: Bool

        public init(status: Int?, refusedAddress: Bool) {
            self.status = status
            self.refusedAddress = refusedAddress
        }
    }

    /// libcurl's global set-up, done once (Swift runs a static's initializer once, thread-safely).
    static let ready: Bool = lk_curl_global_init() == 0
}

/// POSTs in flight, each finished on its own: a slot is free again as soon
/// as its transfer ends, so a receiver that never answers holds one slot
/// for its timeout and nobody else's POST waits for it. Each POST opens a
/// connection of its own (none is reused, so each is vetted). Not
/// `Sendable`: one thread's.
public final class FormPostQueue {
    /// What the C callback reaches through its context pointer.
    final class Gate: Sendable {
        let admits: @Sendable ([UInt8], Int) -> Bool
        init(_ admits: @escaping @Sendable ([UInt8], Int) -> Bool) { self.admits = admits }
    }

    private let queue: UnsafeMutablePointer<lk_curl_queue>
    private let gate: Unmanaged<Gate>
    private let timeoutMillis: Int
    public let capacity: Int

    /// `admits(address, flag)`: whether a POST started with `flag` may connect to `address`. Nil when libcurl cannot be set up.
    public init?(capacity: Int, timeoutSeconds: Int, admits: @escaping @Sendable (_ address: [UInt8], _ flag: Int) -> Bool) {
        guard FormPoster.ready else { return nil }
        let gate = Unmanaged.passRetained(Gate(admits))
        let admit: lk_curl_admit = { address, length, flag, context in
            guard let address, let context, length == 4 || length == 16 else { return 0 }
            let bytes = Array(UnsafeBufferPointer(start: address, count: Int(length)))
            return Unmanaged<Gate>.fromOpaque(context).takeUnretainedValue().admits(bytes, Int(flag)) ? 1 : 0
        }
        guard let queue = lk_curl_queue_new(Int32(capacity), admit, gate.toOpaque()) else {
            gate.release()
            return nil
        }
        self.queue = queue
        self.gate = gate
        self.capacity = capacity
        self.timeoutMillis = timeoutSeconds * 1000
    }

    deinit {
        lk_curl_queue_free(queue)
        gate.release()
    }

    /// POSTs in flight.
    public var inFlight: Int { Int(lk_curl_queue_busy(queue)) }

    /// Starts a POST of `form` to `url`; false when every slot is taken or libcurl refused it (nothing sent).
    public func start(url: String, form: [UInt8], flag: Int, tag: Int64) -> Bool {
        let body = form.map { CChar(bitPattern: $0) } + [0]
        return lk_curl_queue_start(queue, url, body, form.count, timeoutMillis, Int32(flag), tag) == 0
    }

    /// Runs the transfers until one ends or `waitMillis` has passed: those that ended, by tag.
    public func finished(waitMillis: Int) -> [(tag: Int64, outcome: FormPoster.Outcome)] {
        let room = max(1, inFlight)
        var tags = [Int64](repeating: 0, count: room), statuses = [Int](repeating: 0, count: room), refused = [Int32](repeating: 0, count: room)
        let done = Int(lk_curl_queue_run(queue, waitMillis, &tags, &statuses, &refused, Int32(room)))
        return (0..<max(0, done)).map { i in
            (tags[i], FormPoster.Outcome(status: statuses[i] > 0 ? statuses[i] : nil, refusedAddress: refused[i] != 0))
        }
    }
}

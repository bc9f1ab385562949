import Common
import Foundation
import HTTPClient
import OAuth
import Server
import Synchronization

/// Back-Channel Logout's delivery: `LogoutSender` on a thread and a store
/// connection of its own, in every node (the queue's claims let exactly one
/// node send each token). Idle, it reads the queue every interval; with POSTs
/// in flight, it waits for them (200 ms at a time) and refills each slot that
/// frees up. Never on a request's path.
final class LogoutDeliveryThread: Sendable {
    private let makeStore: @Sendable () throws -> any Store
    private let env: Environment
    private let logger: Logger
    private let state = Mutex<(stop: Bool, done: Bool)>((false, false))
    private let intervalMillis: Int
    private let allowed: IPNetworks?

    /// `intervalMillis`: how often this node looks for due tokens (`LATCHKEY_BACKCHANNEL_INTERVAL_MS`,
    /// default 1000); 0: this node sends none (another node does). `allowed`: the non-public networks
    /// logout tokens may go to (`LATCHKEY_BACKCHANNEL_ALLOW`).
    init(env: Environment, logger: Logger, intervalMillis: Int, allowed: IPNetworks?, makeStore: @escaping @Sendable () throws -> any Store) {
        self.env = env
        self.logger = logger
        self.intervalMillis = intervalMillis
        self.allowed = allowed
        self.makeStore = makeStore
    }

    func start() {
        guard intervalMillis > 0 else { return }
        let thread = Thread { [self] in self.loop() }
        thread.name = "latchkey-logout"
        thread.start()
    }

    /// Stops within a pass of the loop (200 ms of waiting for POSTs at most); what is in flight is tried again when its claim lapses.
    func stop() {
        state.withLock { $0.stop = true }
    }

    private func loop() {
        defer { state.withLock { $0.done = true } }
        guard let poster = LogoutPoster(logger: logger, allowed: allowed) else {
            logger.warn("logout delivery off: libcurl could not be set up", [])
            return
        }
        var sender: LogoutSender?
        while !state.withLock({ $0.stop }) {
            // Idle: look for due tokens every interval. With POSTs in flight: wait for them (200 ms at a time), fill
            // each slot that frees up at once, and read the queue for free slots no more often than every interval.
            if poster.inFlight == 0 { Thread.sleep(forTimeInterval: Double(intervalMillis) / 1000) }
            do {
                if sender == nil {
                    let store = try makeStore()
                    sender = LogoutSender(env: env, store: store, keys: KeyRing(store: store, env: env))
                }
                try sender?.pump(poster, waitMillis: min(intervalMillis, 200), refillMillis: intervalMillis)
            } catch {
                // The database away or busy: a new connection and sender after a pause; the queue keeps what was not
                // sent. What is in flight ends on its own, passed over by the new sender (its tags are the old
                // sender's), and its deliveries are tried again when their claims lapse.
                logger.warn("logout delivery failed", [("error", .string(Logger.redacted(String(describing: error))))])
                sender = nil
                Thread.sleep(forTimeInterval: Double(intervalMillis) / 1000)
            }
        }
    }
}

/// The POSTs of logout tokens (§2.5): form-encoded, a 5-second timeout, no
/// redirect followed (a 3xx is a failure), no cookies, the answer's body
/// unread, `LogoutSender.batch` in flight at most, each ending on its own.
/// Only to public addresses unless the operator names a network
/// (`LATCHKEY_BACKCHANNEL_ALLOW`): a logout URI is chosen by whoever manages
/// the client (a tenant's admin, or anyone where registration is open), and
/// must not make the server a way into its own host or private network
/// (loopback services, cloud metadata at 169.254.169.254, internal APIs).
/// The check is on the address actually dialled (`FormPostQueue`). One thread's.
final class LogoutPoster: LogoutTransport {
    private let logger: Logger
    private let queue: FormPostQueue
    /// The host of each POST in flight, for the log line of one that fails.
    private var hosts: [Int64: String] = [:]
    /// The last tag given (tags are never given twice over the poster's life).
    private var lastTag: Int64 = 0

    init?(logger: Logger, allowed: IPNetworks?) {
        guard let queue = FormPostQueue(capacity: LogoutSender.batch, timeoutSeconds: LogoutSender.timeoutSeconds, admits: { address, flag in
            LogoutSender.mayPost(to: address, allowed: allowed, operatorNetworks: flag == 1)
        }) else { return nil }
        self.logger = logger
        self.queue = queue
    }

    var capacity: Int { queue.capacity }
    var inFlight: Int { queue.inFlight }

    func start(uri: String, form: [UInt8], operatorNetworks: Bool) -> Int64? {
        lastTag += 1
        guard queue.start(url: uri, form: form, flag: operatorNetworks ? 1 : 0, tag: lastTag) else {
            logger.warn("logout token not delivered: the POST could not be started", [("host", .string(URL(string: uri)?.host ?? ""))])
            return nil
        }
        hosts[lastTag] = URL(string: uri)?.host ?? ""
        return lastTag
    }


    func finished(waitMillis: Int) -> [(tag: Int64, delivered: Bool)] {
        queue.finished(waitMillis: waitMillis).map { tag, outcome in
            let host = hosts.removeValue(forKey: tag) ?? ""
            if let status = outcome.status, (200..<300).contains(status) { return (tag, true) }
            if outcome.refusedAddress {
                logger.warn("logout token not delivered: the host's address is not public (LATCHKEY_BACKCHANNEL_ALLOW names the networks allowed)",
                            [("host", .string(host))])
            } else {
                logger.warn("logout token not delivered", [("host", .string(host)), ("status", outcome.status.map { JSON($0) } ?? "no answer")])
            }
            return (tag, false)
        }
    }
}

import Common
import Foundation
import HTTPClient
import OAuth
import Server
import Synchronization

/// Back-Channel Logout's delivery: `LogoutSender` once a second, on a thread
/// and a store connection of its own, in every node (the queue's claims let
/// exactly one node send each token). Never on a request's path.
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

    /// Stops after the current round (a round waits for at most one POST's timeout per delivery).
    func stop() {
        state.withLock { $0.stop = true }
    }

    private func loop() {
        defer { state.withLock { $0.done = true } }
        let poster = LogoutPoster(logger: logger, allowed: allowed)
        var sender: LogoutSender?
        while !state.withLock({ $0.stop }) {
            Thread.sleep(forTimeInterval: Double(intervalMillis) / 1000)
            do {
                if sender == nil {
                    let store = try makeStore()
                    sender = LogoutSender(env: env, store: store, keys: KeyRing(store: store, env: env))
                }
                try sender?.runOnce(post: poster.post)
            } catch {
                // The database away or busy: a new connection next round; the queue keeps what was not sent.
                logger.warn("logout delivery round failed", [("error", .string(Logger.redacted(String(describing: error))))])
                sender = nil
            }
        }
    }
}

/// One POST of a logout token (§2.5): form-encoded, a 5-second timeout, no
/// redirect followed (a 3xx is a failure), no cookies, the answer's body
/// unread. Only to public addresses unless the operator names a network
/// (`LATCHKEY_BACKCHANNEL_ALLOW`): a logout URI is chosen by whoever manages
/// the client (a tenant's admin, or anyone where registration is open), and
/// must not make the server a way into its own host or private network
/// (loopback services, cloud metadata at 169.254.169.254, internal APIs).
/// The check is on the address actually dialled (`FormPoster`).
final class LogoutPoster: Sendable {
    private let logger: Logger
    private let allowed: IPNetworks?

    init(logger: Logger, allowed: IPNetworks?) {
        self.logger = logger
        self.allowed = allowed
    }

    /// Every POST of the batch at once; waits for all, one timeout at most.
    func post(_ batch: [(uri: String, form: [UInt8], operatorNetworks: Bool)]) -> [Bool] {
        let outcomes = FormPoster.post(batch.map { ($0.uri, $0.form) }, timeoutSeconds: LogoutSender.timeoutSeconds,
                                       admits: LogoutSender.admission(for: batch, allowed: allowed))
        return zip(batch, outcomes).map { item, outcome in
            if let status = outcome.status, (200..<300).contains(status) { return true }
            let host = URL(string: item.uri)?.host ?? ""
            if outcome.refusedAddress {
                logger.warn("logout token not delivered: the host's address is not public (LATCHKEY_BACKCHANNEL_ALLOW names the networks allowed)",
                            [("host", .string(host))])
            } else {
                logger.warn("logout token not delivered", [("host", .string(host)), ("status", outcome.status.map { JSON($0) } ?? "no answer")])
            }
            return false
        }
    }
}

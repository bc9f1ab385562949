import Common
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
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

    /// `intervalMillis`: how often this node looks for due tokens (`LATCHKEY_BACKCHANNEL_INTERVAL_MS`,
    /// default 1000); 0: this node sends none (another node does).
    init(env: Environment, logger: Logger, intervalMillis: Int, makeStore: @escaping @Sendable () throws -> any Store) {
        self.env = env
        self.logger = logger
        self.intervalMillis = intervalMillis
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
        let poster = LogoutPoster(logger: logger)
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
/// redirect followed (a 3xx is a failure), no cookies, the answer's body unread.
final class LogoutPoster: NSObject, URLSessionTaskDelegate, Sendable {
    private let logger: Logger
    private let session = Mutex<URLSession?>(nil)

    init(logger: Logger) {
        self.logger = logger
    }

    private var urlSession: URLSession {
        session.withLock { current in
            if let current { return current }
            let configuration = URLSessionConfiguration.ephemeral
            configuration.timeoutIntervalForRequest = TimeInterval(LogoutSender.timeoutSeconds)
            configuration.timeoutIntervalForResource = TimeInterval(LogoutSender.timeoutSeconds)
            configuration.httpShouldSetCookies = false
            configuration.httpCookieAcceptPolicy = .never
            configuration.urlCache = nil
            let made = URLSession(configuration: configuration, delegate: self, delegateQueue: nil)
            current = made
            return made
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse, newRequest request: URLRequest,
                    completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
        completionHandler(nil)
    }

    /// Every POST of the batch at once; waits for all, one timeout at most.
    func post(_ batch: [(uri: String, form: [UInt8])]) -> [Bool] {
        let statuses = Mutex<[Int?]>(Array(repeating: nil, count: batch.count))
        let group = DispatchGroup()
        var tasks: [URLSessionDataTask] = []
        for (i, item) in batch.enumerated() {
            guard let url = URL(string: item.uri) else { continue }
            var request = URLRequest(url: url, timeoutInterval: TimeInterval(LogoutSender.timeoutSeconds))
            request.httpMethod = "POST"
            request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
            request.httpBody = Data(item.form)
            group.enter()
            let task = urlSession.dataTask(with: request) { _, response, _ in
                statuses.withLock { $0[i] = (response as? HTTPURLResponse)?.statusCode }
                group.leave()
            }
            tasks.append(task)
            task.resume()
        }
        if group.wait(timeout: .now() + .seconds(LogoutSender.timeoutSeconds + 1)) == .timedOut {
            for task in tasks { task.cancel() }
        }
        let answered = statuses.withLock { $0 }
        return zip(batch, answered).map { item, status in
            guard let status, (200..<300).contains(status) else {
                let host = URL(string: item.uri)?.host ?? ""
                logger.warn("logout token not delivered", [("host", .string(host)), ("status", status.map { JSON($0) } ?? "no answer")])
                return false
            }
            return true
        }
    }
}

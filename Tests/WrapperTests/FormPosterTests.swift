import Foundation
import HTTPClient
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Outgoing POSTs over libcurl against a listener on loopback: the address
/// check is asked about the address actually dialled (a name included),
/// a refused one is never connected to, redirects are not followed, only
/// http and https are spoken, and a silent receiver costs one timeout.
@Suite(.serialized) struct FormPosterTests {
    /// A one-thread HTTP listener on 127.0.0.1 that records each request it reads and answers `answer`
    /// (nil: reads and never answers until stopped).
    ///
    /// Its thread owns the listening descriptor: `stop` shuts the socket down
    /// and waits for the thread, which closes it last. (It used to close the
    /// descriptor under a thread still holding a silent connection; ten
    /// seconds later that thread called accept on the same number, by then
    /// another test's socket, and took its connection: the FastCGI pool and
    /// allow-list tests' "first connection never reached the pool".)
    final class Listener: Sendable {
        let fd: Int32
        let port: UInt16
        let requests = Mutex<[String]>([])
        let answer: String?
        /// Whether a connection stays open for further requests after an answer (HTTP/1.1 keep-alive).
        let keepAlive: Bool
        private let stopped = Atomic<Bool>(false)
        /// Whether the thread has closed the descriptor (after which its number may be another test's).
        private let closed = Mutex(false)
        private let finished = DispatchSemaphore(value: 0)

        init(answer: String?, keepAlive: Bool = false) throws {
            self.answer = answer
            self.keepAlive = keepAlive
            (fd, port) = try FormPosterTests.listeningSocket()
            let thread = Thread { [self] in self.serve() }
            thread.start()
        }

        private func serve() {
            defer {
                closed.withLock { isClosed in
                    close(fd)
                    isClosed = true
                }
                finished.signal()
            }
            // After `stop` shut the socket down, accept fails (EINVAL) and the thread ends.
            while !stopped.load(ordering: .acquiring) {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    return
                }
                if keepAlive {
                    // A connection kept open waits for a next request a second at most (a POST riding it would
                    // otherwise hold `stop` for good).
                    var wait = timeval(tv_sec: 1, tv_usec: 0)
                    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
                }
                repeat {
                var received: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                // Headers and a small body: read until the body's length is in.
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
                    if n <= 0 { break }
                    received += buffer[0..<n]
                    let text = String(decoding: received, as: UTF8.self)
                    if let end = text.range(of: "\r\n\r\n") {
                        let length = text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                        if text[end.upperBound...].utf8.count >= length { break }
                    }
                }
                if received.isEmpty { break }
                requests.withLock { $0.append(String(decoding: received, as: UTF8.self)) }
                if let answer {
                    let bytes = Array(answer.utf8)
                    _ = bytes.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
                } else {
                    // Silent: the connection is held, unanswered, until the listener stops.
                    while !stopped.load(ordering: .acquiring) { usleep(10_000) }
                }
                } while keepAlive && !stopped.load(ordering: .acquiring)
                close(client)
            }
        }

        /// Ends the listener: no descriptor of it is used or closed after this returns.
        func stop() {
            stopped.store(true, ordering: .releasing)
            // Never on a number the thread has closed already (it ends early on an accept error).
            closed.withLock { isClosed in if !isClosed { shutdown(fd, Int32(SHUT_RDWR)) } }
            finished.wait()
        }

        var seen: [String] { requests.withLock { $0 } }
        var url: String { "http://127.0.0.1:\(port)/logout" }
    }

    static let form = Array("logout_token=abc.def.ghi".utf8)

    /// A TCP socket listening on a free loopback port: its descriptor and port.
    static func listeningSocket() throws -> (fd: Int32, port: UInt16) {
        let listening = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listening, $0, size) } }
        var length = size
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listening, $0, &length) }
        }
        guard bound == 0, named == 0, listen(listening, 16) == 0 else { close(listening); throw CocoaError(.fileNoSuchFile) }
        return (listening, UInt16(bigEndian: address.sin_port))
    }

    /// Every POST of a batch at once on one queue, waiting for all: `admits(address, i)` for the `i`th.
    static func post(_ batch: [(url: String, form: [UInt8])], timeoutSeconds: Int,
                     admits: @escaping @Sendable (_ address: [UInt8], _ index: Int) -> Bool) -> [FormPoster.Outcome] {
        let none = FormPoster.Outcome(status: nil, refusedAddress: false)
        guard let queue = FormPostQueue(capacity: batch.count, timeoutSeconds: timeoutSeconds, admits: admits) else { return batch.map { _ in none } }
        var outcomes = [FormPoster.Outcome?](repeating: nil, count: batch.count)
        for (i, post) in batch.enumerated() where !queue.start(url: post.url, form: post.form, flag: i, tag: Int64(i)) { outcomes[i] = none }
        while queue.inFlight > 0 { for (tag, outcome) in queue.finished(waitMillis: 200) { outcomes[Int(tag)] = outcome } }
        return outcomes.map { $0 ?? none }
    }

    @Test func anAdmittedAddressGetsTheFormAndItsStatusComesBack() throws {
        let listener = try Listener(answer: "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        defer { listener.stop() }
        let asked = Mutex<[[UInt8]]>([])
        let outcomes = Self.post([(listener.url, Self.form)], timeoutSeconds: 5) { address, _ in
            asked.withLock { $0.append(address) }
            return true
        }
        #expect(outcomes == [FormPoster.Outcome(status: 204, refusedAddress: false)])
        #expect(asked.withLock { $0 } == [[127, 0, 0, 1]])
        let request = try #require(listener.seen.first)
        #expect(request.hasPrefix("POST /logout HTTP/1.1\r\n"))
        #expect(request.contains("Content-Type: application/x-www-form-urlencoded\r\n"))
        #expect(request.hasSuffix("\r\n\r\nlogout_token=abc.def.ghi"))
    }

    @Test func aRefusedAddressIsNeverDialledEvenBehindAName() throws {
        let listener = try Listener(answer: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        defer { listener.stop() }
        // "localhost" is a name: what is refused is the address it resolved to, at the moment of dialling.
        let asked = Mutex<[[UInt8]]>([])
        let outcomes = Self.post([(listener.url, Self.form), ("http://localhost:\(listener.port)/logout", Self.form)], timeoutSeconds: 5) { address, _ in
            asked.withLock { $0.append(address) }
            return false
        }
        #expect(outcomes == [FormPoster.Outcome(status: nil, refusedAddress: true), FormPoster.Outcome(status: nil, refusedAddress: true)])
        #expect(asked.withLock { $0 }.allSatisfy { $0 == [127, 0, 0, 1] || $0 == Array(repeating: 0, count: 15) + [1] })
        usleep(100_000)
        #expect(listener.seen.isEmpty, "nothing reached the listener")
    }

    /// Each POST of a batch is admitted on its own: the check is told which one dials.
    @Test func eachPostOfABatchIsAdmittedOnItsOwn() throws {
        let listener = try Listener(answer: "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        defer { listener.stop() }
        let outcomes = Self.post([(listener.url, Self.form), (listener.url, Self.form)], timeoutSeconds: 5) { _, index in index == 1 }
        #expect(outcomes == [FormPoster.Outcome(status: nil, refusedAddress: true), FormPoster.Outcome(status: 204, refusedAddress: false)])
        #expect(listener.seen.count == 1)
    }

    @Test func redirectsAreNotFollowedAndOnlyHTTPIsSpoken() throws {
        let target = try Listener(answer: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        defer { target.stop() }
        let redirecting = try Listener(answer: "HTTP/1.1 307 Temporary Redirect\r\nLocation: \(target.url)\r\nContent-Length: 0\r\n\r\n")
        defer { redirecting.stop() }
        // Schemes libcurl speaks but this sender must not: each would open a connection to the listener if allowed.
        let other = ["ftp", "gopher", "telnet", "dict", "imap", "smtp"].map { ("\($0)://127.0.0.1:\(target.port)/x", Self.form) }
        let dialled = Mutex(0)
        let outcomes = Self.post([(redirecting.url, Self.form), ("file:///etc/passwd", Self.form)] + other, timeoutSeconds: 5) { _, _ in
            dialled.withLock { $0 += 1 }
            return true
        }
        #expect(outcomes[0] == FormPoster.Outcome(status: 307, refusedAddress: false))
        #expect(outcomes.dropFirst().allSatisfy { $0.status == nil })
        usleep(100_000)
        #expect(redirecting.seen.count == 1)
        #expect(dialled.withLock { $0 } == 1, "only the http POST opened a connection")
        #expect(target.seen.isEmpty, "the redirect was not followed; no other scheme was spoken")
    }

    @Test func aSilentReceiverCostsOneTimeoutAndHoldsUpNoOther() throws {
        let silent = try Listener(answer: nil)
        defer { silent.stop() }
        let quick = try Listener(answer: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        defer { quick.stop() }
        let started = Date()
        let outcomes = Self.post([(silent.url, Self.form), (quick.url, Self.form)], timeoutSeconds: 1) { _, _ in true }
        #expect(outcomes == [FormPoster.Outcome(status: nil, refusedAddress: false), FormPoster.Outcome(status: 200, refusedAddress: false)])
        // The silent receiver holds its connection until it stops: the 1 s timeout, not the receiver, ended the wait.
        #expect(Date().timeIntervalSince(started) < 8, "bounded by the timeout, not by the receiver")
    }

    /// A slot is free as soon as its transfer ends: the quick receiver's POST
    /// is reported while the silent one is still in flight, and another POST
    /// takes the freed slot at once; the silent one ends at its timeout.
    @Test func aQueueFreesEachSlotAsItsPostEnds() throws {
        let silent = try Listener(answer: nil)
        defer { silent.stop() }
        let quick = try Listener(answer: "HTTP/1.1 204 No Content\r\n\r\n")
        defer { quick.stop() }
        let queue = try #require(FormPostQueue(capacity: 2, timeoutSeconds: 2) { _, flag in flag == 1 })
        #expect(queue.start(url: silent.url, form: Self.form, flag: 1, tag: 10))
        #expect(queue.start(url: quick.url, form: Self.form, flag: 1, tag: 11))
        #expect(!queue.start(url: quick.url, form: Self.form, flag: 1, tag: 12), "both slots taken")
        var ended: [(tag: Int64, outcome: FormPoster.Outcome)] = []
        while ended.isEmpty { ended = queue.finished(waitMillis: 200) }
        #expect(ended.map(\.tag) == [11] && ended[0].outcome.status == 204 && queue.inFlight == 1)
        // The freed slot takes the next POST, which the gate refuses by its flag: never dialled.
        #expect(queue.start(url: quick.url, form: Self.form, flag: 0, tag: 12))
        var rest: [Int64: FormPoster.Outcome] = [:]
        while queue.inFlight > 0 { for (tag, outcome) in queue.finished(waitMillis: 200) { rest[tag] = outcome } }
        #expect(rest == [12: FormPoster.Outcome(status: nil, refusedAddress: true), 10: FormPoster.Outcome(status: nil, refusedAddress: false)])
        #expect(quick.seen.count == 1)
    }

    /// No connection is reused: one opened for a POST the gate admitted (an
    /// operator-allowed address) never carries a later POST the gate would
    /// refuse, to the same host, whose own connection is vetted and refused.
    @Test func aLaterPostNeverRidesAnEarlierPostsConnection() throws {
        let listener = try Listener(answer: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", keepAlive: true)
        defer { listener.stop() }
        let queue = try #require(FormPostQueue(capacity: 2, timeoutSeconds: 2) { _, flag in flag == 1 })
        #expect(queue.start(url: listener.url, form: Self.form, flag: 1, tag: 1))
        var first: [(tag: Int64, outcome: FormPoster.Outcome)] = []
        while first.isEmpty { first = queue.finished(waitMillis: 200) }
        #expect(first.first?.outcome.status == 200)
        #expect(queue.start(url: listener.url, form: Self.form, flag: 0, tag: 2))
        var second: [(tag: Int64, outcome: FormPoster.Outcome)] = []
        while second.isEmpty { second = queue.finished(waitMillis: 200) }
        #expect(second.first?.outcome == FormPoster.Outcome(status: nil, refusedAddress: true))
        #expect(listener.seen.count == 1)
    }

    /// A receiver that answers `prefix`, then one more byte every 20 ms for
    /// `seconds` (a header never finished, or a body streamed), on one
    /// connection; `dribbled` counts the bytes it got out before the other
    /// end closed.
    final class Dribbler: Sendable {
        let port: UInt16
        let dribbled = Atomic<Int>(0)
        let listener: Int32

        init(prefix: String, seconds: Double) throws {
            (listener, port) = try FormPosterTests.listeningSocket()
            let fd = listener
            Thread.detachNewThread { [self] in
                let client = accept(fd, nil, nil)
                guard client >= 0 else { return }
                defer { close(client) }
                var buffer = [UInt8](repeating: 0, count: 4096)
                _ = buffer.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
                let head = Array(prefix.utf8)
                _ = head.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                let end = Date().addingTimeInterval(seconds)
                while Date() < end {
                    usleep(20_000)
                    guard [UInt8(ascii: "x")].withUnsafeBytes({ send(client, $0.baseAddress, 1, Int32(MSG_NOSIGNAL)) }) == 1 else { return }
                    dribbled.add(1, ordering: .relaxed)
                }
            }
        }

        var url: String { "http://127.0.0.1:\(port)/logout" }
        func stop() { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }
    }

    /// An answer's body is never read: the POST ends at its first byte with
    /// the status known, so a receiver streaming a body holds no slot.
    @Test func aStreamedBodyEndsThePostAtItsFirstByte() throws {
        let streamer = try Dribbler(prefix: "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", seconds: 3)
        defer { streamer.stop() }
        let queue = try #require(FormPostQueue(capacity: 1, timeoutSeconds: 5) { _, _ in true })
        #expect(queue.start(url: streamer.url, form: Self.form, flag: 0, tag: 1))
        var ended: [(tag: Int64, outcome: FormPoster.Outcome)] = []
        while ended.isEmpty { ended = queue.finished(waitMillis: 200) }
        #expect(ended.first?.outcome.status == 200)
        #expect(streamer.dribbled.load(ordering: .relaxed) < 40, "ended long before the receiver's 3 s of body")
    }

    /// Bytes arriving that end nothing do not cut a wait short: the caller
    /// is not woken (and its queue of deliveries not read) at every packet.
    @Test func aWaitLastsUntilAPostEndsNotUntilTheNextPacket() throws {
        let trickler = try Dribbler(prefix: "HTTP/1.1 200 OK\r\nX-Slow: ", seconds: 3)
        defer { trickler.stop() }
        let queue = try #require(FormPostQueue(capacity: 1, timeoutSeconds: 5) { _, _ in true })
        #expect(queue.start(url: trickler.url, form: Self.form, flag: 0, tag: 1))
        let started = Date()
        #expect(queue.finished(waitMillis: 300).isEmpty)
        #expect(Date().timeIntervalSince(started) >= 0.25, "waited its time through the receiver's packets")
        #expect(trickler.dribbled.load(ordering: .relaxed) >= 2, "the receiver did keep its socket busy meanwhile")
    }
}

@testable import FastCGI
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The worker pool over a real unix socket, with a minimal FastCGI client
/// and a handler that records what it was given and can hold a request
/// until the test lets it go: connections taken together form a batch
/// (`beginBatch` before the first, `endBatch` after the last), a batch
/// member kept waiting behind its owner's slow request is served by a free
/// thread instead, and a connection that ends before its request does not
/// stop the rest.
@Suite(.serialized) struct FastCGIPoolTests {
    /// What the handlers saw, in order: "begin@T", "end@T", "NAME@T" (T: the thread's index).
    final class Log: Sendable {
        let entries = Mutex<[String]>([])
        let gates = Mutex<[String: Bool]>([:])

        func add(_ entry: String) { entries.withLock { $0.append(entry) } }
        var all: [String] { entries.withLock { $0 } }

        func open(_ gate: String) { gates.withLock { $0[gate] = true } }
        func isOpen(_ gate: String) -> Bool { gates.withLock { $0[gate] ?? $0["*"] ?? false } }
        /// Lets every held request go (before the pool stops, whatever the test's outcome).
        func openAll() { open("*") }

        /// Waits (up to 10 s) until `condition` holds for the entries.
        func waitFor(_ condition: ([String]) -> Bool) -> Bool {
            for _ in 0..<2000 {
                if condition(all) { return true }
                usleep(5_000)
            }
            return false
        }
    }

    final class RecordingHandler: FastCGIHandler {
        let index: Int
        let log: Log

        init(index: Int, log: Log) {
            self.index = index
            self.log = log
        }

        func handle(_ request: FastCGIRequest) -> [UInt8] {
            let name = request.params["NAME"] ?? "?"
            log.add("\(name)@\(index)")
            if let gate = request.params["HOLD"] {
                while !log.isOpen(gate) { usleep(1_000) }
            }
            return Array("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n\(name)".utf8)
        }

        func beginBatch() { log.add("begin@\(index)") }
        func endBatch() { log.add("end@\(index)") }
    }

    static func socketPath() -> String { "/tmp/lk-fcgi-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock" }

    static func start(workers: Int, maxBatch: Int, log: Log) throws -> (RunningPool, String) {
        let path = socketPath()
        let server = FastCGIServer(address: .unix(path: path), workers: workers, maxBodyBytes: 1024, maxBatch: maxBatch) { index in
            RecordingHandler(index: index, log: log)
        }
        return (try server.start(), path)
    }

    enum ClientError: Error { case failed(String, Int32) }

    /// A pool's shared state over a non-blocking listening socket, with no threads: the test plays them.
    static func poolWithoutThreads() throws -> (PoolState, () -> Void) {
        let path = socketPath()
        let server = FastCGIServer(address: .unix(path: path), workers: 1, maxBodyBytes: 1024, maxBatch: 8) { _ in
            RecordingHandler(index: 0, log: Log())
        }
        let listener = try server.openListener()
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)
        let pool = PoolState(listenFD: listener, stopFD: makeEventFD(), nudgeFD: makeEventFD(), maxBatch: 8, maxBodyBytes: 1024)
        return (pool, { close(listener); unlink(path); close(pool.stopFD); close(pool.nudgeFD) })
    }

    /// A FastCGI client connection: connected (so queued on the socket) and its whole request written at once.
    final class Client {
        let fd: Int32

        /// A socket connected to the pool (queued on its socket until a thread accepts it).
        static func connected(to path: String) throws -> Int32 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            let ok = withUnixAddress(path) { connect(fd, $0, $1) }
            guard ok == 0 else { close(fd); throw ClientError.failed("connect", errno) }
            return fd
        }

        convenience init(path: String, params: [String: String]) throws {
            try self.init(fd: try Client.connected(to: path), params: params)
        }

        /// Parameters in the order given, names that Swift would take for one another included.
        convenience init(path: String, pairs: [(String, String)]) throws {
            try self.init(fd: try Client.connected(to: path), pairs: pairs)
        }

        /// A request on a socket already connected (the client owns it from here).
        convenience init(fd: Int32, params: [String: String]) throws {
            try self.init(fd: fd, pairs: Array(params))
        }

        init(fd: Int32, pairs params: [(String, String)]) throws {
            self.fd = fd
            // A worker that never answers fails the test instead of hanging it.
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var message = Client.record(type: 1, [0, 1, 0, 0, 0, 0, 0, 0])
            var pairs: [UInt8] = []
            for (name, value) in params {
                pairs += [UInt8(name.utf8.count), UInt8(value.utf8.count)] + Array(name.utf8) + Array(value.utf8)
            }
            message += Client.record(type: 4, pairs) + Client.record(type: 4, []) + Client.record(type: 5, [])
            let written = message.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == message.count else { throw ClientError.failed("write", errno) }
        }

        /// A connection that ends without sending a request.
        static func connectAndClose(_ path: String) throws { close(try connected(to: path)) }

        static func record(type: UInt8, _ content: [UInt8]) -> [UInt8] {
            [1, type, 0, 1, UInt8(content.count >> 8), UInt8(content.count & 0xff), 0, 0] + content
        }

        /// The STDOUT records' content the worker wrote before it closed the connection, as text.
        func response() -> String {
            var raw: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                raw += buffer[0..<n]
            }
            close(fd)
            var stdout: [UInt8] = []
            var i = 0
            while i + 8 <= raw.count {
                let length = Int(raw[i + 4]) << 8 | Int(raw[i + 5])
                let end = min(raw.count, i + 8 + length)
                if raw[i + 1] == 6 { stdout += raw[(i + 8)..<end] }
                i = end + Int(raw[i + 6])
            }
            return String(decoding: stdout, as: UTF8.self)
        }
    }

    /// A request the handler holds until `name` opens, once a thread has it.
    static func held(_ name: String, at path: String, log: Log) throws -> Client {
        let client = try Client(path: path, params: ["NAME": name, "HOLD": name])
        #expect(log.waitFor { $0.contains { $0.hasPrefix(name + "@") } })
        return client
    }

    /// Answers with the parameters it was given, `NAME=value`, sorted.
    final class ParameterNamesHandler: FastCGIHandler {
        func handle(_ request: FastCGIRequest) -> [UInt8] {
            Array("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n\(request.params.map { "\($0)=\($1)" }.sorted().joined(separator: ","))".utf8)
        }
    }

    /// `parameters`: only the named ones reach the handler; a name of the
    /// same length, a prefix, a longer one or an empty one does not, nor one
    /// that only Unicode equivalence makes equal (KELVIN SIGN for "K": as a
    /// String key it would have replaced the real parameter).
    @Test func onlyTheNamedParametersAreCopied() throws {
        let path = Self.socketPath()
        let server = FastCGIServer(address: .unix(path: path), workers: 1, maxBodyBytes: 1024, parameters: ["NAME", "KEEP_ME", "CONTENT_LENGTH"]) { _ in
            ParameterNamesHandler()
        }
        let pool = try server.start()
        defer { pool.stop() }
        let pairs = [("NAME", "a"), ("KEEP_ME", "b"), ("KEEP_MX", "c"), ("KEEP", "d"), ("KEEP_ME_TOO", "e"), ("A_NAME_LONGER_THAN_ANY_NAME_WANTED", "f"),
                     ("HTTP_HOST", "g"), ("", "h"), ("\u{212A}EEP_ME", "kelvin")]
        let filtered = try Client(path: path, pairs: pairs).response()
        #expect(filtered.hasSuffix("\r\n\r\nKEEP_ME=b,NAME=a"), "\(filtered)")
        let everything = FastCGIServer(address: .unix(path: path + "2"), workers: 1, maxBodyBytes: 1024) { _ in ParameterNamesHandler() }
        let all = try everything.start()
        defer { all.stop() }
        // Without a list, every one (libfcgi adds FCGI_ROLE).
        #expect(try Client(path: path + "2", params: ["NAME": "a", "HTTP_HOST": "g"]).response().hasSuffix("\r\n\r\nFCGI_ROLE=RESPONDER,HTTP_HOST=g,NAME=a"))
    }

    /// A request header sent twice (two parameters from nginx before 1.23) is one value, joined as RFC 9110 §5.3
    /// says (cookies with "; "), not the last one standing for both (review, session 31: of two DPoP proofs, the
    /// second was checked and the first ignored). Other parameters keep the last, as before.
    @Test func aHeaderSentTwiceIsOneJoinedValue() throws {
        let path = Self.socketPath()
        let server = FastCGIServer(address: .unix(path: path), workers: 1, maxBodyBytes: 1024,
                                   parameters: ["HTTP_DPOP", "HTTP_COOKIE", "HTTP_HOST", "NAME"]) { _ in ParameterNamesHandler() }
        let pool = try server.start()
        defer { pool.stop() }
        let pairs = [("HTTP_DPOP", "first"), ("HTTP_DPOP", "second"), ("HTTP_COOKIE", "a=1"), ("HTTP_COOKIE", "b=2"), ("HTTP_HOST", "h"),
                     ("NAME", "x"), ("NAME", "y")]
        let answer = try Client(path: path, pairs: pairs).response()
        #expect(answer.hasSuffix("\r\n\r\nHTTP_COOKIE=a=1; b=2,HTTP_DPOP=first, second,HTTP_HOST=h,NAME=y"), "\(answer)")
    }

    /// `--listen unix:PATH` removes only a socket no server accepts on (operator review, session 30: it deleted
    /// whatever was at PATH, a database included, and a second node on a running node's path took it over).
    @Test func aUnixListenerReplacesOnlyAStaleSocket() throws {
        let log = Log()
        let path = Self.socketPath()
        func server() -> FastCGIServer {
            FastCGIServer(address: .unix(path: path), workers: 1, maxBodyBytes: 1024) { index in RecordingHandler(index: index, log: log) }
        }
        // A file that is not a socket stays, and nothing listens.
        FileManager.default.createFile(atPath: path, contents: Data("not a socket".utf8))
        #expect(throws: FastCGIError.self) { try server().start() }
        #expect(FileManager.default.contents(atPath: path) == Data("not a socket".utf8))
        unlink(path)

        // A socket a running pool listens on is not taken over; the running pool goes on answering.
        let first = try server().start()
        #expect(throws: FastCGIError.self) { try server().start() }
        #expect(try Client(path: path, params: ["NAME": "first"]).response().hasSuffix("first"))

        // A path taken over after all (the socket removed by hand, another pool bound there) is not the
        // first pool's any more: its stop leaves the second's socket.
        unlink(path)
        let second = try server().start()
        first.stop()
        #expect(try Client(path: path, params: ["NAME": "second"]).response().hasSuffix("second"))
        second.stop()
        #expect(!FileManager.default.fileExists(atPath: path), "a pool's stop removes its own socket")

        // A socket left by a process that died (bound, never unlinked) is replaced.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(withUnixAddress(path) { bind(stale, $0, $1) } == 0)
        close(stale)
        let third = try server().start()
        #expect(try Client(path: path, params: ["NAME": "third"]).response().hasSuffix("third"))
        third.stop()
    }

    @Test func connectionsWaitingTogetherAreOneBatch() throws {
        let log = Log()
        let (pool, path) = try Self.start(workers: 1, maxBatch: 8, log: log)
        defer { pool.stop() }
        defer { log.openAll() }
        let first = try Self.held("P", at: path, log: log)
        // Queued while the only thread is busy: taken together when it is free.
        let waiting = try ["A", "B", "C"].map { try Client(path: path, params: ["NAME": $0]) }
        log.open("P")
        #expect(first.response().hasSuffix("P"))
        for (client, name) in zip(waiting, ["A", "B", "C"]) { #expect(client.response().hasSuffix(name)) }
        #expect(log.waitFor { $0.contains("end@0") })
        // P came alone (nothing else was waiting): no batch around it.
        #expect(Array(log.all.prefix(6)) == ["P@0", "begin@0", "A@0", "B@0", "C@0", "end@0"])
    }

    @Test func oneConnectionAtATimeWithoutBatching() throws {
        let log = Log()
        let (pool, path) = try Self.start(workers: 1, maxBatch: 1, log: log)
        defer { pool.stop() }
        defer { log.openAll() }
        let first = try Self.held("P", at: path, log: log)
        let waiting = try ["A", "B"].map { try Client(path: path, params: ["NAME": $0]) }
        log.open("P")
        #expect(first.response().hasSuffix("P"))
        for (client, name) in zip(waiting, ["A", "B"]) { #expect(client.response().hasSuffix(name)) }
        #expect(log.all == ["P@0", "A@0", "B@0"])
    }

    /// A batch's owner held by a slow request: its other connections are
    /// served by the free thread, outside any batch, while the slow one runs.
    @Test func aFreeThreadServesWhatASlowBatchKeepsWaiting() throws {
        let log = Log()
        let (pool, path) = try Self.start(workers: 2, maxBatch: 8, log: log)
        defer { pool.stop() }
        defer { log.openAll() }
        let p1 = try Self.held("P1", at: path, log: log)
        let p2 = try Self.held("P2", at: path, log: log)
        let slow = try Client(path: path, params: ["NAME": "A", "HOLD": "A"])
        let quick = try ["B", "C"].map { try Client(path: path, params: ["NAME": $0]) }
        log.open("P1")
        #expect(p1.response().hasSuffix("P1"))
        #expect(log.waitFor { $0.contains { $0.hasPrefix("A@") } })
        let owner = try #require(log.all.first { $0.hasPrefix("A@") }).split(separator: "@")[1]
        log.open("P2")
        #expect(p2.response().hasSuffix("P2"))
        // A is still held: B and C can only have been answered by the other thread.
        for (client, name) in zip(quick, ["B", "C"]) { #expect(client.response().hasSuffix(name)) }
        let entries = log.all
        #expect(!entries.contains { $0.hasPrefix("end@") })
        for name in ["B", "C"] {
            let by = try #require(entries.first { $0.hasPrefix(name + "@") }).split(separator: "@")[1]
            #expect(by != owner)
        }
        #expect(entries.contains("begin@\(owner)"))
        #expect(!entries.contains { $0.hasPrefix("begin@") && !$0.hasSuffix("@\(owner)") })
        log.open("A")
        #expect(slow.response().hasSuffix("A"))
        #expect(log.waitFor { $0.contains("end@\(owner)") })
    }

    @Test func aConnectionThatEndsEarlyDoesNotStopItsBatch() throws {
        let log = Log()
        let (pool, path) = try Self.start(workers: 1, maxBatch: 8, log: log)
        defer { pool.stop() }
        defer { log.openAll() }
        let first = try Self.held("P", at: path, log: log)
        try Client.connectAndClose(path)
        let after = try Client(path: path, params: ["NAME": "A"])
        log.open("P")
        #expect(first.response().hasSuffix("P"))
        #expect(after.response().hasSuffix("A"))
        #expect(log.waitFor { $0.contains("end@0") })
        #expect(Array(log.all.prefix(4)) == ["P@0", "begin@0", "A@0", "end@0"])
    }

    /// The hand-over's other half: a thread asleep since before a batch
    /// formed is nudged awake (it would otherwise sleep until the next
    /// connection, and the batch's members wait behind a slow request for
    /// as long as it runs), and a thread about to sleep while batched
    /// connections wait sleeps 2 ms at most, then looks again.
    @Test func aBatchLeavingConnectionsWaitingWakesASleeper() throws {
        let (pool, closePool) = try Self.poolWithoutThreads()
        defer { closePool() }
        let stop = pool.stopFD, nudge = pool.nudgeFD
        var count: UInt64 = 0
        // Nobody asleep: no nudge.
        pool.add([WaitingConnection(fd: -1, owner: 0, batch: 1, acceptedAt: monotonicNanos())])
        #expect(read(nudge, &count, 8) == -1)
        // Someone asleep: nudged.
        pool.sleeping.add(1, ordering: .sequentiallyConsistent)
        pool.add([WaitingConnection(fd: -1, owner: 0, batch: 1, acceptedAt: monotonicNanos())])
        pool.sleeping.subtract(1, ordering: .sequentiallyConsistent)
        #expect(read(nudge, &count, 8) == 8 && count == 1)
        // About to sleep with connections waiting: back within the hand-over delay, not at the next connection.
        let acceptor = try #require(Acceptor(pool: pool))
        defer { close(acceptor.epoll) }
        // A watchdog stops the pool if the sleeper never comes back: the test then fails instead of hanging.
        let done = DispatchSemaphore(value: 0), watchdogEnded = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            if done.wait(timeout: .now() + 5) == .timedOut {
                var one: UInt64 = 1
                _ = write(stop, &one, 8)
            }
            watchdogEnded.signal()
        }
        let outcome = acceptor.acceptWaiting()
        done.signal()
        watchdogEnded.wait()
        guard case .nothingWaiting = outcome else {
            Issue.record("the sleeper did not come back to look at the waiting connections")
            return
        }
    }

    /// Every sleeping thread is nudged, not one (attacker review): with two
    /// slow requests in a batch, the one woken thread took the first slow
    /// member over and the others slept until a new connection came, while
    /// the quick members waited for the whole slow request.
    @Test func aNudgeWakesEverySleepingThread() throws {
        let (pool, closePool) = try Self.poolWithoutThreads()
        defer { closePool() }
        let stop = pool.stopFD
        let outcomes = Mutex<[String]>([])
        let finished = DispatchSemaphore(value: 0)
        for _ in 0..<3 {
            Thread.detachNewThread {
                guard let acceptor = Acceptor(pool: pool) else { finished.signal(); return }
                let outcome = acceptor.acceptWaiting()
                close(acceptor.epoll)
                outcomes.withLock { $0.append("\(outcome)") }
                finished.signal()
            }
        }
        // All three asleep (no connection, nothing waiting: no time limit), then a batch leaves one waiting.
        for _ in 0..<2000 where pool.sleeping.load(ordering: .sequentiallyConsistent) < 3 { usleep(1_000) }
        #expect(pool.sleeping.load(ordering: .sequentiallyConsistent) == 3)
        pool.add([WaitingConnection(fd: -1, owner: 0, batch: 1, acceptedAt: monotonicNanos())])
        var woken = 0
        while woken < 3, finished.wait(timeout: .now() + 5) == .success { woken += 1 }
        // Those still asleep are let go by the stop eventfd, and counted as failures.
        var one: UInt64 = 1
        _ = write(stop, &one, 8)
        // Every thread has ended before the pool's descriptors close (`defer`): a thread still running then could
        // use a number the kernel has given another test's socket meanwhile (seen once under load, session 20:
        // another pool's connection vanished). The stop eventfd ends them all.
        while woken < 3, finished.wait(timeout: .now() + 120) == .success { woken += 1 }
        #expect(woken == 3)
        #expect(outcomes.withLock { $0 } == ["nothingWaiting", "nothingWaiting", "nothingWaiting"])
    }
}

internal import CFastCGI
#if canImport(Glibc)
import Glibc
#endif
import Common
import Synchronization

/// One request as libfcgi delivered it: the CGI parameters, copied out of
/// libfcgi's memory, and the body, or nil when it was larger than allowed
/// (the bytes were read and discarded, never buffered).
public struct FastCGIRequest: Sendable {
    public let params: [String: String]
    public let body: [UInt8]?
    /// Whether nginx has closed the connection (its read timeout passed; its client leaving does not close it, with
    /// the shipped `fastcgi_ignore_client_abort on`), so that nobody will read the answer. Valid while the request is
    /// being handled.
    public var peerGone: @Sendable () -> Bool = { false }
}

/// Whether the peer of a connected socket has closed it: a read that would
/// not wait finds its end (or the connection reset), not "nothing yet".
/// nginx sends nothing after the request and never half-closes a FastCGI
/// connection, so an end means it gave the request up.
func peerClosed(_ fd: Int32) -> Bool {
    var byte: UInt8 = 0
    let n = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
    if n == 0 { return true }
    if n < 0 { return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR }
    return false
}

/// Per-thread request handler. Lives on one worker thread only, so it may
/// own non-Sendable resources such as a SQLite connection.
public protocol FastCGIHandler: AnyObject {
    /// Returns the complete CGI response: `Status:` line, headers, blank line, body.
    func handle(_ request: FastCGIRequest) -> [UInt8]
    /// Bracket the requests of one batch: connections this thread accepted
    /// together, all of them before any was handled (see `FastCGIServer`).
    func beginBatch()
    func endBatch()
}

extension FastCGIHandler {
    public func beginBatch() {}
    public func endBatch() {}
}

/// Where the pool listens.
public enum ListenAddress: Sendable, Equatable, CustomStringConvertible {
    case unix(path: String)
    case tcp(host: String, port: UInt16)
    /// The socket systemd passed (fd 3, after `LISTEN_PID`/`LISTEN_FDS` checks).
    case systemd

    /// `unix:/run/latchkey.sock`, `127.0.0.1:9000`, or `systemd`.
    public init?(_ text: String) {
        if text == "systemd" {
            self = .systemd
        } else if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty, path.utf8.count < 100 else { return nil }
            self = .unix(path: path)
        } else if let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]), port > 0 {
            var host = String(text[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty else { return nil }
            self = .tcp(host: host, port: port)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case let .unix(path): return "unix:\(path)"
        case let .tcp(host, port): return "\(host):\(port)"
        case .systemd: return "systemd"
        }
    }
}

public struct FastCGIError: Error, CustomStringConvertible {
    public let description: String
}

/// A pool of worker threads that all accept from one listening socket.
///
/// Accepting: the socket is non-blocking; a thread accepts what is waiting
/// and, when nothing is, sleeps in `epoll_wait` (registered with
/// `EPOLLEXCLUSIVE`: a new connection wakes one sleeper, not all). When more
/// connections are already waiting, a thread takes up to `maxBatch` of them
/// before it reads any, and handles them one after the other between
/// `beginBatch` and `endBatch`: every one of
/// them had arrived before the first was handled, so a store that must
/// check a shared database for other nodes' commits (PostgreSQL, SPEC 9)
/// may check once for the batch (group validation, as group commit shares
/// a flush). A member kept waiting 2 ms behind its owner's current request
/// is served by the next free thread instead (a sleeping one is nudged),
/// outside any batch. libfcgi itself never accepts: the request slot is
/// given each connection, and a connection that fails is skipped.
///
/// Shutdown: TERM, INT and HUP are blocked in every thread and awaited with
/// `sigwait` on the calling thread; on a signal an eventfd wakes every
/// sleeping thread and the listening socket is shut down, in-flight
/// requests (their batches) finish, the threads are joined, and `run`
/// returns.
public struct FastCGIServer: Sendable {
    public let address: ListenAddress
    public let workers: Int
    public let maxBodyBytes: Int
    /// Connections a thread may take at once when several wait (1: one at a time).
    public let maxBatch: Int
    /// Mode of a unix socket: nginx runs as another user.
    public let socketMode: UInt32
    /// The peers a TCP listener admits (nil: any); a connection from another
    /// is closed before anything is read from it.
    public let allowFrom: IPNetworks?
    /// The CGI parameters the handlers read (nil: every one). The others
    /// (nginx passes every request header as one, and `fastcgi_params` a
    /// dozen more) are skipped by their names' bytes, never copied.
    public let parameters: Set<String>?
    public let makeHandler: @Sendable (Int) throws -> any FastCGIHandler

    public init(address: ListenAddress, workers: Int, maxBodyBytes: Int, maxBatch: Int = 1, socketMode: UInt32 = 0o660,
                allowFrom: IPNetworks? = nil, parameters: Set<String>? = nil,
                makeHandler: @escaping @Sendable (Int) throws -> any FastCGIHandler) {
        self.address = address
        self.workers = max(1, workers)
        self.maxBodyBytes = maxBodyBytes
        self.maxBatch = min(max(1, maxBatch), 64)
        self.socketMode = socketMode
        self.allowFrom = allowFrom
        self.parameters = parameters
        self.makeHandler = makeHandler
    }

    /// Blocks until TERM/INT/HUP; returns the signal that stopped the pool.
    public func run(onReady: () -> Void = {}) throws -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGHUP)
        // Before the threads start: they inherit the mask.
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let running = try start()
        onReady()
        var received: Int32 = 0
        sigwait(&set, &received)
        running.stop()
        return received
    }

    /// Opens the socket and starts the threads, with no signal handling
    /// (`run` adds it); the caller stops the pool.
    public func start() throws -> RunningPool {
        guard FCGX_Init() == 0 else { throw FastCGIError(description: "FCGX_Init failed") }
        let fd = try openListener()
        let socketIdentity: [UInt64]? = if case let .unix(path) = address { fileIdentity(path) } else { nil }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 else {
            close(fd)
            throw FastCGIError(description: "fcntl: \(errnoText())")
        }
        let stopFD = makeEventFD()
        let nudgeFD = makeEventFD()
        guard stopFD >= 0, nudgeFD >= 0 else {
            close(fd)
            if stopFD >= 0 { close(stopFD) }
            throw FastCGIError(description: "eventfd: \(errnoText())")
        }
        let pool = PoolState(listenFD: fd, stopFD: stopFD, nudgeFD: nudgeFD, maxBatch: maxBatch, maxBodyBytes: maxBodyBytes,
                             allowFrom: allowFrom, parameters: parameters.map(ParameterNames.init))
        var threads: [pthread_t] = []
        for index in 0..<workers {
            let context = WorkerContext(index: index, pool: pool, makeHandler: makeHandler)
            let arg = Unmanaged.passRetained(context).toOpaque()
            var thread = pthread_t()
            guard pthread_create(&thread, nil, workerMain, arg) == 0 else {
                Unmanaged<WorkerContext>.fromOpaque(arg).release()
                RunningPool(pool: pool, threads: threads, address: address, socketIdentity: socketIdentity).stop()
                throw FastCGIError(description: "pthread_create failed")
            }
            threads.append(thread)
        }
        return RunningPool(pool: pool, threads: threads, address: address, socketIdentity: socketIdentity)
    }

    func openListener() throws -> Int32 {
        switch address {
        case .systemd:
            let env = { (name: String) in getenv(name).map { String(cString: $0) } }
            guard let pid = env("LISTEN_PID"), Int32(pid) == getpid(), let count = env("LISTEN_FDS"), Int(count) ?? 0 >= 1 else {
                throw FastCGIError(description: "--listen systemd: no socket passed (LISTEN_PID/LISTEN_FDS)")
            }
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
            return 3
        case let .unix(path):
            try clearStaleSocket(path)
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw FastCGIError(description: "socket(): \(errnoText())") }
            let ok = withUnixAddress(path) { bind(fd, $0, $1) }
            guard ok == 0 else { close(fd); throw FastCGIError(description: "bind \(path): \(errnoText())") }
            chmod(path, mode_t(socketMode))
            guard listen(fd, 1024) == 0 else { close(fd); throw FastCGIError(description: "listen: \(errnoText())") }
            return fd
        case let .tcp(host, port):
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE
            var result: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else {
                throw FastCGIError(description: "invalid listen address \(host)")
            }
            defer { freeaddrinfo(result) }
            let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw FastCGIError(description: "socket(): \(errnoText())") }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
                close(fd)
                throw FastCGIError(description: "bind \(host):\(port): \(errnoText())")
            }
            guard listen(fd, 1024) == 0 else { close(fd); throw FastCGIError(description: "listen: \(errnoText())") }
            return fd
        }
    }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// Makes way for a listening socket at `path`: nothing is there, or a socket
/// no server accepts on any more (one a killed process left) is removed.
/// Anything else is refused and left alone: a file that is not a socket (a
/// mistyped `--listen` could name the database) and a socket a running
/// server listens on (a second node started on the first's path would take
/// its traffic, and its own stop would delete the first's socket). Two
/// servers started on one path in the same instant can still both pass the
/// probe; the second's socket is then the path's, and each removes only its
/// own at stop.
func clearStaleSocket(_ path: String) throws {
    var info = stat()
    guard lstat(path, &info) == 0 else {
        if errno == ENOENT { return }
        throw FastCGIError(description: "\(path): \(errnoText())")
    }
    guard info.st_mode & mode_t(S_IFMT) == mode_t(S_IFSOCK) else {
        throw FastCGIError(description: "refusing to listen on \(path): a file that is not a socket is there")
    }
    // Non-blocking: a server whose queue is full (EAGAIN) is running too, and must not hold up this start.
    let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
    guard probe >= 0 else { throw FastCGIError(description: "socket(): \(errnoText())") }
    let connected = withUnixAddress(path) { connect(probe, $0, $1) }
    let failure = errno
    close(probe)
    if connected == 0 || failure == EAGAIN { throw FastCGIError(description: "\(path) is in use: a running server listens on it") }
    guard failure == ECONNREFUSED else { throw FastCGIError(description: "\(path): \(String(cString: strerror(failure)))") }
    unlink(path)
}

/// The device and inode of the file at `path` (nil if there is none): a
/// pool removes its socket at stop only if the path still names it.
func fileIdentity(_ path: String) -> [UInt64]? {
    var info = stat()
    guard lstat(path, &info) == 0 else { return nil }
    return [UInt64(info.st_dev), UInt64(info.st_ino)]
}

/// `body` given the `sockaddr_un` of `path` (shorter than 100 bytes, checked by `ListenAddress`) and its size.
func withUnixAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in bytes.enumerated() { raw[i] = b }
        raw[bytes.count] = 0
    }
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// A connection a thread accepted as part of a batch and has not read yet.
struct WaitingConnection: Sendable {
    let fd: Int32
    let owner: Int
    let batch: UInt64
    let acceptedAt: UInt64
}

/// What the worker threads of one pool share.
final class PoolState: Sendable {
    let listenFD: Int32
    /// An eventfd written once at shutdown: wakes every thread sleeping in `epoll_wait`.
    let stopFD: Int32
    /// An eventfd written when a batch leaves connections waiting while
    /// threads sleep: wakes them all, and each takes over any that waits too
    /// long (one sleeper would not do: the one it takes over may be slow too).
    let nudgeFD: Int32
    let maxBatch: Int
    let maxBodyBytes: Int
    let allowFrom: IPNetworks?
    let parameters: ParameterNames?
    /// Batched connections not yet read, oldest first: their owner takes
    /// them in turn; another thread takes one that has waited `stealAfter`.
    let waiting = Mutex<[WaitingConnection]>([])
    /// How long a batched connection may wait behind its owner's requests
    /// before a free thread serves it (it then validates on its own).
    static let stealAfterNanos: UInt64 = 2_000_000
    /// Threads sleeping in `epoll_wait`.
    let sleeping = Atomic<Int>(0)

    init(listenFD: Int32, stopFD: Int32, nudgeFD: Int32, maxBatch: Int, maxBodyBytes: Int, allowFrom: IPNetworks? = nil,
         parameters: ParameterNames? = nil) {
        self.listenFD = listenFD
        self.stopFD = stopFD
        self.nudgeFD = nudgeFD
        self.maxBatch = maxBatch
        self.maxBodyBytes = maxBodyBytes
        self.allowFrom = allowFrom
        self.parameters = parameters
    }

    /// The owner's next connection of `batch`, if any is left.
    func takeOwn(owner: Int, batch: UInt64) -> Int32? {
        waiting.withLock { list in
            guard let i = list.firstIndex(where: { $0.owner == owner && $0.batch == batch }) else { return nil }
            return list.remove(at: i).fd
        }
    }

    /// Another thread's connection that has waited too long.
    func takeStale(now: UInt64) -> Int32? {
        waiting.withLock { list in
            guard let first = list.first, now &- first.acceptedAt >= PoolState.stealAfterNanos else { return nil }
            return list.removeFirst().fd
        }
    }

    /// Whether any batched connection is waiting.
    var anyWaiting: Bool { waiting.withLock { !$0.isEmpty } }

    /// Connections a batch leaves waiting. Threads asleep since before they
    /// came are nudged awake, so that they take over any that wait too long:
    /// a sleeper either counted itself before this check (and is nudged) or
    /// looks at the list after this append (and sleeps no longer than 2 ms).
    func add(_ connections: [WaitingConnection]) {
        waiting.withLock { $0.append(contentsOf: connections) }
        if sleeping.load(ordering: .sequentiallyConsistent) > 0 {
            var one: UInt64 = 1
            _ = write(nudgeFD, &one, 8)
        }
    }
}

/// A started pool: `stop` wakes every sleeping thread, shuts the socket
/// down, lets in-flight requests (and their batches) finish and joins the threads.
public struct RunningPool: Sendable {
    let pool: PoolState
    let threads: [pthread_t]
    let address: ListenAddress
    /// The unix socket's device and inode, as bound.
    let socketIdentity: [UInt64]?

    public func stop() {
        // The socket first: a connection that comes now is refused (nginx
        // tries the next node, nothing was sent), not queued and dropped.
        shutdown(pool.listenFD, Int32(SHUT_RDWR))
        var one: UInt64 = 1
        _ = write(pool.stopFD, &one, 8)
        for thread in threads { pthread_join(thread, nil) }
        close(pool.listenFD)
        close(pool.stopFD)
        close(pool.nudgeFD)
        // Only the socket this pool made: if the path was taken over since, it is another server's.
        if case let .unix(path) = address, let socketIdentity, fileIdentity(path) == socketIdentity { unlink(path) }
    }
}

/// How many connections joined a batch, how many of those another thread
/// served after they had waited, and how many came from a peer the allow
/// list does not admit (process-wide, for `/metrics`).
public enum AcceptCounters {
    static let batched = Atomic<Int>(0)
    static let stolen = Atomic<Int>(0)
    static let refused = Atomic<Int>(0)
    public static var batchedTotal: Int { batched.load(ordering: .relaxed) }
    public static var stolenTotal: Int { stolen.load(ordering: .relaxed) }
    public static var refusedTotal: Int { refused.load(ordering: .relaxed) }
}

/// A non-blocking, close-on-exec eventfd.
func makeEventFD() -> Int32 { lk_eventfd() }

/// Nanoseconds of CLOCK_MONOTONIC.
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Immutable start-up data for one worker thread.
final class WorkerContext: Sendable {
    let index: Int
    let pool: PoolState
    let makeHandler: @Sendable (Int) throws -> any FastCGIHandler

    init(index: Int, pool: PoolState, makeHandler: @escaping @Sendable (Int) throws -> any FastCGIHandler) {
        self.index = index
        self.pool = pool
        self.makeHandler = makeHandler
    }
}

/// One thread's way of taking connections from the shared socket.
struct Acceptor {
    let pool: PoolState
    let epoll: Int32

    init?(pool: PoolState) {
        self.pool = pool
        epoll = lk_epoll_for_worker(pool.listenFD, pool.stopFD, pool.nudgeFD)
        guard epoll >= 0 else { return nil }
    }

    enum Outcome { case connection(Int32), nothingWaiting, closed }

    /// A connection already waiting, without sleeping. After `stop` shut the
    /// socket down this is `.nothingWaiting` (unix) or `.closed`; the stop
    /// eventfd is what ends a thread.
    func acceptNow() -> Outcome {
        while true {
            let fd = pool.allowFrom == nil ? lk_accept(pool.listenFD) : acceptAdmitted()
            if fd >= 0 { return .connection(fd) }
            if fd == Acceptor.refused { continue }
            switch errno {
            case EINTR, ECONNABORTED, EPROTO: continue
            case EAGAIN, EWOULDBLOCK: return .nothingWaiting
            case EBADF, EINVAL, ENOTSOCK, EOPNOTSUPP: return .closed
            default:
                // Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the
                // connection stays queued; said once a second at most, tried again
                // shortly instead of ending the thread (the pool would shrink for good).
                Acceptor.reportShortage(errno)
                usleep(10_000)
                return .nothingWaiting
            }
        }
    }

    /// What `acceptAdmitted` returns for a connection it closed.
    static let refused: Int32 = -2

    /// A connection from a peer the allow list admits; one from any other is
    /// closed unread (`refused`), counted and said once a second at most.
    func acceptAdmitted() -> Int32 {
        var address = [UInt8](repeating: 0, count: 16)
        var length: Int32 = 0
        let fd = lk_accept_peer(pool.listenFD, &address, &length)
        guard fd >= 0, let allowFrom = pool.allowFrom else { return fd }
        // A unix socket's peer (no address) is the socket file's business.
        let peer = Array(address[0..<Int(length)])
        if peer.isEmpty || allowFrom.contains(peer) { return fd }
        AcceptCounters.refused.add(1, ordering: .relaxed)
        close(fd)
        Acceptor.sayAtMostOnceASecond(Acceptor.lastRefusalReport,
                                      "latchkey: refused a FastCGI connection from \(IPAddress.text(peer)): not in --allow-from \(allowFrom)\n")
        return Acceptor.refused
    }

    private static let lastShortageReport = Atomic<UInt64>(0)
    private static let lastRefusalReport = Atomic<UInt64>(0)

    static func reportShortage(_ code: Int32) {
        sayAtMostOnceASecond(lastShortageReport, "latchkey: accept: \(String(cString: strerror(code))); retrying\n")
    }

    /// Writes a line to stderr unless one was written through `last` less than a second ago.
    static func sayAtMostOnceASecond(_ last: borrowing Atomic<UInt64>, _ line: @autoclosure () -> String) {
        let now = monotonicNanos()
        let then = last.load(ordering: .relaxed)
        guard now &- then >= 1_000_000_000, last.compareExchange(expected: then, desired: now, ordering: .relaxed).exchanged else { return }
        let message = Array(line().utf8)
        _ = message.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    /// A connection, sleeping until one comes, or at most 2 ms while a
    /// batched connection waits (it may need taking over): `.nothingWaiting`
    /// when the time passed or a nudge came, `.closed` once the pool stops.
    func acceptWaiting() -> Outcome {
        let first = acceptNow()
        guard case .nothingWaiting = first else { return first }
        pool.sleeping.add(1, ordering: .sequentiallyConsistent)
        defer { pool.sleeping.subtract(1, ordering: .sequentiallyConsistent) }
        let timeout: Int32 = pool.anyWaiting ? 2 : -1
        switch lk_epoll_sleep(epoll, pool.stopFD, timeout) {
        case 0: return acceptNow()
        default: return .closed
        }
    }

    /// Up to `limit` more connections that are already waiting.
    func acceptMore(limit: Int) -> [Int32] {
        var more: [Int32] = []
        while more.count < limit, case let .connection(fd) = acceptNow() { more.append(fd) }
        return more
    }
}

/// Thread entry point: a global function, never a closure formed inside
/// `@main` (that would be main-actor isolated and trap on this thread).
private func workerMain(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let context = Unmanaged<WorkerContext>.fromOpaque(arg!).takeRetainedValue()
    let pool = context.pool
    let handler: any FastCGIHandler
    do {
        handler = try context.makeHandler(context.index)
    } catch {
        let message = Array("latchkey: worker \(context.index) failed to start: \(error)\n".utf8)
        _ = message.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        exit(1)
    }
    guard let acceptor = Acceptor(pool: pool) else {
        let message = Array("latchkey: worker \(context.index): epoll: \(errnoText())\n".utf8)
        _ = message.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        exit(1)
    }
    defer { close(acceptor.epoll) }
    // libfcgi keeps pointers into a request: it must not move, so it lives on
    // the heap. Listening socket -1: libfcgi never accepts by itself (a
    // connection accepted after a batch began must not join it); the request
    // is handed each connection.
    let request = UnsafeMutablePointer<FCGX_Request>.allocate(capacity: 1)
    defer { request.deallocate() }
    guard FCGX_InitRequest(request, -1, 0) == 0 else { return nil }
    var chunk = [UInt8](repeating: 0, count: 65536)
    var batch: UInt64 = 0
    var inBatch = false
    func respond(_ fd: Int32) {
        serve(connection: fd, slot: request, handler: handler, maxBodyBytes: pool.maxBodyBytes, parameters: pool.parameters, chunk: &chunk)
    }
    while true {
        // This thread's own batch first, in the order it was accepted.
        if inBatch, let fd = pool.takeOwn(owner: context.index, batch: batch) {
            respond(fd)
            continue
        }
        if inBatch { handler.endBatch(); inBatch = false }
        // Then a connection another thread's batch has kept waiting too long:
        // served on its own, with its own validation.
        if let fd = pool.takeStale(now: monotonicNanos()) {
            AcceptCounters.stolen.add(1, ordering: .relaxed)
            respond(fd)
            continue
        }
        // Then new connections.
        switch acceptor.acceptWaiting() {
        case .closed:
            FCGX_Free(request, 0)
            return nil
        case .nothingWaiting:
            continue
        case let .connection(fd):
            let more = pool.maxBatch > 1 ? acceptor.acceptMore(limit: pool.maxBatch - 1) : []
            if more.isEmpty {
                respond(fd)
                continue
            }
            // Every one of them arrived before any is handled: one batch.
            batch &+= 1
            AcceptCounters.batched.add(more.count + 1, ordering: .relaxed)
            let now = monotonicNanos()
            pool.add(more.map { WaitingConnection(fd: $0, owner: context.index, batch: batch, acceptedAt: now) })
            handler.beginBatch()
            inBatch = true
            respond(fd)
        }
    }
}

/// A set of CGI parameter names looked up by their bytes, as libfcgi holds
/// them: by length, then compared (a name not wanted costs no copy).
struct ParameterNames: Sendable {
    private let byLength: [[[UInt8]]]

    init(_ names: Set<String>) {
        var table = [[[UInt8]]](repeating: [], count: (names.map(\.utf8.count).max() ?? 0) + 1)
        for name in names { table[name.utf8.count].append(Array(name.utf8)) }
        byLength = table
    }

    func contains(_ name: UnsafeRawBufferPointer) -> Bool {
        guard name.count > 0, name.count < byLength.count else { return false }
        return byLength[name.count].contains { candidate in
            candidate.withUnsafeBytes { memcmp($0.baseAddress!, name.baseAddress!, name.count) == 0 }
        }
    }
}

/// Reads one request from `fd`, answers it and closes the connection.
private func serve(connection fd: Int32, slot request: UnsafeMutablePointer<FCGX_Request>, handler: any FastCGIHandler,
                   maxBodyBytes: Int, parameters: ParameterNames?, chunk: inout [UInt8]) {
    // The slot's previous connection was closed when it finished; keepConnection
    // stops FCGX_Accept_r's own finish step from closing this one before reading it.
    request.pointee.ipcFd = fd
    request.pointee.keepConnection = 1
    // Fails (and closes fd) when the connection ends before a whole request came.
    guard FCGX_Accept_r(request) >= 0 else { return }
    var params: [String: String] = [:]
    params.reserveCapacity(40)
    if var cursor = request.pointee.envp {
        while let entry = cursor.pointee {
            // NAME=value, split on the first '=' by bytes (no Character walking).
            let bytes = UnsafeRawBufferPointer(start: entry, count: strlen(entry))
            if let eq = bytes.firstIndex(of: UInt8(ascii: "=")), parameters?.contains(UnsafeRawBufferPointer(rebasing: bytes[..<eq])) ?? true {
                let name = String(decoding: bytes[..<eq], as: UTF8.self), value = String(decoding: bytes[(eq + 1)...], as: UTF8.self)
                // A header sent twice comes as two parameters from nginx before 1.23 (and joined from 1.23 on): joined
                // here too (RFC 9110 §5.3), so the last one does not silently stand for both; two DPoP proofs or two
                // Authorization headers are then one value no check accepts (review, session 31).
                if let earlier = params.updateValue(value, forKey: name), name.utf8.starts(with: "HTTP_".utf8) {
                    params[name] = earlier + (name == "HTTP_COOKIE" ? "; " : ", ") + value
                }
            }
            cursor += 1
        }
    }
    let declared = Int(params["CONTENT_LENGTH"] ?? "") ?? 0
    var body: [UInt8]? = []
    var tooLarge = declared > maxBodyBytes
    if !tooLarge { body!.reserveCapacity(declared) }
    while true {
        let n = chunk.withUnsafeMutableBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                FCGX_GetStr($0, Int32(buf.count), request.pointee.in)
            }
        }
        if n <= 0 { break }
        if !tooLarge {
            body!.append(contentsOf: chunk[0..<Int(n)])
            if body!.count > maxBodyBytes { tooLarge = true; body = nil }
        }
    }
    if tooLarge { body = nil }
    let response = handler.handle(FastCGIRequest(params: params, body: body, peerGone: { peerClosed(fd) }))
    response.withUnsafeBufferPointer { buf in
        buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) {
            _ = FCGX_PutStr($0, Int32(buf.count), request.pointee.out)
        }
    }
    // The body was drained to its end above, so nothing unread can
    // make our close send a reset: skip libfcgi's shutdown-and-wait
    // (it polls until nginx closes, holding this thread meanwhile) and
    // close at once. `detached` makes FCGX_Finish_r close without it;
    // keepConnection is nginx's (it asks for none), cleared so the
    // connection is closed here.
    request.pointee.detached = 1
    request.pointee.keepConnection = 0
    FCGX_Finish_r(request)
}

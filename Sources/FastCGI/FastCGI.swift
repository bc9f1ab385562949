internal import CFastCGI
#if canImport(Glibc)
import Glibc
#endif

/// One request as libfcgi delivered it: the CGI parameters, copied out of
/// libfcgi's memory, and the body, or nil when it was larger than allowed
/// (the bytes were read and discarded, never buffered).
public struct FastCGIRequest: Sendable {
    public let params: [String: String]
    public let body: [UInt8]?
}

/// Per-thread request handler. Lives on one worker thread only, so it may
/// own non-Sendable resources such as a SQLite connection.
public protocol FastCGIHandler: AnyObject {
    /// Returns the complete CGI response: `Status:` line, headers, blank line, body.
    func handle(_ request: FastCGIRequest) -> [UInt8]
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

/// A pool of worker threads that all accept from one listening socket
/// (concurrent `FCGX_Accept_r` needs no lock on Linux).
///
/// Shutdown: TERM, INT and HUP are blocked in every thread and awaited with
/// `sigwait` on the calling thread; on a signal the listening socket is shut
/// down, which makes every blocked accept fail, in-flight requests finish,
/// the threads are joined, and `run` returns.
public struct FastCGIServer: Sendable {
    public let address: ListenAddress
    public let workers: Int
    public let maxBodyBytes: Int
    /// Mode of a unix socket: nginx runs as another user.
    public let socketMode: UInt32
    public let makeHandler: @Sendable (Int) throws -> any FastCGIHandler

    public init(address: ListenAddress, workers: Int, maxBodyBytes: Int, socketMode: UInt32 = 0o660,
                makeHandler: @escaping @Sendable (Int) throws -> any FastCGIHandler) {
        self.address = address
        self.workers = max(1, workers)
        self.maxBodyBytes = maxBodyBytes
        self.socketMode = socketMode
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
        pthread_sigmask(SIG_BLOCK, &set, nil)

        guard FCGX_Init() == 0 else { throw FastCGIError(description: "FCGX_Init failed") }
        let fd = try openListener()
        var threads: [pthread_t] = []
        for index in 0..<workers {
            let context = WorkerContext(index: index, fd: fd, maxBodyBytes: maxBodyBytes, makeHandler: makeHandler)
            let arg = Unmanaged.passRetained(context).toOpaque()
            var thread = pthread_t()
            guard pthread_create(&thread, nil, workerMain, arg) == 0 else {
                Unmanaged<WorkerContext>.fromOpaque(arg).release()
                throw FastCGIError(description: "pthread_create failed")
            }
            threads.append(thread)
        }
        onReady()
        var received: Int32 = 0
        sigwait(&set, &received)
        shutdown(fd, Int32(SHUT_RDWR))
        for thread in threads { pthread_join(thread, nil) }
        close(fd)
        if case let .unix(path) = address { unlink(path) }
        return received
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
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw FastCGIError(description: "socket(): \(errnoText())") }
            unlink(path)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in bytes.enumerated() { raw[i] = b }
                raw[bytes.count] = 0
            }
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
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

/// Immutable start-up data for one worker thread.
final class WorkerContext: Sendable {
    let index: Int
    let fd: Int32
    let maxBodyBytes: Int
    let makeHandler: @Sendable (Int) throws -> any FastCGIHandler

    init(index: Int, fd: Int32, maxBodyBytes: Int, makeHandler: @escaping @Sendable (Int) throws -> any FastCGIHandler) {
        self.index = index
        self.fd = fd
        self.maxBodyBytes = maxBodyBytes
        self.makeHandler = makeHandler
    }
}

/// Thread entry point: a global function, never a closure formed inside
/// `@main` (that would be main-actor isolated and trap on this thread).
private func workerMain(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let context = Unmanaged<WorkerContext>.fromOpaque(arg!).takeRetainedValue()
    let handler: any FastCGIHandler
    do {
        handler = try context.makeHandler(context.index)
    } catch {
        let message = Array("latchkey: worker \(context.index) failed to start: \(error)\n".utf8)
        _ = message.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        exit(1)
    }
    // libfcgi keeps pointers into the request: it must not move, so it lives on the heap.
    let request = UnsafeMutablePointer<FCGX_Request>.allocate(capacity: 1)
    defer { request.deallocate() }
    guard FCGX_InitRequest(request, context.fd, 0) == 0 else { return nil }
    var chunk = [UInt8](repeating: 0, count: 65536)
    while FCGX_Accept_r(request) >= 0 {
        var params: [String: String] = [:]
        params.reserveCapacity(40)
        if var cursor = request.pointee.envp {
            while let entry = cursor.pointee {
                // NAME=value, split on the first '=' by bytes (no Character walking).
                let bytes = UnsafeRawBufferPointer(start: entry, count: strlen(entry))
                if let eq = bytes.firstIndex(of: UInt8(ascii: "=")) {
                    params[String(decoding: bytes[..<eq], as: UTF8.self)] = String(decoding: bytes[(eq + 1)...], as: UTF8.self)
                }
                cursor += 1
            }
        }
        let declared = Int(params["CONTENT_LENGTH"] ?? "") ?? 0
        var body: [UInt8]? = []
        var tooLarge = declared > context.maxBodyBytes
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
                if body!.count > context.maxBodyBytes { tooLarge = true; body = nil }
            }
        }
        if tooLarge { body = nil }
        let response = handler.handle(FastCGIRequest(params: params, body: body))
        response.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                _ = FCGX_PutStr($0, Int32(buf.count), request.pointee.out)
            }
        }
        // The body was drained to its end above, so nothing unread can
        // make our close send a reset: skip libfcgi's shutdown-and-wait
        // (it polls until nginx closes, holding this thread meanwhile) and
        // close at once. `detached` makes FCGX_Finish_r close without it.
        request.pointee.detached = 1
        FCGX_Finish_r(request)
    }
    FCGX_Free(request, 0)
    return nil
}

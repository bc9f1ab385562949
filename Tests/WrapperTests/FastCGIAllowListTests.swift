import Common
@testable import FastCGI
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `--allow-from`: a pool listening on TCP serves the peers its list names
/// and closes every other connection unread (FastCGI has no authentication
/// of its own). The list itself: `IPNetworksTests`.
@Suite(.serialized) struct FastCGIAllowListTests {
    /// A TCP socket from `source` (bound before it connects) to the pool on 127.0.0.1:`port`.
    static func connect(from source: String, port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        func address(_ host: String, _ port: UInt16) -> sockaddr_in {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &a.sin_addr)
            return a
        }
        var local = address(source, 0), remote = address("127.0.0.1", port)
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) } }
        let connected = withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, size) } }
        guard bound == 0, connected == 0 else { close(fd); throw FastCGIPoolTests.ClientError.failed("connect", errno) }
        return fd
    }

    /// A pool on 127.0.0.1 (a free port found by trying) that admits `allowFrom`.
    static func tcpPool(allowFrom: String, log: FastCGIPoolTests.Log) throws -> (RunningPool, UInt16) {
        for _ in 0..<50 {
            // Below Linux's ephemeral range (32768 on): no client socket of this host is ever given the port.
            let port = UInt16.random(in: 20_000...32_000)
            let server = FastCGIServer(address: .tcp(host: "127.0.0.1", port: port), workers: 1, maxBodyBytes: 1024,
                                       allowFrom: IPNetworks(allowFrom)) { index in
                FastCGIPoolTests.RecordingHandler(index: index, log: log)
            }
            if let pool = try? server.start() { return (pool, port) }
        }
        throw FastCGIPoolTests.ClientError.failed("no free port", 0)
    }

    @Test func aPeerNotOnTheListIsClosedUnreadAndCounted() throws {
        let log = FastCGIPoolTests.Log()
        // Every 127.x.y.z address is this host's loopback: two peers to tell apart.
        let (pool, port) = try Self.tcpPool(allowFrom: "127.0.0.2", log: log)
        defer { pool.stop() }
        let refusedBefore = AcceptCounters.refusedTotal
        // The stranger's connection is closed unread, and counted before it sees the close. (Twice under load a
        // stranger saw nothing and no refusal was counted: FormPosterTests' listener thread had taken the
        // connection, accepting on a descriptor number it had closed and this pool's socket had been given since.)
        let stranger = try FastCGIPoolTests.Client(fd: try Self.connect(from: "127.0.0.1", port: port), params: ["NAME": "stranger"])
        #expect(stranger.response() == "")
        #expect(AcceptCounters.refusedTotal == refusedBefore + 1)
        let nginx = try FastCGIPoolTests.Client(fd: try Self.connect(from: "127.0.0.2", port: port), params: ["NAME": "nginx"])
        #expect(nginx.response().hasSuffix("nginx"))
        // The handler never saw the stranger's request; the refusal was counted for /metrics.
        #expect(log.all == ["nginx@0"])
    }

    @Test func aNetworkAdmitsItsPeers() throws {
        let log = FastCGIPoolTests.Log()
        let (pool, port) = try Self.tcpPool(allowFrom: "127.0.0.0/30", log: log)
        defer { pool.stop() }
        for (source, served) in [("127.0.0.3", true), ("127.0.0.4", false), ("127.0.0.1", true)] {
            let client = try FastCGIPoolTests.Client(fd: try Self.connect(from: source, port: port), params: ["NAME": source])
            #expect(client.response().hasSuffix(source) == served, "\(source)")
        }
        #expect(log.all == ["127.0.0.3@0", "127.0.0.1@0"])
    }
}

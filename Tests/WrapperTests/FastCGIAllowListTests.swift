@testable import FastCGI
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `--allow-from`: what the list accepts as addresses and networks, and a
/// pool listening on TCP that serves the peers it names and closes every
/// other connection unread (FastCGI has no authentication of its own).
@Suite(.serialized) struct FastCGIAllowListTests {
    static func bytes(_ text: String) -> [UInt8] { PeerAllowList.bytes(text)! }

    @Test func addressesAndNetworks() throws {
        let list = try #require(PeerAllowList("10.0.0.2, 10.1.0.0/16 fd00::/8,192.168.7.9/24"))
        #expect(list.description == "10.0.0.2,10.1.0.0/16,fd00::/8,192.168.7.9/24")
        #expect(list.admits(Self.bytes("10.0.0.2")))
        #expect(!list.admits(Self.bytes("10.0.0.3")))
        #expect(list.admits(Self.bytes("10.1.255.7")))
        #expect(!list.admits(Self.bytes("10.2.0.1")))
        // A network written with host bits names the network (as nginx's allow does).
        #expect(list.admits(Self.bytes("192.168.7.200")))
        #expect(!list.admits(Self.bytes("192.168.8.1")))
        #expect(list.admits(Self.bytes("fd12:3456::1")))
        #expect(!list.admits(Self.bytes("fe80::1")))
        // An IPv4 peer on an IPv6 socket is matched as the IPv4 address it is; an IPv6 peer never matches IPv4 entries.
        #expect(list.admits(Self.bytes("::ffff:10.0.0.2")))
        #expect(!list.admits(Self.bytes("::ffff:10.0.0.3")))
        #expect(!list.admits(Self.bytes("::a00:2")))
        // A unix socket's peer (no address) is the socket file's business.
        #expect(list.admits([]))
    }

    @Test func prefixesAtTheEdges() throws {
        let odd = try #require(PeerAllowList("10.0.0.0/9"))
        #expect(odd.admits(Self.bytes("10.127.255.255")))
        #expect(!odd.admits(Self.bytes("10.128.0.0")))
        let everyone = try #require(PeerAllowList("0.0.0.0/0"))
        #expect(everyone.admits(Self.bytes("203.0.113.9")))
        #expect(!everyone.admits(Self.bytes("2001:db8::1")))
        let mapped = try #require(PeerAllowList("::ffff:10.0.0.0/104"))
        #expect(mapped.admits(Self.bytes("10.255.0.1")))
        #expect(!mapped.admits(Self.bytes("11.0.0.1")))
        #expect(try #require(PeerAllowList("::1/128")).admits(Self.bytes("::1")))
    }

    @Test func whatIsNotAnAddressIsRefused() {
        for text in ["", " , ", "10.0.0", "10.0.0.256", "010.0.0.1", "10.0.0.1/33", "10.0.0.1/", "10.0.0.1/+8", "10.0.0.1/-1",
                     "10.0.0.1/08x", "fd00::/129", "::ffff:10.0.0.0/95", "fe80::1%eth0", "nginx.internal", "10.0.0.1,bogus",
                     "10.0.0.1/1/2"] {
            #expect(PeerAllowList(text) == nil, "\(text)")
        }
    }

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
            let port = UInt16.random(in: 20_000...60_000)
            let server = FastCGIServer(address: .tcp(host: "127.0.0.1", port: port), workers: 1, maxBodyBytes: 1024,
                                       allowFrom: PeerAllowList(allowFrom)) { index in
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
        let stranger = try FastCGIPoolTests.Client(fd: try Self.connect(from: "127.0.0.1", port: port), params: ["NAME": "stranger"])
        #expect(stranger.response() == "")
        let nginx = try FastCGIPoolTests.Client(fd: try Self.connect(from: "127.0.0.2", port: port), params: ["NAME": "nginx"])
        #expect(nginx.response().hasSuffix("nginx"))
        // The handler never saw the stranger's request; the refusal was counted for /metrics.
        #expect(log.all == ["nginx@0"])
        #expect(AcceptCounters.refusedTotal == refusedBefore + 1)
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

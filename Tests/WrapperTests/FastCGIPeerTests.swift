@testable import FastCGI
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `peerClosed`: how a worker learns that nginx gave a request up (storage-fault review, session 33).
@Suite struct FastCGIPeerTests {
    @Test func aConnectionIsGoneOnlyOnceItsPeerClosedIt() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer { close(fds[0]) }
        // Open, nothing to read: not gone (and the check did not wait).
        #expect(!peerClosed(fds[0]))
        // Unread data: not gone either, and the check reads none of it.
        var byte: UInt8 = 7
        #expect(write(fds[1], &byte, 1) == 1)
        #expect(!peerClosed(fds[0]))
        #expect(!peerClosed(fds[0]))
        byte = 0
        #expect(read(fds[0], &byte, 1) == 1 && byte == 7)
        close(fds[1])
        #expect(peerClosed(fds[0]))
    }
}

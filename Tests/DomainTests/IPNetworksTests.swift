import Common
import Testing

/// IP addresses read from text, network lists (`--allow-from`,
/// `LATCHKEY_BACKCHANNEL_ALLOW`) and what counts as a public destination.
@Suite struct IPNetworksTests {
    static func bytes(_ text: String) -> [UInt8] { IPAddress.parse(text)! }

    @Test func addressesAreReadAsInetPtonReadsThem() {
        #expect(IPAddress.parse("10.0.0.2") == [10, 0, 0, 2])
        #expect(IPAddress.parse("255.255.255.255") == [255, 255, 255, 255])
        #expect(IPAddress.parse("::") == Array(repeating: 0, count: 16))
        #expect(IPAddress.parse("::1") == Array(repeating: 0, count: 15) + [1])
        #expect(IPAddress.parse("fe80::1:2") == [0xFE, 0x80] + Array(repeating: 0, count: 10) + [0, 1, 0, 2])
        #expect(IPAddress.parse("1:2:3:4:5:6:7::") == [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0])
        #expect(IPAddress.parse("2001:DB8:0:0:0:0:0:1") == [0x20, 0x01, 0x0D, 0xB8] + Array(repeating: 0, count: 11) + [1])
        #expect(IPAddress.parse("::ffff:10.1.2.3") == Array(repeating: 0, count: 10) + [0xFF, 0xFF, 10, 1, 2, 3])
        #expect(IPAddress.parse("1:2:3:4:5:6:1.2.3.4") == [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 1, 2, 3, 4])
        for text in ["", "10.0.0", "10.0.0.256", "010.0.0.1", "1.2.3.4.5", "10.0.0.-1", " 10.0.0.1", "::1 ", ":", ":::", ":1", "1:", "1::2::3",
                     "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "g::1", "::1.2.3", "1.2.3.4::", "::1.2.3.4:5", "fe80::1%eth0",
                     "1:2:3:4:5:6:7:8::", "localhost", "nginx.internal", "+1::"] {
            #expect(IPAddress.parse(text) == nil, "\(text)")
        }
        #expect(IPAddress.text([10, 0, 0, 2]) == "10.0.0.2")
        #expect(IPAddress.text(Self.bytes("fd00::1")) == "fd00:0:0:0:0:0:0:1")
    }

    @Test func networksAdmitTheirAddresses() throws {
        let list = try #require(IPNetworks("10.0.0.2, 10.1.0.0/16 fd00::/8,192.168.7.9/24"))
        #expect(list.description == "10.0.0.2,10.1.0.0/16,fd00::/8,192.168.7.9/24")
        #expect(list.contains(Self.bytes("10.0.0.2")))
        #expect(!list.contains(Self.bytes("10.0.0.3")))
        #expect(list.contains(Self.bytes("10.1.255.7")))
        #expect(!list.contains(Self.bytes("10.2.0.1")))
        // A network written with host bits names the network (as nginx's allow does).
        #expect(list.contains(Self.bytes("192.168.7.200")))
        #expect(!list.contains(Self.bytes("192.168.8.1")))
        #expect(list.contains(Self.bytes("fd12:3456::1")))
        #expect(!list.contains(Self.bytes("fe80::1")))
        // An IPv4 peer on an IPv6 socket is matched as the IPv4 address it is; an IPv6 peer never matches IPv4 entries.
        #expect(list.contains(Self.bytes("::ffff:10.0.0.2")))
        #expect(!list.contains(Self.bytes("::ffff:10.0.0.3")))
        #expect(!list.contains(Self.bytes("::a00:2")))
        #expect(!list.contains([]))
    }

    @Test func prefixesAtTheEdges() throws {
        let odd = try #require(IPNetworks("10.0.0.0/9"))
        #expect(odd.contains(Self.bytes("10.127.255.255")))
        #expect(!odd.contains(Self.bytes("10.128.0.0")))
        let everyone = try #require(IPNetworks("0.0.0.0/0"))
        #expect(everyone.contains(Self.bytes("203.0.113.9")))
        #expect(!everyone.contains(Self.bytes("2001:db8::1")))
        let mapped = try #require(IPNetworks("::ffff:10.0.0.0/104"))
        #expect(mapped.contains(Self.bytes("10.255.0.1")))
        #expect(!mapped.contains(Self.bytes("11.0.0.1")))
        #expect(try #require(IPNetworks("::1/128")).contains(Self.bytes("::1")))
    }

    @Test func whatIsNotANetworkIsRefused() {
        for text in ["", " , ", "10.0.0", "10.0.0.256", "010.0.0.1", "10.0.0.1/33", "10.0.0.1/", "10.0.0.1/+8", "10.0.0.1/-1",
                     "10.0.0.1/08x", "fd00::/129", "::ffff:10.0.0.0/95", "fe80::1%eth0", "nginx.internal", "10.0.0.1,bogus",
                     "10.0.0.1/1/2"] {
            #expect(IPNetworks(text) == nil, "\(text)")
        }
    }

    /// Where the server's own requests (Back-Channel Logout) may go without the operator naming the network.
    @Test func publicAddressesAreTheInternetOnly() {
        for text in ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8", "172.32.0.1", "100.128.0.1"] {
            #expect(IPAddress.isPublic(Self.bytes(text)), "\(text)")
        }
        for text in ["127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                     "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1", "::", "::1", "fe80::1", "fd00::1", "fc00::1",
                     "ff02::1", "2001:db8::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::7f00:1", "2002:7f00:1::1",
                     // IPv4-compatible and SIIT-translated forms of loopback, and blocks outside global unicast.
                     "::7f00:1", "::ffff:0:7f00:1", "5f00::1", "3fff::1", "4000::1", "100::1"] {
            #expect(!IPAddress.isPublic(Self.bytes(text)), "\(text)")
        }
    }
}

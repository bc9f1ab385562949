#if canImport(Glibc)
import Glibc
#endif

/// Which peers may open a FastCGI connection to a node listening on TCP
/// (`latchkey serve --allow-from`): FastCGI carries no authentication of
/// its own, so whoever reaches the port speaks for nginx (its `REMOTE_ADDR`,
/// its `HTTPS`, its rate limits never applied). IPv4 and IPv6 addresses and
/// networks (`10.0.0.2`, `10.0.0.0/24`, `fd00::/8`), separated by commas or
/// spaces; libfcgi's `FCGI_WEB_SERVER_ADDRS` (a comma-separated list of IPv4
/// addresses) is a valid spelling. An IPv4 peer reaching an IPv6 socket
/// (`::ffff:a.b.c.d`) is matched as the IPv4 address it is. A unix socket's
/// peer is always admitted: the socket file's mode decides who connects.
public struct PeerAllowList: Sendable, Equatable, CustomStringConvertible {
    struct Network: Sendable, Equatable {
        /// 4 bytes (IPv4) or 16 (IPv6), the bits past `prefix` cleared.
        let address: [UInt8]
        let prefix: Int

        func contains(_ peer: [UInt8]) -> Bool {
            guard peer.count == address.count else { return false }
            var bits = prefix
            for (a, b) in zip(address, peer) {
                guard bits > 0 else { return true }
                let mask: UInt8 = bits >= 8 ? 0xFF : ~(0xFF >> UInt8(bits))
                if a != b & mask { return false }
                bits -= 8
            }
            return true
        }
    }

    let networks: [Network]
    public let description: String

    /// nil when the list is empty or any entry is not an address or network.
    public init?(_ text: String) {
        var networks: [Network] = []
        for entry in text.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }) {
            guard let network = PeerAllowList.network(String(entry)) else { return nil }
            networks.append(network)
        }
        guard !networks.isEmpty else { return nil }
        self.networks = networks
        description = text.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }).joined(separator: ",")
    }

    /// Whether a peer (4 or 16 address bytes, as accepted; none for a unix socket's peer) may connect.
    public func admits(_ peer: [UInt8]) -> Bool {
        if peer.isEmpty { return true }
        let peer = PeerAllowList.unmapped(peer)
        return networks.contains { $0.contains(peer) }
    }

    static func network(_ entry: String) -> Network? {
        let parts = entry.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard var address = bytes(String(parts[0])) else { return nil }
        let width = address.count * 8
        var prefix = width
        if parts.count == 2 {
            // Digits only: Int("+8") would take a sign.
            guard !parts[1].isEmpty, parts[1].count <= 3, parts[1].utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                  let bits = Int(parts[1]), bits <= width else { return nil }
            prefix = bits
        }
        // An IPv4-mapped IPv6 entry is the IPv4 network it names (peers are matched unmapped).
        if address.count == 16, isMapped(address) {
            guard prefix >= 96 else { return nil }
            address = Array(address[12...])
            prefix -= 96
        }
        var bits = prefix
        for i in address.indices {
            let mask: UInt8 = bits >= 8 ? 0xFF : bits <= 0 ? 0 : ~(0xFF >> UInt8(bits))
            address[i] &= mask
            bits -= 8
        }
        return Network(address: address, prefix: prefix)
    }

    /// The bytes of a numeric IPv4 or IPv6 address (inet_pton's forms: no zone, no leading zeros in IPv4).
    static func bytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    static func isMapped(_ address: [UInt8]) -> Bool {
        address.count == 16 && address[0..<10].allSatisfy { $0 == 0 } && address[10] == 0xFF && address[11] == 0xFF
    }

    static func unmapped(_ peer: [UInt8]) -> [UInt8] { isMapped(peer) ? Array(peer[12...]) : peer }
}

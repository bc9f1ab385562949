/// IP addresses as bytes (4 for IPv4, 16 for IPv6), read from their
/// numeric text forms, and what kind of destination one is.
public enum IPAddress {
    /// The bytes of a numeric IPv4 (`10.0.0.2`: four decimal octets, no
    /// leading zeros) or IPv6 address (RFC 4291 §2.2, a trailing dotted IPv4
    /// part included; no zone); nil for anything else, host names included.
    public static func parse(_ text: String) -> [UInt8]? {
        let bytes = Array(text.utf8)
        if let v4 = ipv4(bytes[...]) { return v4 }
        return ipv6(bytes)
    }

    static func ipv4(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        let parts = text.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0 >= 48 && $0 <= 57 }), part.count == 1 || part.first != 48 else { return nil }
            let value = part.reduce(0) { $0 * 10 + Int($1 - 48) }
            guard value <= 255 else { return nil }
            out.append(UInt8(value))
        }
        return out
    }

    static func ipv6(_ text: [UInt8]) -> [UInt8]? {
        guard text.count >= 2, text.count <= 45 else { return nil }
        // At most one "::" (a run of zero groups); either side is groups separated by single colons.
        var left = text[...], right: ArraySlice<UInt8>? = nil
        if let i = text.indices.dropLast().first(where: { text[$0] == 58 && text[$0 + 1] == 58 }) {
            left = text[..<i]
            right = text[(i + 2)...]
        }
        func groups(_ side: ArraySlice<UInt8>, last: Bool) -> [UInt16]? {
            guard !side.isEmpty else { return [] }
            let parts = side.split(separator: 58, omittingEmptySubsequences: false)
            var words: [UInt16] = []
            for (i, part) in parts.enumerated() {
                // A dotted IPv4 part ends the address: two words.
                if last, i == parts.count - 1, part.contains(UInt8(ascii: ".")) {
                    guard let v4 = ipv4(part) else { return nil }
                    words += [UInt16(v4[0]) << 8 | UInt16(v4[1]), UInt16(v4[2]) << 8 | UInt16(v4[3])]
                    continue
                }
                guard (1...4).contains(part.count),
                      part.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 102) }),
                      let value = UInt16(String(decoding: part, as: UTF8.self), radix: 16) else { return nil }
                words.append(value)
            }
            return words
        }
        guard let head = groups(left, last: right == nil), let tail = groups(right ?? [], last: true) else { return nil }
        let given = head.count + tail.count
        guard right == nil ? given == 8 : given <= 7 else { return nil }
        let words = head + Array(repeating: 0, count: 8 - given) + tail
        return words.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it is; any other as it is.
    public static func unmapped(_ address: [UInt8]) -> [UInt8] {
        guard address.count == 16, address[0..<10].allSatisfy({ $0 == 0 }), address[10] == 0xFF, address[11] == 0xFF else { return address }
        return Array(address[12...])
    }

    /// Text for an address (IPv6 without `::` compression: for logs).
    public static func text(_ address: [UInt8]) -> String {
        if address.count == 4 { return address.map(String.init).joined(separator: ".") }
        guard address.count == 16 else { return "?" }
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(address[$0]) << 8 | UInt16(address[$0 + 1]), radix: 16) }.joined(separator: ":")
    }

    /// Addresses inside the public ranges that are still not a destination on
    /// the internet: for IPv4 this host, private and shared networks,
    /// link-local (cloud metadata services live there), documentation,
    /// benchmarking, multicast and reserved ranges; for IPv6 the
    /// special-purpose blocks inside global unicast (IETF protocol
    /// assignments with Teredo, documentation, 6to4). The IANA
    /// special-purpose registries, RFC 6890.
    public static let nonPublic: IPNetworks = IPNetworks(
        "0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16 172.16.0.0/12 192.0.0.0/24 192.0.2.0/24 192.88.99.0/24 " +
        "192.168.0.0/16 198.18.0.0/15 198.51.100.0/24 203.0.113.0/24 224.0.0.0/4 240.0.0.0/4 " +
        "2001::/23 2001:db8::/32 2002::/16 3fff::/20")!

    /// Whether an address is a destination on the public internet. What the
    /// server itself sends requests to (Back-Channel Logout) reaches nothing
    /// else unless the operator names it. IPv6 counts only inside global
    /// unicast, 2000::/3, so loopback, link-local, unique-local, multicast,
    /// IPv4-compatible (`::7f00:1`), translated (`::ffff:0:…`, NAT64's
    /// `64:ff9b::`) and anything IANA assigns later outside it are not.
    public static func isPublic(_ address: [UInt8]) -> Bool {
        let address = unmapped(address)
        guard address.count == 4 || (address.count == 16 && address[0] & 0xE0 == 0x20) else { return false }
        return !nonPublic.contains(address)
    }
}

/// A list of IP networks (`10.0.0.2`, `10.0.0.0/24`, `fd00::/8`), matched
/// against an address's bytes; an IPv4 peer seen on an IPv6 socket
/// (`::ffff:a.b.c.d`) is matched as the IPv4 address it is.
public struct IPNetworks: Sendable, Equatable, CustomStringConvertible {
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

    /// Entries separated by commas or spaces; nil when there is none or any
    /// is not an address or network (a network written with host bits names
    /// the network, as nginx's `allow` reads it).
    public init?(_ text: String) {
        let entries = text.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" })
        var networks: [Network] = []
        for entry in entries {
            guard let network = IPNetworks.network(String(entry)) else { return nil }
            networks.append(network)
        }
        guard !networks.isEmpty else { return nil }
        self.networks = networks
        description = entries.joined(separator: ",")
    }

    public func contains(_ address: [UInt8]) -> Bool {
        let address = IPAddress.unmapped(address)
        return networks.contains { $0.contains(address) }
    }

    static func network(_ entry: String) -> Network? {
        let parts = entry.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard var address = IPAddress.parse(String(parts[0])) else { return nil }
        let width = address.count * 8
        var prefix = width
        if parts.count == 2 {
            // Digits only: Int("+8") would take a sign.
            guard !parts[1].isEmpty, parts[1].count <= 3, parts[1].utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                  let bits = Int(parts[1]), bits <= width else { return nil }
            prefix = bits
        }
        // An IPv4-mapped IPv6 entry is the IPv4 network it names (addresses are matched unmapped).
        if IPAddress.unmapped(address).count == 4 && address.count == 16 {
            guard prefix >= 96 else { return nil }
            address = Array(address[12...])
            prefix -= 96
        }
        var bits = prefix
        for i in address.indices {
            address[i] &= bits >= 8 ? 0xFF : bits <= 0 ? 0 : ~(0xFF >> UInt8(bits))
            bits -= 8
        }
        return Network(address: address, prefix: prefix)
    }
}

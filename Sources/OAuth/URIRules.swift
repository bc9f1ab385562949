import Common

/// URI rules for client metadata (RFC 7591 §2, RFC 6749 §3.1.2, RFC 8252 §7.3,
/// RFC 9700 §2.1): absolute, no fragment, no user-info, https or http on a
/// loopback host only; no dot segments, controls or spaces.
public enum URIRules {
    public struct Parts: Equatable, Sendable {
        public var scheme: String
        public var host: String
        public var port: Int?
        public var pathAndQuery: String
    }

    /// Splits an absolute http(s) URI; nil for anything else.
    public static func parse(_ uri: String) -> Parts? {
        guard uri.utf8.count <= 2000, !uri.isEmpty, uri.utf8.allSatisfy(isURIByte) else { return nil }
        let scheme: String
        let rest: Substring
        if uri.hasPrefix("https://") {
            scheme = "https"
            rest = uri.dropFirst(8)
        } else if uri.hasPrefix("http://") {
            scheme = "http"
            rest = uri.dropFirst(7)
        } else {
            return nil
        }
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = String(rest[..<authorityEnd])
        let tail = String(rest[authorityEnd...])
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var host = authority
        var port: Int?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = String(authority[...close])
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let p = URIRules.port(after.dropFirst()) else { return nil }
                port = p
            }
            let inner = host.dropFirst().dropLast()
            guard !inner.isEmpty, inner.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
        } else {
            if let colon = authority.lastIndex(of: ":") {
                host = String(authority[..<colon])
                guard let p = URIRules.port(authority[authority.index(after: colon)...]) else { return nil }
                port = p
            }
            guard !host.isEmpty, host.utf8.allSatisfy(isHostByte), !host.hasPrefix("."), !host.hasSuffix("."), !host.contains("..") else {
                return nil
            }
        }
        return Parts(scheme: scheme, host: host.lowercased(), port: port, pathAndQuery: tail)
    }

    /// A port as plain digits, 1..65535: no sign, no leading zero (SPEC 4.4;
    /// `Int("+80")` and `Int("0080")` would both say 80).
    static func port<S: StringProtocol>(_ text: S) -> Int? {
        let digits = Array(text.utf8)
        guard (1...5).contains(digits.count), digits[0] != UInt8(ascii: "0"),
              digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        let value = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        return value <= 65535 ? value : nil
    }

    static func isURIByte(_ b: UInt8) -> Bool {
        b > 0x20 && b < 0x7F && b != UInt8(ascii: "\\") && b != UInt8(ascii: "\"") && b != UInt8(ascii: "<") && b != UInt8(ascii: ">")
            && b != UInt8(ascii: "{") && b != UInt8(ascii: "}") && b != UInt8(ascii: "|") && b != UInt8(ascii: "^") && b != UInt8(ascii: "`")
    }

    static func isHostByte(_ b: UInt8) -> Bool {
        if b >= 48 && b <= 57 { return true }
        if b >= 65 && b <= 90 { return true }
        if b >= 97 && b <= 122 { return true }
        return b == 45 || b == 46
    }

    /// The origin (scheme, host, port) of an absolute http(s) URI.
    public static func origin(_ uri: String) -> String? {
        parse(uri).map { "\($0.scheme)://\($0.host)" + ($0.port.map { ":\($0)" } ?? "") }
    }

    public static func isLoopback(_ host: String) -> Bool {
        host == "127.0.0.1" || host == "[::1]" || host == "localhost"
    }

    /// FAPI 2.0 §5.3.2.2 item 8: http only for loopback interface redirection, which names an IP literal
    /// (RFC 8252 §7.3), never `localhost`. True when `uri` is fine for a FAPI 2.0 client in that respect.
    public static func fapiAllowsScheme(_ uri: String) -> Bool {
        guard let parts = parse(uri), parts.scheme == "http" else { return true }
        return parts.host == "127.0.0.1" || parts.host == "[::1]"
    }

    /// Nil when `uri` is acceptable as a redirect URI, else the reason.
    public static func redirectURIProblem(_ uri: String) -> String? {
        guard let parts = parse(uri) else { return "must be an absolute https URI (http only on a loopback host), without user-info" }
        if parts.pathAndQuery.contains("#") { return "must not contain a fragment" }
        if parts.scheme == "http" && !isLoopback(parts.host) { return "http is allowed only for loopback hosts (127.0.0.1, [::1], localhost)" }
        let path = parts.pathAndQuery.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        let dotSegments: Set<String> = [".", "..", "%2e", "%2e%2e", ".%2e", "%2e."]
        if segments.contains(where: { dotSegments.contains($0.lowercased()) }) {
            return "must not contain dot segments"
        }
        if !validPercentEncoding(parts.pathAndQuery) { return "has invalid percent-encoding" }
        return nil
    }

    /// Nil when `uri` is acceptable as a homepage (client_uri), else the reason.
    public static func webURIProblem(_ uri: String) -> String? {
        guard let parts = parse(uri) else { return "must be an absolute http or https URI without user-info" }
        if !validPercentEncoding(parts.pathAndQuery) { return "has invalid percent-encoding" }
        return nil
    }

    static func validPercentEncoding(_ s: String) -> Bool {
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "%") {
                guard i + 2 < b.count, Hex.nibble(b[i + 1]) != nil, Hex.nibble(b[i + 2]) != nil else { return false }
                i += 3
            } else {
                i += 1
            }
        }
        return true
    }
}


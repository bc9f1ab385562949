import Common

/// `application/x-www-form-urlencoded` (WHATWG URL §5) and percent-encoding.
public enum FormEncoding {
    /// Parses `a=1&b=2`; nil when a percent escape or the UTF-8 is invalid.
    public static func parse(_ text: String) -> [(String, String)]? {
        parse(Array(text.utf8))
    }

    public static func parse(_ bytes: [UInt8]) -> [(String, String)]? {
        var items: [(String, String)] = []
        for part in bytes.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let kv = part.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(Array(kv[0]), plusIsSpace: true) else { return nil }
            let value = kv.count > 1 ? decode(Array(kv[1]), plusIsSpace: true) : ""
            guard let value else { return nil }
            items.append((name, value))
        }
        return items
    }

    public static func decode(_ text: String, plusIsSpace: Bool = false) -> String? {
        decode(Array(text.utf8), plusIsSpace: plusIsSpace)
    }

    static func decode(_ bytes: [UInt8], plusIsSpace: Bool) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "%") {
                guard i + 2 < bytes.count, let hi = hex(bytes[i + 1]), let lo = hex(bytes[i + 2]) else { return nil }
                out.append(hi << 4 | lo)
                i += 3
            } else if b == UInt8(ascii: "+") && plusIsSpace {
                out.append(0x20)
                i += 1
            } else {
                out.append(b)
                i += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 97...102: return c - 87
        case 65...70: return c - 55
        default: return nil
        }
    }

    /// Percent-encodes everything but RFC 3986 unreserved characters.
    public static func encode(_ text: String) -> String { PercentEncoding.encode(text) }

    public static func serialize(_ items: [(String, String)]) -> String {
        items.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }
}

/// Cookie header parsing and Set-Cookie building (RFC 6265).
public enum Cookies {
    public static func parse(_ headers: [String]) -> [String: String] {
        var jar: [String: String] = [:]
        for header in headers {
            for pair in header.split(separator: ";") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                guard kv.count == 2 else { continue }
                let name = kv[0].trimmingSpaces()
                if jar[name] == nil { jar[name] = kv[1].trimmingSpaces() }
            }
        }
        return jar
    }

    public static func make(name: String, value: String, maxAge: Int?, httpOnly: Bool, secure: Bool, sameSite: String = "Lax", path: String = "/") -> String {
        var parts = ["\(name)=\(value)", "Path=\(path)", "SameSite=\(sameSite)"]
        if let maxAge { parts.append("Max-Age=\(maxAge)") }
        if httpOnly { parts.append("HttpOnly") }
        if secure { parts.append("Secure") }
        return parts.joined(separator: "; ")
    }
}

/// HTTP Basic credentials (RFC 7617), with the id and secret
/// form-urlencoded first as RFC 6749 §2.3.1 requires of OAuth clients.
public enum BasicCredentials {
    public enum Parsed: Equatable, Sendable {
        case absent
        case malformed
        case credentials(user: String, password: String)
    }

    public static func parse(_ header: String?, formDecode: Bool) -> Parsed {
        guard let header else { return .absent }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic" else { return .absent }
        guard let raw = Base64.decode(parts[1].trimmingSpaces()), let text = String(validating: raw, as: UTF8.self),
              let colon = text.firstIndex(of: ":") else { return .malformed }
        var user = String(text[..<colon])
        var password = String(text[text.index(after: colon)...])
        if formDecode {
            guard let u = FormEncoding.decode(user, plusIsSpace: true), let p = FormEncoding.decode(password, plusIsSpace: true) else {
                return .malformed
            }
            user = u
            password = p
        }
        return .credentials(user: user, password: password)
    }
}

import Common

/// `application/x-www-form-urlencoded` (WHATWG URL §5) and percent-encoding.
public enum FormEncoding {
    /// Parses `a=1&b=2`; nil when a percent escape or the UTF-8 is invalid.
    public static func parse(_ text: String) -> [(String, String)]? {
        parse(Array(text.utf8))
    }

    public static func parse(_ bytes: [UInt8]) -> [(String, String)]? {
        var items: [(String, String)] = []
        var start = 0
        // One pass: each '&'-separated part, split at its first '='; empty parts skipped.
        while start < bytes.count {
            var end = start
            var equals = -1
            while end < bytes.count && bytes[end] != UInt8(ascii: "&") {
                if equals < 0 && bytes[end] == UInt8(ascii: "=") { equals = end }
                end += 1
            }
            if end > start {
                let nameEnd = equals < 0 ? end : equals
                guard let name = decode(bytes[start..<nameEnd], plusIsSpace: true),
                      let value = equals < 0 ? "" : decode(bytes[(equals + 1)..<end], plusIsSpace: true) else { return nil }
                items.append((name, value))
            }
            start = end + 1
        }
        return items
    }

    public static func decode(_ text: String, plusIsSpace: Bool = false) -> String? {
        decode(Array(text.utf8), plusIsSpace: plusIsSpace)
    }

    static func decode(_ bytes: [UInt8], plusIsSpace: Bool) -> String? { decode(bytes[...], plusIsSpace: plusIsSpace) }

    static func decode(_ bytes: ArraySlice<UInt8>, plusIsSpace: Bool) -> String? {
        // Nothing to decode (tokens, ids, most values): validate and copy once.
        if !bytes.contains(where: { $0 == UInt8(ascii: "%") || ($0 == UInt8(ascii: "+") && plusIsSpace) }) {
            return UTF8Text.string(bytes)
        }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let b = bytes[i]
            if b == UInt8(ascii: "%") {
                guard i + 2 < bytes.endIndex, let hi = hex(bytes[i + 1]), let lo = hex(bytes[i + 2]) else { return nil }
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
        return UTF8Text.string(out)
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
        // "Basic" SP token68 (RFC 7617), read bytewise.
        let bytes = Array(header.utf8)
        var start = 0
        while start < bytes.count && bytes[start] == 0x20 { start += 1 }
        guard bytes.count - start > 5, bytes[start + 5] == 0x20,
              zip(bytes[start..<start + 5], "basic".utf8).allSatisfy({ $0 | 0x20 == $1 }) else { return .absent }
        var from = start + 6, to = bytes.count
        while from < to && (bytes[from] == 0x20 || bytes[from] == 0x09) { from += 1 }
        while to > from && (bytes[to - 1] == 0x20 || bytes[to - 1] == 0x09) { to -= 1 }
        guard from < to else { return .absent }
        // The credentials must be UTF-8 before any percent-decoding: a broken byte that an escape after it would
        // complete ("\xC3%A9") is malformed, not "é" (independent review, session 23).
        guard let raw = Base64.decode(bytes: Array(bytes[from..<to])), UTF8Text.string(raw) != nil,
              let colon = raw.firstIndex(of: UInt8(ascii: ":")) else { return .malformed }
        if formDecode {
            guard let user = FormEncoding.decode(raw[..<colon], plusIsSpace: true), let password = FormEncoding.decode(raw[(colon + 1)...], plusIsSpace: true) else {
                return .malformed
            }
            return .credentials(user: user, password: password)
        }
        return .credentials(user: String(decoding: raw[..<colon], as: UTF8.self), password: String(decoding: raw[(colon + 1)...], as: UTF8.self))
    }
}

import Common

/// Cookie header parsing and Set-Cookie building (RFC 6265).
public enum Cookies {
    /// `name=value` pairs separated by ";" (RFC 6265 §5.4), blanks around
    /// names and values dropped, an empty name or value skipped (a cleared
    /// cookie is no cookie); read by byte (the session pages read cookies
    /// several times a request). A name sent more than once is not read at
    /// all: which copy this server set cannot be told, and one planted from
    /// a sibling domain or a longer path (cookie tossing) must not win.
    public static func parse(_ headers: [String]) -> [String: String] {
        var jar: [String: String] = [:]
        var repeated: Set<String> = []
        for header in headers {
            let bytes = header.utf8
            var start = bytes.startIndex
            while start != bytes.endIndex {
                let end = bytes[start...].firstIndex(of: UInt8(ascii: ";")) ?? bytes.endIndex
                if let equals = bytes[start..<end].firstIndex(of: UInt8(ascii: "=")) {
                    let name = Substring(bytes[start..<equals]).trimmingSpaces()
                    let value = Substring(bytes[bytes.index(after: equals)..<end]).trimmingSpaces()
                    if !name.isEmpty && !value.isEmpty {
                        if jar[name] == nil { jar[name] = value } else { repeated.insert(name) }
                    }
                }
                start = end == bytes.endIndex ? end : bytes.index(after: end)
            }
        }
        for name in repeated { jar[name] = nil }
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

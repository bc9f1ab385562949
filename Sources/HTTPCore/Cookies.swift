import Common

/// Cookie header parsing and Set-Cookie building (RFC 6265).
public enum Cookies {
    /// `name=value` pairs separated by ";" (RFC 6265 §5.4), blanks around
    /// names and values dropped, the first of a repeated name kept, an empty
    /// name or value skipped (a cleared cookie is no cookie); read by byte
    /// (the session pages read cookies several times a request).
    public static func parse(_ headers: [String]) -> [String: String] {
        var jar: [String: String] = [:]
        for header in headers {
            let bytes = header.utf8
            var start = bytes.startIndex
            while start != bytes.endIndex {
                let end = bytes[start...].firstIndex(of: UInt8(ascii: ";")) ?? bytes.endIndex
                if let equals = bytes[start..<end].firstIndex(of: UInt8(ascii: "=")) {
                    let name = trimmed(bytes[start..<equals]), value = trimmed(bytes[bytes.index(after: equals)..<end])
                    if !name.isEmpty && !value.isEmpty && jar[name] == nil { jar[name] = value }
                }
                start = end == bytes.endIndex ? end : bytes.index(after: end)
            }
        }
        return jar
    }

    static func trimmed(_ bytes: Substring.UTF8View) -> String {
        var start = bytes.startIndex, end = bytes.endIndex
        while start != end && (bytes[start] == 0x20 || bytes[start] == 0x09) { start = bytes.index(after: start) }
        while start != end {
            let last = bytes.index(before: end)
            guard bytes[last] == 0x20 || bytes[last] == 0x09 else { break }
            end = last
        }
        return String(Substring(bytes[start..<end]))
    }

    public static func make(name: String, value: String, maxAge: Int?, httpOnly: Bool, secure: Bool, sameSite: String = "Lax", path: String = "/") -> String {
        var parts = ["\(name)=\(value)", "Path=\(path)", "SameSite=\(sameSite)"]
        if let maxAge { parts.append("Max-Age=\(maxAge)") }
        if httpOnly { parts.append("HttpOnly") }
        if secure { parts.append("Secure") }
        return parts.joined(separator: "; ")
    }
}

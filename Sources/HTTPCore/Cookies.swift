import Common

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

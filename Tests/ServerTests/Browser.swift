import Common
import Cryptography
import HTTPCore
import JOSE
import OAuth
import TestSupport
import Testing

/// A browser: cookies in, cookies out.
final class Browser {
    let h: Harness
    var cookies: [String: String] = [:]

    init(_ h: Harness) { self.h = h }

    func send(_ method: String, _ path: String, query: String = "", headers: [(String, String)] = [], body: [UInt8] = [], csrf: Bool = true) -> Response {
        var all = headers
        if !cookies.isEmpty { all.append(("Cookie", cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; "))) }
        if csrf, let token = cookies["__Host-lk_csrf"] { all.append(("X-CSRF-Token", token)) }
        let r = h.call(method, path, query: query, headers: all, body: body)
        for header in r.headers[values: .setCookie] {
            let pair = header.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
            if pair.count == 2 { cookies[String(pair[0])] = pair[1].isEmpty ? nil : String(pair[1]) }
        }
        return r
    }

    func json(_ method: String, _ path: String, _ body: JSON, csrf: Bool = true) -> Response {
        send(method, path, headers: [("Content-Type", "application/json")], body: body.serialized(), csrf: csrf)
    }

    @discardableResult
    func login(_ username: String = "alice", _ password: String = "correct horse battery") -> Response {
        json("POST", "/api/v1/session", ["username": .string(username), "password": .string(password)], csrf: false)
    }

    func authorize(_ params: [(String, String)]) -> Response {
        send("GET", "/oauth2/authorize", query: FormEncoding.serialize(params))
    }
}

struct PKCE {
    let verifier = Base64.urlEncode(SecureRandom.bytes(32))
    var challenge: String { Base64.urlEncode(Digest.sha256(verifier)) }
}

/// A page's hidden form fields by name: their values as written in the HTML, or with `unescaping` as a browser reads them.
func hiddenFields(_ html: String, unescaping: Bool = false) -> [String: String] {
    var fields: [String: String] = [:]
    for part in html.components(separatedBy: "<input type=\"hidden\" name=\"").dropFirst() {
        let name = String(part.prefix { $0 != "\"" })
        guard let valueStart = part.range(of: "value=\"") else { continue }
        let value = String(part[valueStart.upperBound...].prefix { $0 != "\"" })
        fields[name] = unescaping ? unescapeHTML(value) : value
    }
    return fields
}

/// The five entities `XMLElement.escape` writes, read back.
func unescapeHTML(_ s: String) -> String {
    [("&quot;", "\""), ("&apos;", "'"), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")].reduce(s) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
}

func queryItems(_ location: String) -> [String: String] {
    guard let q = location.split(separator: "?", maxSplits: 1).dropFirst().first, let items = FormEncoding.parse(String(q)) else { return [:] }
    return Dictionary(items, uniquingKeysWith: { a, _ in a })
}

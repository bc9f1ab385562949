/// Scope rules (RFC 6749 §3.3) and the privileged management scopes (SPEC 6.0).
public enum Scopes {
    /// Native management scopes.
    public static let native = ["clients:read", "clients:write", "keys:manage", "audit:read", "tokens:introspect", "providers:manage"]
    /// Every management scope of every surface: what a primary client holds.
    public static let primary = native + [
        "manageExternalClients", "sp:oauth-client:read", "sp:oauth-client:manage",
        "gov.user.oauth.app:read", "gov.user.oauth.app:write",
    ]

    /// A caller may give these to a client only when it holds them itself.
    public static func isPrivileged(_ scope: String) -> Bool {
        primary.contains(scope) || scope.hasPrefix("clients:") || scope.hasPrefix("sp:oauth-client:") || scope.hasPrefix("gov.user.oauth.app:")
    }

    /// Splits a space-delimited scope string; nil when a token has characters
    /// outside RFC 6749's scope-token grammar (%x21 / %x23-5B / %x5D-7E) or
    /// the string has empty tokens (double or edge spaces).
    public static func parse(_ text: String) -> [String]? {
        if text.isEmpty { return [] }
        var result = UniqueStrings()
        for token in text.utf8.split(separator: 0x20, omittingEmptySubsequences: false) {
            guard !token.isEmpty, token.count <= 128,
                  token.allSatisfy({ b in b == 0x21 || (b >= 0x23 && b <= 0x5B) || (b >= 0x5D && b <= 0x7E) }) else { return nil }
            result.insert(String(decoding: token, as: UTF8.self))
        }
        return result.values
    }

    /// The names in order, each kept once (what every surface stores).
    public static func unique<S: Sequence<String>>(_ names: S) -> [String] {
        var result = UniqueStrings()
        for name in names { result.insert(name) }
        return result.values
    }

    public static func isValidToken<S: StringProtocol>(_ token: S) -> Bool {
        !token.isEmpty && token.utf8.count <= 128 && token.utf8.allSatisfy { b in b == 0x21 || (b >= 0x23 && b <= 0x5B) || (b >= 0x5D && b <= 0x7E) }
    }

    /// Space-separated (RFC 6749 §3.3), built as bytes: `joined(separator:)` costs several times more, twice a token.
    public static func join(_ scopes: [String]) -> String {
        if scopes.count == 1 { return scopes[0] }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(scopes.reduce(scopes.count) { $0 + $1.utf8.count })
        for (i, scope) in scopes.enumerated() {
            if i > 0 { bytes.append(0x20) }
            bytes.append(contentsOf: scope.utf8)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Strings in the order first inserted, each once, in time linear in how
/// many are inserted (SPEC 7.1): a short list is searched, a longer one
/// also kept in a set. Comparing each with all before it let one request
/// of 40,000 scope names hold a worker for seconds (review, session 20).
public struct UniqueStrings {
    public private(set) var values: [String] = []
    private var seen: Set<String> = []
    /// Up to this many, a search costs less than hashing.
    static let searched = 8

    public init() {}

    public mutating func insert(_ value: String) {
        if values.count < UniqueStrings.searched {
            if !values.contains(value) { values.append(value) }
            return
        }
        if seen.isEmpty { seen = Set(values) }
        if seen.insert(value).inserted { values.append(value) }
    }
}

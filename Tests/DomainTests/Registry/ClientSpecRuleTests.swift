import Common
import OAuth
import TestSupport
import Testing

/// SPEC 6.1's rules on client metadata, over values: each case changes one
/// thing in an otherwise valid specification and names the field error.
@Suite struct ClientSpecRuleTests {
    static func valid() -> ClientSpec {
        ClientSpec(name: "Photo Book", clientURI: "https://app.example", redirectURIs: ["https://app.example/cb"],
                   grantTypes: ["authorization_code", "refresh_token"], scope: ["openid"])
    }

    @Test func theValidSpecificationHasNoProblem() { #expect(Self.valid().problems().isEmpty) }

    /// A list over its limit is one problem, not one per entry (review, session 20).
    @Test func aListOverItsLimitIsOneProblem() {
        var spec = Self.valid()
        spec.redirectURIs = Array(repeating: "a", count: 10_000)
        spec.postLogoutRedirectURIs = Array(repeating: "b", count: 21)
        spec.grantTypes = Array(repeating: "password", count: 1_000)
        let problems = spec.problems()
        #expect(problems.filter { $0.field.hasPrefix("redirect_uris") }.map(\.field) == ["redirect_uris"])
        #expect(problems.filter { $0.field.hasPrefix("post_logout_redirect_uris") }.map(\.field) == ["post_logout_redirect_uris"])
        #expect(problems.filter { $0.field.hasPrefix("grant_types") }.map(\.field) == ["grant_types"])
        // Within the limit, each entry is named, and a repeat once.
        spec = Self.valid()
        spec.redirectURIs = ["a", "https://app.example/cb", "https://app.example/cb", "b"]
        #expect(spec.problems().map(\.field) == ["redirect_uris[0]", "redirect_uris[3]", "redirect_uris"])
    }

    /// Joiners and variation selectors where writing needs them, between visible characters; nowhere else.
    @Test func joinersAndSelectorsOnlyBetweenVisibleCharacters() {
        for name in ["❤️", "👨‍👩‍👧", "❤️‍🔥", "می‌خواهم", "क्‍ष", "a\u{0301}", "Photo Book"] {
            #expect(ClientSpec.isDisplaySafe(name), "\(name.unicodeScalars.map(\.value))")
        }
        for name in ["1\u{FE0F}\u{20E3}", "क्‌ष", "🏳️‍🌈", "👍🏽"] { #expect(ClientSpec.isDisplaySafe(name), "\(name.unicodeScalars.map(\.value))") }
        for name in ["\u{200D}a", "a\u{200D}", "a\u{200D}\u{200D}b", "\u{FE0F}", "a\u{200D}\u{FE0F}", "a\u{200B}b", "a\u{202E}b", "\u{200C}",
                     "emoji\u{FE0F}", "G\u{200D}oogle", "Pay\u{200C}pal", "a \u{200D} b", "App1\u{FE0F}", "❤\u{200D}a", "م\u{200C}a"] {
            #expect(!ClientSpec.isDisplaySafe(name), "\(name.unicodeScalars.map(\.value))")
        }
    }

    /// A name stored before these rules is shown without what they refuse, and as the client's id where that leaves nothing to see.
    @Test func aStoredNameThatShowsNothingIsShownAsTheId() {
        var client = Client(clientID: "photo-app", organizationID: "org-1", name: "\u{2800}\u{202E}", createdAt: 0)
        #expect(ClientSpec.displayName(client) == "photo-app")
        client.name = "Pay\u{202E}Pal"
        #expect(ClientSpec.displayName(client) == "PayPal")
        #expect(ClientSpec.displaySafe("\u{00A0}", fallback: "org-1") == "org-1")
    }

    /// A description's 1000 characters, in any script, fit its byte bound.
    @Test(arguments: ["a", "é", "名", "🙂"])
    func aDescriptionOfAThousandCharactersIsAccepted(_ character: String) {
        var spec = Self.valid()
        spec.description = String(repeating: character, count: 1000)
        #expect(spec.problems().isEmpty, "\(character): \(spec.problems())")
    }

    @Test(arguments: ["名前", "🙂", "-", "\u{00A0}é\u{2800}", "١٢٣", "a\u{0301}"])
    func aNameWithOneVisibleCharacterIsAccepted(_ name: String) {
        var spec = Self.valid()
        spec.name = name
        #expect(spec.problems().isEmpty, "\(name.unicodeScalars.map(\.value)): \(spec.problems())")
    }

    @Test(arguments: [
        ("a reserved client_id", { @Sendable (s: inout ClientSpec) in s.clientID = "usr-12345" }, "client_id"),
        ("a client_id too short", { @Sendable (s: inout ClientSpec) in s.clientID = "abc" }, "client_id"),
        ("an empty name", { @Sendable (s: inout ClientSpec) in s.name = "" }, "client_name"),
        ("a name of spaces", { @Sendable (s: inout ClientSpec) in s.name = "   " }, "client_name"),
        ("a name of U+2800 BRAILLE PATTERN BLANK", { @Sendable (s: inout ClientSpec) in s.name = "\u{2800}\u{2800}" }, "client_name"),
        ("a name of no-break and ideographic spaces", { @Sendable (s: inout ClientSpec) in s.name = "\u{00A0}\u{3000}\u{2007}" }, "client_name"),
        ("a name of combining marks alone", { @Sendable (s: inout ClientSpec) in s.name = "\u{0301}\u{20DD}" }, "client_name"),
        ("a bidirectional override in the name", { @Sendable (s: inout ClientSpec) in s.name = "evil\u{202E}txt.exe" }, "client_name"),
        ("a name over 127 bytes", { @Sendable (s: inout ClientSpec) in s.name = String(repeating: "é", count: 64) }, "client_name"),
        ("a client_uri with user-info", { @Sendable (s: inout ClientSpec) in s.clientURI = "https://user@app.example" }, "client_uri"),
        ("a repeated redirect URI", { @Sendable (s: inout ClientSpec) in s.redirectURIs = ["https://app.example/cb", "https://app.example/cb"] }, "redirect_uris"),
        ("21 redirect URIs", { @Sendable (s: inout ClientSpec) in s.redirectURIs = (0...20).map { "https://app.example/cb\($0)" } }, "redirect_uris"),
        ("the code grant without a redirect URI", { @Sendable (s: inout ClientSpec) in s.redirectURIs = [] }, "redirect_uris"),
        ("no grant type", { @Sendable (s: inout ClientSpec) in s.grantTypes = [] }, "grant_types"),
        ("an unknown grant type", { @Sendable (s: inout ClientSpec) in s.grantTypes = ["password"] }, "grant_types[0]"),
        ("refresh_token without authorization_code", { @Sendable (s: inout ClientSpec) in s.grantTypes = ["client_credentials", "refresh_token"] }, "grant_types"),
        ("a public client with client_credentials", { @Sendable (s: inout ClientSpec) in s.authMethod = "none"; s.grantTypes = ["client_credentials"] },
         "grant_types"),
        ("an unknown authentication method", { @Sendable (s: inout ClientSpec) in s.authMethod = "tls_client_auth" }, "token_endpoint_auth_method"),
        ("an access token TTL under a minute", { @Sendable (s: inout ClientSpec) in s.accessTokenTTL = 59 }, "access_token_ttl"),
        ("a refresh token TTL over a year", { @Sendable (s: inout ClientSpec) in s.refreshTokenTTL = 31_536_001 }, "refresh_token_ttl"),
        ("extra data that is not an object", { @Sendable (s: inout ClientSpec) in s.extraData = [1, 2] }, "extra_data"),
        ("a description of 1001 characters", { @Sendable (s: inout ClientSpec) in s.description = String(repeating: "a", count: 1001) }, "description"),
        // One character (a grapheme cluster) of 1 MB: "e" and 500,000 combining acute accents (attacker review, session 24).
        ("a description of one character and a megabyte", { @Sendable (s: inout ClientSpec) in
            s.description = "e" + String(repeating: "\u{0301}", count: 500_000) }, "description"),
    ] as [(String, @Sendable (inout ClientSpec) -> Void, String)])
    func aRuleIsBroken(_ name: String, _ change: @Sendable (inout ClientSpec) -> Void, _ field: String) {
        var spec = Self.valid()
        change(&spec)
        #expect(spec.problems().map(\.field).contains(field), "\(name): \(spec.problems())")
    }
}

/// RFC 6749 §3.1.2, RFC 8252 §7.3 and RFC 9700 §2.1: which redirect URIs
/// may be registered, and that matching is exact.
@Suite struct RedirectURIRuleTests {
    @Test(arguments: [
        ("https://app.example/cb", nil),
        ("https://app.example:8443/cb?x=1", nil),
        ("http://127.0.0.1:5000/cb", nil),
        ("http://[::1]/cb", nil),
        ("http://localhost/cb", nil),
        ("http://app.example/cb", "http is allowed only for loopback hosts (127.0.0.1, [::1], localhost)"),
        ("https://app.example/cb#frag", "must not contain a fragment"),
        ("https://app.example/a/../cb", "must not contain dot segments"),
        ("https://app.example/a/%2E%2E/cb", "must not contain dot segments"),
        ("https://app.example/cb?x=%zz", "has invalid percent-encoding"),
        ("https://user:pw@app.example/cb", "must be an absolute https URI (http only on a loopback host), without user-info"),
        ("/relative/cb", "must be an absolute https URI (http only on a loopback host), without user-info"),
        ("javascript:alert(1)", "must be an absolute https URI (http only on a loopback host), without user-info"),
    ] as [(String, String?)])
    func registration(_ uri: String, _ problem: String?) {
        #expect(URIRules.redirectURIProblem(uri) == problem, "\(uri)")
    }

    /// Exact string matching: no prefix, case, trailing-slash or port games.
    @Test(arguments: [
        ("https://app.example/cb", true),
        ("https://app.example/cb/", false),
        ("https://APP.example/cb", false),
        ("https://app.example/cb?x=1", false),
        ("https://app.example:443/cb", false),
        ("https://app.example/cbx", false),
        ("https://app.example/c", false),
    ] as [(String, Bool)])
    func matching(_ requested: String, _ matches: Bool) {
        #expect(AuthorizationService.redirectURIMatches(requested, registered: ["https://app.example/cb"]) == matches, "\(requested)")
    }
}

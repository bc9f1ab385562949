import Common
import Cryptography

/// The writable fields of a client, as any surface supplies them.
public struct ClientSpec: Sendable, Equatable {
    public var clientID: String?
    public var name: String
    public var description: String?
    public var clientURI: String?
    public var redirectURIs: [String]
    public var grantTypes: [String]
    public var authMethod: String
    public var scope: [String]
    public var accessTokenTTL: Int
    public var refreshTokenTTL: Int
    public var enabled: Bool
    public var extraData: JSON
    public var attributes: JSON
    /// id_token_signed_response_alg (SPEC 10.1): ES256 unless asked.
    public var idTokenAlg: String
    /// post_logout_redirect_uris (RP-Initiated Logout 1.0).
    public var postLogoutRedirectURIs: [String]
    /// backchannel_logout_uri and backchannel_logout_session_required (Back-Channel Logout 1.0 §2.2).
    public var backchannelLogoutURI: String?
    public var backchannelLogoutSessionRequired: Bool
    /// jwks: the public keys of a `private_key_jwt` client.
    public var jwks: JSON?
    /// require_pushed_authorization_requests (RFC 9126 §6).
    public var requirePushedRequests: Bool
    /// userinfo_signed_response_alg: nil for plain JSON userinfo answers.
    public var userinfoAlg: String?
    /// policy_uri and tos_uri (RFC 7591 §2).
    public var policyURI: String?
    public var tosURI: String?
    /// dpop_bound_access_tokens (RFC 9449 §5.2).
    public var dpopBoundAccessTokens: Bool
    /// fapi2_security_profile (SPEC 10.2).
    public var fapi2: Bool

    public init(clientID: String? = nil, name: String, description: String? = nil, clientURI: String? = nil, redirectURIs: [String] = [],
                grantTypes: [String]? = nil, authMethod: String = "client_secret_basic", scope: [String] = [], accessTokenTTL: Int = 900,
                refreshTokenTTL: Int = 2_592_000, enabled: Bool = true, extraData: JSON = .object([]), attributes: JSON = .object([]),
                idTokenAlg: String = "ES256", postLogoutRedirectURIs: [String] = [], backchannelLogoutURI: String? = nil,
                backchannelLogoutSessionRequired: Bool = false, jwks: JSON? = nil, requirePushedRequests: Bool = false,
                userinfoAlg: String? = nil, policyURI: String? = nil, tosURI: String? = nil,
                dpopBoundAccessTokens: Bool = false, fapi2: Bool = false) {
        self.clientID = clientID
        self.name = name
        self.description = description
        self.clientURI = clientURI
        self.redirectURIs = redirectURIs
        self.grantTypes = grantTypes ?? (redirectURIs.isEmpty ? ["client_credentials"] : ["authorization_code"])
        self.authMethod = authMethod
        self.scope = scope
        self.accessTokenTTL = accessTokenTTL
        self.refreshTokenTTL = refreshTokenTTL
        self.enabled = enabled
        self.extraData = extraData
        self.attributes = attributes
        self.idTokenAlg = idTokenAlg
        self.postLogoutRedirectURIs = postLogoutRedirectURIs
        self.backchannelLogoutURI = backchannelLogoutURI
        self.backchannelLogoutSessionRequired = backchannelLogoutSessionRequired
        self.jwks = jwks
        self.requirePushedRequests = requirePushedRequests
        self.userinfoAlg = userinfoAlg
        self.policyURI = policyURI
        self.tosURI = tosURI
        self.dpopBoundAccessTokens = dpopBoundAccessTokens
        self.fapi2 = fapi2
    }

    /// Writes the spec's settable fields onto `client` (create and update).
    func apply(to client: inout Client) {
        client.name = name
        client.description = description
        client.clientURI = clientURI
        client.redirectURIs = redirectURIs
        // Validated before (`problems()`): every value is one of the types'.
        client.grantTypes = grantTypes.compactMap(GrantType.init(known:))
        client.authMethod = ClientAuthMethod(rawValue: authMethod) ?? .clientSecretBasic
        client.scope = scope
        client.accessTokenTTL = accessTokenTTL
        client.refreshTokenTTL = refreshTokenTTL
        client.enabled = enabled
        client.extraData = extraData
        client.attributes = attributes
        client.idTokenAlg = SignatureAlgorithm(rawValue: idTokenAlg) ?? .es256
        client.postLogoutRedirectURIs = postLogoutRedirectURIs
        client.backchannelLogoutURI = backchannelLogoutURI
        client.backchannelLogoutSessionRequired = backchannelLogoutSessionRequired
        client.jwks = jwks
        client.requirePushedRequests = requirePushedRequests
        client.userinfoAlg = userinfoAlg.flatMap(SignatureAlgorithm.init(rawValue:))
        client.policyURI = policyURI
        client.tosURI = tosURI
        client.dpopBoundAccessTokens = dpopBoundAccessTokens
        client.fapi2 = fapi2
    }

    public init(_ c: Client) {
        self.init(clientID: c.clientID, name: c.name, description: c.description, clientURI: c.clientURI, redirectURIs: c.redirectURIs,
                  grantTypes: c.grantTypes.map(\.rawValue), authMethod: c.authMethod.rawValue, scope: c.scope, accessTokenTTL: c.accessTokenTTL,
                  refreshTokenTTL: c.refreshTokenTTL, enabled: c.enabled, extraData: c.extraData, attributes: c.attributes,
                  idTokenAlg: c.idTokenAlg.rawValue, postLogoutRedirectURIs: c.postLogoutRedirectURIs,
                  backchannelLogoutURI: c.backchannelLogoutURI, backchannelLogoutSessionRequired: c.backchannelLogoutSessionRequired, jwks: c.jwks,
                  requirePushedRequests: c.requirePushedRequests, userinfoAlg: c.userinfoAlg?.rawValue,
                  policyURI: c.policyURI, tosURI: c.tosURI, dpopBoundAccessTokens: c.dpopBoundAccessTokens,
                  fapi2: c.fapi2)
    }

    public static var grantTypeValues: [String] { GrantType.known.map(\.rawValue) }
    public static let authMethodValues = ClientAuthMethod.allCases.map(\.rawValue)
    /// Path words, and `anonymous`, the audit log's name for an anonymous registrant (no client may be taken for it).
    public static let reservedIDs: Set<String> = ["current", "ids", "anonymous"]
    /// Prefixes of the server's own identifiers: users (`usr-`, the subject of
    /// user tokens) and organizations (`org-`). A client id never takes them,
    /// so a client's token can never carry a user's subject (RFC 9700 §4.15).
    public static let reservedPrefixes = ["usr-", "org-"]

    /// Whether `id` starts with a reserved prefix, in any case. Clients registered with one before the prefixes were
    /// reserved were disabled by migration 7, and they stay disabled.
    public static func hasReservedPrefix(_ id: String) -> Bool {
        let lower = id.lowercased()
        return reservedPrefixes.contains(where: lower.hasPrefix)
    }

    /// A description's bound in bytes, beside its 1000 characters (four bytes each, as most characters take at most).
    public static let maxDescriptionBytes = 4000
    /// The longest access token lifetime a client may have, in seconds (a day).
    public static let maxAccessTokenTTL = 86_400

    /// Why a description (a client's, an upstream record's) is too long, or nil. Characters are grapheme clusters:
    /// one may hold any number of combining marks (a single "e" with 500,000 of them was one character of 1 MB;
    /// attacker review, session 24), so bytes bound it too, counted first.
    public static func descriptionLengthProblem(_ d: String) -> String? {
        d.utf8.count > maxDescriptionBytes || d.count > 1000 ? "must be at most 1000 characters (\(maxDescriptionBytes) bytes of UTF-8)" : nil
    }

    public static func isValidClientID(_ id: String) -> Bool {
        (5...50).contains(id.utf8.count) && id.utf8.allSatisfy { b in
            (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == 45
        } && !reservedIDs.contains(id.lowercased()) && !hasReservedPrefix(id)
    }

    /// A client's name as shown to people: without the characters
    /// `isDisplaySafe` refuses (names stored before the rule), and its id
    /// where what is left shows nothing (a blank-looking name stored before
    /// `isVisible`: independent review, session 20).
    public static func displayName(_ client: Client) -> String { displaySafe(client.name, fallback: client.clientID) }

    /// `text` without the characters `isDisplaySafe` refuses, or `fallback`
    /// where what is left would show nothing.
    public static func displaySafe(_ text: String, fallback: String) -> String {
        let safe = isDisplaySafe(text) ? text : String(String.UnicodeScalarView(text.unicodeScalars.filter { isDisplaySafe(String($0)) }))
        return isVisible(safe) ? safe : fallback
    }

    /// Whether a name shown to end users is safe to show (SPEC 7.1): no
    /// character that could make it read as something else. Refused by
    /// Unicode property, not by a list: controls (Cc), format characters (Cf:
    /// bidirectional overrides and isolates, zero-width characters, tags),
    /// line and paragraph separators (Zl, Zp), private use (Co), surrogates
    /// and unassigned code points (Cs, Cn), and every default-ignorable code
    /// point (variation selectors, Hangul fillers, combining grapheme joiner);
    /// except where writing needs them (`joinerFits`, `selectorFits`): the
    /// zero-width non-joiner and joiner in RFC 5892's ContextJ places (after a
    /// virama; the non-joiner between two letters of a joining script, as in
    /// Persian), the joiner inside an emoji sequence, and a presentation
    /// selector after an emoji (independent reviews, session 20: "❤️" and
    /// "می‌خواهم" were refused, and a first relaxation let "G\u{200D}oogle"
    /// through). None of these reorders text or stands alone.
    public static func isDisplaySafe(_ text: String) -> Bool {
        let scalars = Array(text.unicodeScalars)
        for (i, u) in scalars.enumerated() {
            let previous = i > 0 ? scalars[i - 1] : nil, next = i + 1 < scalars.count ? scalars[i + 1] : nil
            switch u.value {
            case 0x200C, 0x200D: guard joinerFits(u, after: previous, before: next) else { return false }
            case 0xFE0E, 0xFE0F: guard selectorFits(after: previous, before: next) else { return false }
            default: guard isPlain(u) else { return false }
            }
        }
        return true
    }

    /// ZWNJ or ZWJ between `previous` and `next`.
    static func joinerFits(_ joiner: Unicode.Scalar, after previous: Unicode.Scalar?, before next: Unicode.Scalar?) -> Bool {
        guard let previous, let next, isPlain(next) else { return false }
        if previous.properties.canonicalCombiningClass.rawValue == 9 { return true }  // after a virama (RFC 5892 A.1, A.2)
        if joiner.value == 0x200C { return isJoiningLetter(previous) && isJoiningLetter(next) }
        // ZWJ: inside an emoji sequence (after an emoji, its modifier or its emoji selector; before an emoji).
        return (isPictographic(previous) || previous.value == 0xFE0F) && isPictographic(next)
    }

    /// VS15 or VS16 after an emoji that has both presentations (a keycap's
    /// digit, `#` or `*` only before U+20E3).
    static func selectorFits(after previous: Unicode.Scalar?, before next: Unicode.Scalar?) -> Bool {
        guard let previous, previous.properties.isEmoji else { return false }
        return previous.value > 0x7F || next?.value == 0x20E3
    }

    /// An emoji that is a picture (not an ASCII digit, `#` or `*`).
    static func isPictographic(_ u: Unicode.Scalar) -> Bool { u.properties.isEmoji && u.value > 0x7F }

    /// A letter of a script whose letters join (Arabic, Syriac, N'Ko,
    /// Mandaic, Mongolian), where ZWNJ keeps two apart (RFC 5892 A.1).
    static func isJoiningLetter(_ u: Unicode.Scalar) -> Bool {
        guard u.properties.isAlphabetic else { return false }
        switch u.value {
        case 0x0600...0x08FF, 0xFB50...0xFDFF, 0xFE70...0xFEFF, 0x1800...0x18AF: return true
        default: return false
        }
    }

    /// Neither refused by category nor default-ignorable.
    static func isPlain(_ u: Unicode.Scalar) -> Bool {
        switch u.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .privateUse, .surrogate, .unassigned: return false
        default: return !u.properties.isDefaultIgnorableCodePoint
        }
    }

    /// Whether text shows something: at least one letter, number,
    /// punctuation mark or symbol. Whitespace (U+00A0 and U+3000 among it),
    /// combining marks with nothing to sit on, and U+2800 BRAILLE PATTERN
    /// BLANK (a symbol that draws nothing) do not count, so a name cannot
    /// look empty on a consent screen and leave only what is around it to read.
    public static func isVisible(_ text: String) -> Bool {
        text.unicodeScalars.contains { u in
            guard u.value != 0x2800 else { return false }
            switch u.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
                 .decimalNumber, .letterNumber, .otherNumber,
                 .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation, .finalPunctuation,
                 .otherPunctuation, .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
                return !u.properties.isDefaultIgnorableCodePoint
            default: return false
            }
        }
    }

    /// A list field's problems: too many entries is the one problem then
    /// (an error for each of 100,000 entries made a 50 MB answer to an
    /// 800 KB request; review, session 20); else each entry's, and repeats.
    static func listProblems(_ field: String, _ items: [String], atMost limit: Int, _ problem: (String) -> String?) -> [FieldError] {
        guard items.count <= limit else { return [FieldError(field, "at most \(limit) entries")] }
        var errors = items.enumerated().compactMap { i, item in problem(item).map { FieldError("\(field)[\(i)]", $0) } }
        if Set(items).count != items.count { errors.append(FieldError(field, "must not repeat an entry")) }
        return errors
    }

    /// Every rule of SPEC 6.1 on the fields and on their combination.
    public func problems() -> [FieldError] {
        var errors: [FieldError] = []
        if let clientID, !ClientSpec.isValidClientID(clientID) {
            errors.append(FieldError("client_id", "must be 5..50 characters of A-Z, a-z, 0-9 and '-', not starting with usr- or org-, and not current or anonymous"))
        }
        if name.utf8.isEmpty || name.utf8.count > 127 { errors.append(FieldError("client_name", "must be 1..127 bytes of UTF-8")) }
        else if !ClientSpec.isDisplaySafe(name) || !ClientSpec.isVisible(name) {
            errors.append(FieldError("client_name", "must be printable text with a visible character and without control or bidirectional-override characters"))
        }
        if let d = description {
            if let problem = ClientSpec.descriptionLengthProblem(d) { errors.append(FieldError("description", problem)) }
            if d.unicodeScalars.contains(where: { $0.value == 0 }) { errors.append(FieldError("description", "must not contain NUL")) }
        }
        if let u = clientURI, let p = URIRules.webURIProblem(u) { errors.append(FieldError("client_uri", p)) }
        for (field, uri) in [("policy_uri", policyURI), ("tos_uri", tosURI)] {
            guard let uri else { continue }
            if let p = URIRules.webURIProblem(uri) { errors.append(FieldError(field, p)) } else if uri.utf8.count > 2048 { errors.append(FieldError(field, "must be at most 2048 bytes")) }
        }
        errors += ClientSpec.listProblems("redirect_uris", redirectURIs, atMost: 20, URIRules.redirectURIProblem)
        if grantTypes.isEmpty { errors.append(FieldError("grant_types", "must name at least one grant type")) }
        errors += ClientSpec.listProblems("grant_types", grantTypes, atMost: ClientSpec.grantTypeValues.count) {
            ClientSpec.grantTypeValues.contains($0) ? nil : "must be one of \(ClientSpec.grantTypeValues.joined(separator: ", "))"
        }
        if !ClientSpec.authMethodValues.contains(authMethod) {
            errors.append(FieldError("token_endpoint_auth_method", "must be one of \(ClientSpec.authMethodValues.joined(separator: ", "))"))
        }
        if authMethod == "none" && grantTypes.contains("client_credentials") {
            errors.append(FieldError("grant_types", "a public client (token_endpoint_auth_method none) cannot use client_credentials"))
        }
        if grantTypes.contains("authorization_code") && redirectURIs.isEmpty {
            errors.append(FieldError("redirect_uris", "the authorization_code grant needs at least one redirect URI"))
        }
        if grantTypes.contains("refresh_token") && !grantTypes.contains("authorization_code") && !grantTypes.contains(GrantType.deviceCode.rawValue) {
            errors.append(FieldError("grant_types", "refresh_token needs authorization_code or \(GrantType.deviceCode.rawValue)"))
        }
        if fapi2 && grantTypes.contains(GrantType.deviceCode.rawValue) {
            errors.append(FieldError("grant_types", "a FAPI 2.0 client uses the authorization code grant, not the device authorization grant"))
        }
        if scope.count > 100 { errors.append(FieldError("scope", "at most 100 scopes")) }
        if !(60...ClientSpec.maxAccessTokenTTL).contains(accessTokenTTL) { errors.append(FieldError("access_token_ttl", "must be 60..86400 seconds")) }
        if !(0...31_536_000).contains(refreshTokenTTL) { errors.append(FieldError("refresh_token_ttl", "must be 0..31536000 seconds")) }
        errors += ClientSpec.listProblems("post_logout_redirect_uris", postLogoutRedirectURIs, atMost: 20, URIRules.redirectURIProblem)
        if let uri = backchannelLogoutURI {
            // §2.2: an absolute URI without a fragment; https, or http on a loopback host for local development.
            if let p = URIRules.redirectURIProblem(uri) { errors.append(FieldError("backchannel_logout_uri", p)) }
            if uri.utf8.count > 2048 { errors.append(FieldError("backchannel_logout_uri", "must be at most 2048 bytes")) }
        }
        if backchannelLogoutSessionRequired && backchannelLogoutURI == nil {
            errors.append(FieldError("backchannel_logout_session_required", "needs a backchannel_logout_uri"))
        }
        if fapi2 && authMethod != ClientAuthMethod.privateKeyJWT.rawValue {
            errors.append(FieldError("fapi2_security_profile", "needs token_endpoint_auth_method private_key_jwt"))
        }
        // FAPI 2.0 Security Profile §5.4: JWTs are PS256, ES256 or EdDSA; Latchkey has no PS256, so a FAPI client's
        // keys are EC P-256 or Ed25519 and its signed responses not RS256 (FAPI/OIDC review, session 30).
        if fapi2 {
            if (jwks?["keys"]?.arrayValue ?? []).contains(where: { $0["kty"]?.stringValue == "RSA" }) {
                errors.append(FieldError("jwks", "a FAPI 2.0 client's keys are EC P-256 or Ed25519 (FAPI 2.0 §5.4: no RS256)"))
            }
            for (field, alg) in [("id_token_signed_response_alg", idTokenAlg), ("userinfo_signed_response_alg", userinfoAlg)]
            where alg == SignatureAlgorithm.rs256.rawValue {
                errors.append(FieldError(field, "a FAPI 2.0 client's is ES256 or EdDSA (FAPI 2.0 §5.4: no RS256)"))
            }
            // §5.3.2.2 item 8: http only for loopback interface redirection (RFC 8252 §7.3: an IP literal, not `localhost`).
            for (i, uri) in redirectURIs.enumerated() {
                if !URIRules.fapiAllowsScheme(uri) {
                    errors.append(FieldError("redirect_uris[\(i)]", "a FAPI 2.0 client's http redirect URIs name 127.0.0.1 or [::1] (loopback interface redirection)"))
                }
            }
        }
        if let jwks {
            if let problem = ClientAssertion.jwksProblem(jwks) { errors.append(FieldError("jwks", problem)) }
        } else if authMethod == ClientAuthMethod.privateKeyJWT.rawValue {
            errors.append(FieldError("jwks", "is required for private_key_jwt"))
        }
        if let userinfoAlg, SignatureAlgorithm(rawValue: userinfoAlg) == nil {
            errors.append(FieldError("userinfo_signed_response_alg", "must be one of \(SignatureAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))"))
        }
        if SignatureAlgorithm(rawValue: idTokenAlg) == nil {
            errors.append(FieldError("id_token_signed_response_alg", "must be one of \(SignatureAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))"))
        }
        if extraData.objectValue == nil { errors.append(FieldError("extra_data", "must be a JSON object")) }
        else if extraData.serialized().count > 16 * 1024 { errors.append(FieldError("extra_data", "must serialize to at most 16 KiB")) }
        return errors
    }
}

/// One invalid field: its JSON path (`redirect_uris[0]`) and what is wrong.
public struct FieldError: Sendable, Equatable {
    public var field: String
    public var message: String

    public init(_ field: String, _ message: String) {
        self.field = field
        self.message = message
    }
}

import Common

/// The checks an authorization request goes through before a code can be
/// issued: one ordered list of small named functions (`AuthorizationChecks.order`),
/// run by every surface that issues codes (`/oauth2/authorize`, the app
/// API's `/auth/code`; PAR and the device flow next). What differs between
/// surfaces is data (`AuthorizationSurface`); each surface renders a failed
/// check its own way (an error page, an error redirect, a 400 of its shape).
public enum AuthorizationCheck: Error, Equatable, Sendable {
    // Before the client and its redirect URI are trusted (shown, never redirected).
    case clientMissing
    /// Unknown, disabled, or not one this surface serves.
    case clientUnknown
    case redirectURIMissing
    /// Not an exact match of a registered URI (RFC 9700 §2.1).
    case redirectURINotRegistered
    /// A parameter sent twice (RFC 6749 §3.1).
    case parameterRepeated
    // Reported to the client.
    case responseModeUnsupported
    case responseTypeMissing
    case responseTypeUnsupported
    /// The client does not hold the authorization_code grant.
    case grantNotAllowed
    /// `request` (OIDC Core §6.1): not supported.
    case requestObjectUnsupported
    /// `request_uri` outside PAR: not supported.
    case requestURIUnsupported
    /// No scope, or one outside RFC 6749 §3.3's grammar (or too long where the surface bounds it).
    case scopeMalformed
    /// A scope the client may not ask a user for (`isRequestable`).
    case scopeNotAllowed
    /// The surface issues only OpenID Connect codes and `openid` was not asked for.
    case openIDRequired
    /// `claims` is not OIDC Core §5.5's JSON shape (or too large).
    case claimsMalformed
    /// An essential `acr` Latchkey cannot meet (§5.5.1.1).
    case acrUnmet
    /// `code_challenge_method` other than S256 (RFC 9700 §2.1.1: no `plain`).
    case challengeMethodUnsupported
    /// A `code_challenge_method` without a `code_challenge`.
    case challengeMissing
    /// A `code_challenge` without a `code_challenge_method`.
    case challengeMethodMissing
    /// Not 43..128 characters of the RFC 7636 §4.1 alphabet.
    case challengeMalformed
    /// A public client without PKCE (RFC 9700 §2.1.1).
    case pkceRequired
    /// A nonce longer than 255 bytes.
    case nonceTooLong
    /// A nonce with a NUL, or (where the surface asks for it) bytes outside printable ASCII.
    case nonceNotPrintable
    /// Unknown prompt values, or `none` with another (OIDC Core §3.1.2.1).
    case promptInvalid
    case maxAgeInvalid
    /// A state over 2048 bytes (it is stored and echoed).
    case stateTooLong
    /// A state with a control character (RFC 6749 Appendix A.5: VSCHAR; stored as JSON, each one took six bytes).
    case stateNotPrintable
    /// `dpop_jkt` is not a JWK SHA-256 thumbprint (RFC 9449 §10).
    case dpopKeyMalformed

    /// The RFC 6749 §4.1.2.1 / OIDC Core §3.1.2.6 error code a redirect carries.
    public var errorCode: String {
        switch self {
        case .responseTypeUnsupported: return "unsupported_response_type"
        case .grantNotAllowed: return "unauthorized_client"
        case .requestObjectUnsupported: return "request_not_supported"
        case .requestURIUnsupported: return "request_uri_not_supported"
        case .scopeMalformed, .scopeNotAllowed, .openIDRequired: return "invalid_scope"
        // OpenID Connect Core Unmet Authentication Requirements 1.0.
        case .acrUnmet: return "unmet_authentication_requirements"
        default: return "invalid_request"
        }
    }
}

/// A failed check and, once the redirect URI is trusted, where its error may go.
public struct AuthorizationFailure: Error, Equatable, Sendable {
    public struct Destination: Equatable, Sendable {
        public let redirectURI: String
        public let state: String?
        public let mode: ResponseMode
    }

    public let check: AuthorizationCheck
    /// nil while the client or its redirect URI is not yet trusted: show the error, never redirect it.
    public let destination: Destination?
}

public enum AuthorizationChecks {
    /// A request on its way through the checks: what each has established so far.
    public struct Draft {
        let parameters: AuthorizationParameters
        let surface: AuthorizationSurface
        let lookup: (String) throws -> Client?
        var client: Client?
        var redirectURI: String?
        var mode = ResponseMode.query
        var scope: [String] = []
        var claims: ClaimsRequest?
        var challenge: String?
        var nonce: String?
        var prompt: [String] = []
        var maxAge: Int?
        var stateEchoed = true
        /// The state a refused request object carried, for its error (when the request has none of its own).
        var objectState: String?
        var dpopJKT: String?

        var checkedClient: Client { client! }
    }

    public typealias Check = @Sendable (inout Draft) throws -> Void

    /// The order in which a request is judged: the first failure is the answer.
    public static let order: [(name: String, check: Check)] = [
        ("client", client), ("redirectURI", redirectURI), ("singleValued", singleValued), ("responseMode", responseMode),
        ("responseType", responseType), ("requestObject", requestObject), ("scope", scope), ("claims", claims), ("pkce", pkce), ("nonce", nonce),
        ("prompt", prompt), ("maxAge", maxAge), ("state", state), ("dpopKey", dpopKey),
    ]

    /// Runs every check in `order`; `lookup` finds the client this surface
    /// serves (nil for unknown, disabled or out of reach). Store errors pass through.
    public static func run(_ parameters: AuthorizationParameters, surface: AuthorizationSurface,
                           lookup: @escaping (String) throws -> Client?) throws -> (Client, AuthorizationRequest) {
        var draft = Draft(parameters: parameters, surface: surface, lookup: lookup)
        for step in order {
            do {
                try step.check(&draft)
            } catch let check as AuthorizationCheck {
                let destination = draft.redirectURI.map {
                    AuthorizationFailure.Destination(redirectURI: $0, state: draft.stateEchoed ? parameters.state ?? draft.objectState : nil,
                                                    mode: draft.mode)
                }
                throw AuthorizationFailure(check: check, destination: destination)
            }
        }
        let client = draft.checkedClient
        var request = AuthorizationRequest(clientID: client.clientID, redirectURI: draft.redirectURI!, redirectURISent: parameters.redirectURI != nil,
                                           scope: draft.scope, state: parameters.state, nonce: draft.nonce, codeChallenge: draft.challenge,
                                           prompt: draft.prompt, maxAge: draft.maxAge, responseMode: draft.mode, claims: draft.claims)
        request.backchannel = client.backchannelLogoutURI != nil
        request.dpopJKT = draft.dpopJKT
        request.hintedSubject = parameters.hintedSubject
        request.loginHint = AuthorizationRequest.usableLoginHint(parameters.loginHint)
        return (client, request)
    }

    // MARK: The checks, in order

    static func client(_ d: inout Draft) throws {
        guard let id = d.parameters.clientID, !id.isEmpty else { throw AuthorizationCheck.clientMissing }
        guard let client = try d.lookup(id) else { throw AuthorizationCheck.clientUnknown }
        d.client = client
    }

    static func redirectURI(_ d: inout Draft) throws {
        switch d.surface.redirect {
        case .requested:
            guard let uri = d.parameters.redirectURI, !uri.isEmpty else { throw AuthorizationCheck.redirectURIMissing }
            // A FAPI 2.0 client's http://localhost, registered before the rule (§5.3.2.2 item 8), is not used.
            guard AuthorizationService.redirectURIMatches(uri, registered: d.checkedClient.redirectURIs),
                  !d.checkedClient.fapi2 || URIRules.fapiAllowsScheme(uri) else {
                throw AuthorizationCheck.redirectURINotRegistered
            }
            d.redirectURI = uri
        case .onlyRegistered:
            guard d.checkedClient.redirectURIs.count == 1 else { throw AuthorizationCheck.redirectURINotRegistered }
            d.redirectURI = d.checkedClient.redirectURIs[0]
        }
    }

    /// Reported as a page, though the redirect URI is known: which value was meant is not.
    static func singleValued(_ d: inout Draft) throws {
        if d.parameters.repeated {
            d.redirectURI = nil
            throw AuthorizationCheck.parameterRepeated
        }
    }

    static func responseMode(_ d: inout Draft) throws {
        guard let raw = d.parameters.responseMode else { return }
        // An unknown mode (fragment, jwt) is answered in the default one.
        guard let mode = ResponseMode(rawValue: raw) else { throw AuthorizationCheck.responseModeUnsupported }
        d.mode = mode
    }

    static func responseType(_ d: inout Draft) throws {
        if d.surface.responseTypeSent {
            guard let type = d.parameters.responseType else { throw AuthorizationCheck.responseTypeMissing }
            guard type == "code" else { throw AuthorizationCheck.responseTypeUnsupported }
        }
        guard d.checkedClient.grantTypes.contains(.authorizationCode) else { throw AuthorizationCheck.grantNotAllowed }
    }

    /// Request objects are refused; the refusal goes back the way the object
    /// asked (its `response_mode` and `state`, read unverified, when the
    /// request itself names none), as an RP that put them only there expects.
    static func requestObject(_ d: inout Draft) throws {
        if let object = d.parameters.requestObject {
            if let claims = unverifiedPayload(object) {
                if d.parameters.responseMode == nil, let mode = claims["response_mode"]?.stringValue.flatMap(ResponseMode.init(rawValue:)) {
                    d.mode = mode
                }
                if let state = claims["state"]?.stringValue, state.utf8.count <= 2048 { d.objectState = state }
            }
            throw AuthorizationCheck.requestObjectUnsupported
        }
        if d.parameters.requestURI != nil { throw AuthorizationCheck.requestURIUnsupported }
    }

    /// A compact JWS or unsecured JWT's payload, read without any check (only to answer its error).
    static func unverifiedPayload(_ token: String) -> JSON? {
        guard token.utf8.count <= 16_384 else { return nil }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let bytes = Base64.urlDecode(String(parts[1])), let json = try? JSON.parse(bytes), json.objectValue != nil else { return nil }
        return json
    }

    static func scope(_ d: inout Draft) throws {
        let client = d.checkedClient
        switch d.surface.scope {
        case .strict:
            guard let scope = Scopes.parse(d.parameters.scope ?? ""), !scope.isEmpty else { throw AuthorizationCheck.scopeMalformed }
            guard scope.allSatisfy({ isRequestable($0, by: client) }) else { throw AuthorizationCheck.scopeNotAllowed }
            d.scope = scope
        case .dropUnrequestable(let maxLength):
            guard let raw = d.parameters.scope, raw.utf8.count <= maxLength else { throw AuthorizationCheck.scopeMalformed }
            for token in raw.split(separator: " ").map(String.init) where isRequestable(token, by: client) && !d.scope.contains(token) {
                d.scope.append(token)
            }
        }
        if d.surface.requiresOpenID && !d.scope.contains("openid") { throw AuthorizationCheck.openIDRequired }
    }

    /// OIDC Core §5.5, for OpenID requests (ignored otherwise): the scopes of
    /// claims asked for one by one join the request when the client may ask
    /// for them (see `ClaimsRequest`).
    static func claims(_ d: inout Draft) throws {
        guard let raw = d.parameters.claims, d.scope.contains("openid") else { return }
        guard let request = ClaimsRequest(parameter: raw) else { throw AuthorizationCheck.claimsMalformed }
        guard request.acrSatisfiable else { throw AuthorizationCheck.acrUnmet }
        let client = d.checkedClient
        for scope in request.scopes where isRequestable(scope, by: client) && !d.scope.contains(scope) { d.scope.append(scope) }
        d.claims = request
    }

    static func pkce(_ d: inout Draft) throws {
        d.challenge = try pkce(challenge: d.parameters.codeChallenge, method: d.parameters.codeChallengeMethod, client: d.checkedClient)
    }

    static func nonce(_ d: inout Draft) throws {
        d.nonce = try nonce(d.parameters.nonce, printable: d.surface.printableNonce)
    }

    static func prompt(_ d: inout Draft) throws {
        let prompt = (d.parameters.prompt ?? "").split(separator: " ").map(String.init)
        guard prompt.allSatisfy(["none", "login", "consent", "select_account"].contains), !(prompt.contains("none") && prompt.count > 1) else {
            throw AuthorizationCheck.promptInvalid
        }
        d.prompt = prompt
    }

    static func maxAge(_ d: inout Draft) throws {
        guard let raw = d.parameters.maxAge else { return }
        // Plain digits only (OIDC Core: a number of seconds); Int() would also take "+5".
        guard !raw.isEmpty, raw.utf8.count <= 10, raw.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = Int(raw) else {
            throw AuthorizationCheck.maxAgeInvalid
        }
        d.maxAge = value
    }

    static func state(_ d: inout Draft) throws {
        guard let state = d.parameters.state else { return }
        if state.utf8.count > 2048 {
            d.stateEchoed = false
            throw AuthorizationCheck.stateTooLong
        }
        // Text beyond ASCII is let through (RPs put JSON in state); control characters are no state's (review, session 25).
        if state.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
            d.stateEchoed = false
            throw AuthorizationCheck.stateNotPrintable
        }
    }

    /// RFC 9449 §10: `dpop_jkt` binds the code to a DPoP key: the token
    /// request must then carry a proof of that key. A SHA-256 thumbprint is
    /// 43 base64url characters.
    static func dpopKey(_ d: inout Draft) throws {
        guard let jkt = d.parameters.dpopJKT else { return }
        guard jkt.utf8.count == 43, jkt.utf8.allSatisfy(Base64.isURLSafeByte) else { throw AuthorizationCheck.dpopKeyMalformed }
        d.dpopJKT = jkt
    }

    // MARK: Rules the checks share with other endpoints

    /// RFC 7636 §4.3 with S256 only; a public client must send a challenge.
    /// Returns the challenge (nil for a confidential client without PKCE).
    public static func pkce(challenge: String?, method: String?, client: Client) throws(AuthorizationCheck) -> String? {
        if let method, method != "S256" { throw .challengeMethodUnsupported }
        if challenge == nil && method != nil { throw .challengeMissing }
        guard let challenge else {
            if client.mustUsePKCE { throw .pkceRequired }
            return nil
        }
        guard method != nil else { throw .challengeMethodMissing }
        guard AuthorizationService.isValidCodeChallenge(challenge) else { throw .challengeMalformed }
        return challenge
    }

    /// OIDC Core §3.1.2.1's nonce, bounded (it is stored and echoed in the ID token).
    public static func nonce(_ nonce: String?, printable: Bool = false) throws(AuthorizationCheck) -> String? {
        guard let nonce else { return nil }
        if nonce.utf8.count > 255 { throw .nonceTooLong }
        if printable && !nonce.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { throw .nonceNotPrintable }
        // A NUL never (no store keeps one): it was refused only when the code was stored, a 400 instead of the redirect.
        if nonce.utf8.contains(0) { throw .nonceNotPrintable }
        return nonce
    }

    /// Whether a client may ask a user for `scope`: registered for it, and
    /// not a privileged (management) scope, which no user grants (SPEC 6.3).
    public static func isRequestable(_ scope: String, by client: Client) -> Bool {
        client.scope.contains(scope) && !Scopes.isPrivileged(scope)
    }
}

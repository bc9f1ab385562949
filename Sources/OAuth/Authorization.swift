import Common
import Cryptography

/// What `/oauth2/authorize` does with a request (RFC 6749 §4.1.2.1): errors
/// before the client and redirect URI are trusted are shown, never
/// redirected; later ones go back to the client.
public enum AuthorizeDecision: Equatable, Sendable {
    case errorPage(String)
    /// An error for a client not trusted with an automatic redirect (one
    /// registered anonymously): a page that says what went wrong, from which
    /// the user may go back to the application with the error response.
    case errorNotice(String, AuthorizationResponse)
    /// Back to the client, in the request's response mode.
    case respond(AuthorizationResponse)
    /// The sign-in page, with the request's usable `login_hint` to prefill.
    case login(requestID: String, loginHint: String?)
    case consent(requestID: String)
}

/// The authorization endpoint's rules and the consent decisions behind the
/// login and consent pages (SPEC 4.4, 5.1).
/// What a grant does to the consent a user asked to be remembered.
public enum RememberedConsent: Sendable {
    /// What the user approved now is what later requests need not ask again ("remember" on the consent screen).
    case replace
    /// Nothing is remembered ("remember" unticked).
    case forget
    /// The remembered consent stays as it was: a request it covered, answered
    /// without asking (one for fewer scopes forgets none of the others), or a
    /// device's approval, which is for that device only.
    case keep
    /// As `keep`, for a request answered without asking because the
    /// remembered consent covered it: it must still cover the request when
    /// the grant is written. A disconnect (or a narrowed consent) committed
    /// since it was read took it away, and the user is asked instead
    /// (attacker review, session 24: a silent sign-in racing a disconnect
    /// brought the connection back).
    case covered
}

/// Thrown inside a grant's write when a `covered` request is no longer covered.
public struct RememberedConsentWithdrawn: Error, Equatable {
    public init() {}
}

public struct AuthorizationService {
    public static let requestLifetimeMillis: Int64 = 10 * 60_000
    public static let codeLifetimeMillis: Int64 = 60_000

    let env: Environment
    let store: Store

    public init(env: Environment, store: Store) {
        self.env = env
        self.store = store
    }

    static func hash(_ value: String) -> String { Base64.urlEncode(Digest.sha256(value)) }

    /// The error `/oauth2/authorize` shows or redirects with for a failed check.
    public static func describe(_ check: AuthorizationCheck) -> String {
        switch check {
        case .clientMissing: return "The request has no client_id."
        case .clientUnknown: return "The client is unknown or disabled."
        case .redirectURIMissing: return "The request has no redirect_uri."
        case .redirectURINotRegistered: return "The redirect_uri is not registered for this client."
        case .parameterRepeated: return "A parameter was sent more than once."
        case .responseModeUnsupported: return "response_mode must be query or form_post."
        case .responseTypeMissing, .responseTypeUnsupported: return "response_type must be code."
        case .grantNotAllowed: return "The client may not use the authorization code grant."
        case .requestObjectUnsupported: return "Request objects are not supported."
        case .requestURIUnsupported: return "request_uri must be one the pushed authorization request endpoint issued."
        case .scopeMalformed: return "scope is missing or malformed."
        case .scopeNotAllowed: return "The client may not request this scope."
        case .openIDRequired: return "scope must include openid."
        case .claimsMalformed: return "claims must be a JSON object as OpenID Connect Core 5.5 describes (at most 4096 bytes, 32 claims)."
        case .acrUnmet: return "The essential acr asked for cannot be met: Latchkey signs users in with a password (acr 1)."
        case .challengeMethodUnsupported, .challengeMethodMissing: return "code_challenge_method must be S256."
        case .challengeMissing: return "code_challenge is missing."
        case .challengeMalformed: return "code_challenge is malformed."
        case .pkceRequired: return "This client must use PKCE (S256): it is public or held to FAPI 2.0."
        case .nonceTooLong: return "nonce is too long."
        case .nonceNotPrintable: return "nonce holds a character it may not (a NUL)."
        case .promptInvalid: return "prompt is invalid."
        case .maxAgeInvalid: return "max_age is invalid."
        case .stateTooLong: return "state is too long."
        case .stateNotPrintable: return "state holds a control character (RFC 6749 Appendix A.5)."
        case .dpopKeyMalformed: return "dpop_jkt must be a JWK SHA-256 thumbprint (RFC 9449 §10)."
        }
    }

    // MARK: Redirects

    /// `uri` with parameters added to its query (RFC 6749 §4.1.2).
    public static func redirect(_ uri: String, _ params: [(String, String?)]) -> String {
        let query = params.compactMap { k, v in v.map { "\(PercentEncoding.encode(k))=\(PercentEncoding.encode($0))" } }
            .joined(separator: "&")
        return uri + (uri.contains("?") ? "&" : "?") + query
    }

    func errorResponse(_ uri: String, _ error: String, _ description: String, state: String?, mode: ResponseMode) -> AuthorizationResponse {
        AuthorizationResponse(redirectURI: uri, parameters: [("error", error), ("error_description", description), ("state", state), ("iss", env.issuer)],
                              mode: mode)
    }

    /// Exact redirect URI matching (RFC 9700 §2.1), with RFC 8252 §7.3's
    /// exception: a registered loopback IP URI matches any port.
    public static func redirectURIMatches(_ requested: String, registered: [String]) -> Bool {
        if registered.contains(requested) { return true }
        guard let r = URIRules.parse(requested), r.scheme == "http", r.host == "127.0.0.1" || r.host == "[::1]" else { return false }
        return registered.contains { candidate in
            guard let c = URIRules.parse(candidate), c.scheme == "http", c.host == r.host else { return false }
            return c.pathAndQuery == r.pathAndQuery && requested.hasPrefix("http://\(r.host)")
                && candidate.hasPrefix("http://\(c.host)")
        }
    }

    public static func isValidCodeChallenge(_ s: String) -> Bool {
        (43...128).contains(s.utf8.count) && s.utf8.allSatisfy { b in
            (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == 45 || b == 46 || b == 95 || b == 126
        }
    }

    // MARK: The authorization endpoint

    /// Validates the parameters in order, stores the request under an
    /// unguessable id, and decides where the browser goes next.
    ///
    /// `browser` is the value of the cookie that binds the request to the
    /// browser that started it (SPEC 7.1): only its hash is stored, and only
    /// a request presenting the same cookie may read, continue or answer it.
    public func authorize(_ parameters: AuthorizationParameters, sessionToken: String?, browser: String) throws -> AuthorizeDecision {
        // A pushed request's URI (RFC 9126 §4); any other request_uri is refused by the checks (request_uri_not_supported).
        if let requestURI = parameters.requestURI, requestURI.hasPrefix(AuthorizationService.requestURIPrefix) {
            return try authorizePushed(requestURI, clientID: parameters.clientID, sessionToken: sessionToken, browser: browser)
        }
        let client: Client, request: AuthorizationRequest
        do {
            (client, request) = try AuthorizationChecks.run(parameters, surface: .authorizationEndpoint) { id in
                try store.read { try store.client(id) }.flatMap { $0.enabled ? $0 : nil }
            }
        } catch let failure as AuthorizationFailure {
            let description = AuthorizationService.describe(failure.check)
            // Until the client and its redirect URI are trusted, errors are a page (RFC 6749 §4.1.2.1).
            guard let to = failure.destination else { return .errorPage(description) }
            return answerError(try parameters.clientID.flatMap { id in try store.read { try store.client(id) } },
                               errorResponse(to.redirectURI, failure.check.errorCode, description, state: to.state, mode: to.mode), description)
        }
        if client.mustPushRequests {
            let description = "This client must push its authorization requests (RFC 9126)."
            return answerError(client, errorResponse(request.redirectURI, "invalid_request", description, state: request.state,
                                                     mode: request.responseMode), description)
        }
        return try start(request, sessionToken: sessionToken, browser: browser)
    }

    /// An error for the client's redirect URI, sent there at once, except for
    /// a client registered anonymously (RFC 9700 §4.11.2): anyone may register
    /// one with a redirect URI of their choosing and send a link with a bad
    /// parameter, or `prompt=none`, to have this server's name send a visitor
    /// there at once, signed in or not. Its error is a page from which the
    /// user may go back to it (the RFC's "inform the user and rely on the user
    /// to make the correct decision"; attacker reviews, sessions 24 and 28).
    func answerError(_ client: Client?, _ response: AuthorizationResponse, _ description: String) -> AuthorizeDecision {
        if let client, ClientRegistration.isAnonymous(client) { return .errorNotice(description, response) }
        return .respond(response)
    }

    // MARK: Pushed authorization requests (RFC 9126)

    public static let requestURIPrefix = "urn:ietf:params:oauth:request_uri:"
    public static let pushedLifetimeSeconds = 60

    /// RFC 9126 §2: the authenticated client's request, judged by the same
    /// ordered checks as /oauth2/authorize (a failure is a 400 to the client,
    /// who is right there), kept for one use within 60 s. A DPoP `proof`
    /// sent along has its jti recorded with the request (RFC 9449 §11.1).
    public func push(_ p: AuthorizationParameters, client: Client, proof: DPoPProof? = nil) throws -> (requestURI: String, expiresIn: Int) {
        var parameters = p
        if let id = parameters.clientID, id != client.clientID { throw OAuthError.invalidRequest("client_id does not match the authenticated client.") }
        parameters.clientID = client.clientID
        let request: AuthorizationRequest
        do {
            (_, request) = try AuthorizationChecks.run(parameters, surface: .authorizationEndpoint) { _ in client.enabled ? client : nil }
        } catch let failure as AuthorizationFailure {
            // §2.1: request_uri is not a parameter of a pushed request.
            let code = failure.check == .requestURIUnsupported ? "invalid_request" : failure.check.errorCode
            throw OAuthError(code, status: 400, AuthorizationService.describe(failure.check))
        }
        let uri = AuthorizationService.requestURIPrefix + env.randomToken(bytes: 32)
        let now = env.now()
        try store.write {
            if let proof, !(try store.useProof(proof)) {
                throw OAuthError.proofReplayed
            }
            try store.insertPushedRequest(uriHash: AuthorizationService.hash(uri), clientID: client.clientID, request: request,
                                          expiresAt: now + Int64(AuthorizationService.pushedLifetimeSeconds) * 1000, now: now)
        }
        return (uri, AuthorizationService.pushedLifetimeSeconds)
    }

    /// /oauth2/authorize with a pushed request's `request_uri` (§4): the
    /// request is taken (single use) and continues as if just checked; the
    /// other parameters are ignored. Anything wrong is a page: nothing says
    /// which redirect URI to trust.
    func authorizePushed(_ requestURI: String, clientID: String?, sessionToken: String?, browser: String) throws -> AuthorizeDecision {
        guard let clientID, !clientID.isEmpty else { return .errorPage("The request has no client_id.") }
        let refused = AuthorizeDecision.errorPage("The request_uri is unknown, expired, already used or another client's.")
        guard requestURI.utf8.count <= 256 else { return refused }
        let now = env.now()
        guard var request = try store.write({ try store.takePushedRequest(uriHash: AuthorizationService.hash(requestURI), clientID: clientID, now: now) }),
              let client = try store.read({ try store.client(clientID) }), client.enabled else { return refused }
        request.backchannel = client.backchannelLogoutURI != nil
        request.pushed = true
        return try start(request, sessionToken: sessionToken, browser: browser)
    }

    /// A checked request, bound to this browser and stored; then where the browser goes next.
    func start(_ checked: AuthorizationRequest, sessionToken: String?, browser: String) throws -> AuthorizeDecision {
        var request = checked
        request.browserHash = AuthorizationService.hash(browser)
        let id = env.randomToken(bytes: 32)
        let now = env.now()
        let stored = StoredAuthorizationRequest(idHash: AuthorizationService.hash(id), request: request, createdAt: now,
                                                expiresAt: now + AuthorizationService.requestLifetimeMillis, answeredAt: nil)
        // Lost with the database's crash, the browser starts the request again (`writeDeferringFlush`).
        try store.writeDeferringFlush {
            try store.insertAuthorizationRequest(idHash: stored.idHash, request: request, createdAt: now, expiresAt: stored.expiresAt)
        }
        // Just stored, by this browser: no need to read it back.
        return try proceed(stored, requestID: id, sessionToken: sessionToken)
    }

    /// Inside a read: `pending` will load this request. A store that can send
    /// the read with its next statement does (PostgreSQL: the consent page's
    /// session and request in one round trip).
    public func readAhead(_ requestID: String) throws {
        guard requestID.utf8.count <= 128 else { return }
        try store.prefetchAuthorizationRequest(idHash: AuthorizationService.hash(requestID))
    }

    public static let unknownRequestMessage = "The authorization request is unknown, expired or already answered."

    /// Loads a pending request of this browser; nil when unknown, expired,
    /// answered or started by another browser (all alike).
    public func pending(_ requestID: String, browser: String?) throws -> StoredAuthorizationRequest? {
        try unexpired(requestID, browser: browser).flatMap { $0.answeredAt == nil ? $0 : nil }
    }

    /// The request this browser's user is answering on the consent page: nil when unknown, expired or started by
    /// another browser; `ConsentError.alreadyAnswered` once answered, whether the other answer committed before this
    /// one read the request or after (two answers at once: the loser is a 409 either way, not a 404 or a 409 by timing).
    func answerable(_ requestID: String, browser: String?) throws -> StoredAuthorizationRequest? {
        guard let stored = try unexpired(requestID, browser: browser) else { return nil }
        guard stored.answeredAt == nil else { throw ConsentError.alreadyAnswered }
        return stored
    }

    /// A request of this browser that has not expired, answered or not.
    private func unexpired(_ requestID: String, browser: String?) throws -> StoredAuthorizationRequest? {
        guard requestID.utf8.count <= 128, let browser, !browser.isEmpty, browser.utf8.count <= 128 else { return nil }
        return try store.read {
            guard let stored = try store.authorizationRequest(idHash: AuthorizationService.hash(requestID)),
                  stored.expiresAt > env.now(),
                  let bound = stored.request.browserHash,
                  Digest.constantTimeEqual(Array(bound.utf8), Array(AuthorizationService.hash(browser).utf8)) else { return nil }
            return stored
        }
    }

    /// Where a stored request goes next for this browser: the login page, the
    /// consent page, or straight back with a code (SPEC 5.1).
    public func next(requestID: String, sessionToken: String?, browser: String?) throws -> AuthorizeDecision {
        guard let stored = try pending(requestID, browser: browser) else { return .errorPage(AuthorizationService.unknownRequestMessage) }
        return try proceed(stored, requestID: requestID, sessionToken: sessionToken)
    }

    func proceed(_ stored: StoredAuthorizationRequest, requestID: String, sessionToken: String?) throws -> AuthorizeDecision {
        let request = stored.request
        let session = try SessionService(env: env, store: store).current(sessionToken)
        if session.map({ !signedInFreshly(for: stored, $0.session) }) ?? true {
            if request.prompt.contains("none") { return try answerWithError(stored, "login_required", "The user is not signed in.") }
            return .login(requestID: requestID, loginHint: request.loginHint)
        }
        let user = session!.user
        // A device's request is always answered on the consent screen (RFC 8628 §5.4: the user sees which app a code is for).
        if request.deviceCodeHash != nil { return .consent(requestID: requestID) }
        // prompt=consent asks again whatever was remembered: the connection is not read for it.
        let covered = try !request.prompt.contains("consent") && rememberedConsentApplies(request)
            && request.scope.allSatisfy((store.read { try store.connection(userID: user.id, clientID: request.clientID) }?.rememberedScope ?? []).contains)
        if !covered {
            if request.prompt.contains("none") {
                return try answerWithError(stored, "consent_required", "The user has not approved this client.")
            }
            return .consent(requestID: requestID)
        }
        do {
            return .respond(try grant(stored, user: user, authTime: session!.session.authTime, session: session!.session,
                                      scope: request.scope, consent: .covered))
        } catch is RememberedConsentWithdrawn {
            if request.prompt.contains("none") {
                return try answerWithError(stored, "consent_required", "The user has not approved this client.")
            }
            return .consent(requestID: requestID)
        } catch ConsentError.clientChanged {
            return .errorPage(ConsentError.clientChangedMessage)
        } catch ConsentError.alreadyAnswered {
            // Answered meanwhile by another request of this browser (a reload racing the first load): it had the code.
            return .errorPage(AuthorizationService.unknownRequestMessage)
        } catch ConsentError.loginRequired {
            // Signed out while this was being answered: as if the browser had not been signed in.
            if request.prompt.contains("none") { return try answerWithError(stored, "login_required", "The user is not signed in.") }
            return .login(requestID: requestID, loginHint: request.loginHint)
        }
    }

    /// Whether a remembered consent may answer the request without the user
    /// (RFC 8252 §8.6, RFC 6749 §10.2: not when the client's identity is not
    /// assured). A public client proves nothing at the token endpoint, and a
    /// loopback redirect URI takes any port: any program on the user's
    /// machine could start the request, listen for the code and redeem it
    /// with its own PKCE verifier (https on a loopback host no less: it is the
    /// same machine). Such a request is shown to the user every time; a
    /// redirect URI on a public host (the code goes to the registered host) or
    /// a client authenticating at the token endpoint keeps the remembered consent.
    /// `client`: the request's client when the caller has read it already.
    public func rememberedConsentApplies(_ request: AuthorizationRequest, client: Client? = nil) throws -> Bool {
        guard let parts = URIRules.parse(request.redirectURI), URIRules.isLoopback(parts.host) else { return true }
        return try (client ?? store.read { try store.client(request.clientID) }).map { !$0.isPublic } ?? false
    }

    /// Whether `session` signed in recently enough to answer the request
    /// (OIDC Core §3.1.2.1): after the request was made when it says
    /// `prompt=login`, `prompt=select_account` (the sign-in page is where the
    /// user picks the account) or names another user in `id_token_hint`, and
    /// no more than its `max_age` before the request. Checked wherever the request
    /// can be answered, the consent page's own calls included.
    public func signedInFreshly(for stored: StoredAuthorizationRequest, _ session: SessionRecord) -> Bool {
        // A `sub` value asked for in `claims` (OIDC Core §5.5.1): that user only, however freshly anyone else signed in.
        if let required = stored.request.claims?.subject, required != session.userID { return false }
        // A hint naming someone else (OIDC Core §3.1.2.2) asks for a sign-in as well; whoever signs in
        // after the request answers it (the user may choose another account).
        let hintedElse = stored.request.hintedSubject.map { $0 != session.userID } ?? false
        let signInAsked = stored.request.prompt.contains("login") || stored.request.prompt.contains("select_account")
        if (signInAsked || hintedElse) && session.createdAt < stored.createdAt { return false }
        // max_age is measured when the request is made: a sign-in older than it then must be made again; one
        // made since (or fresh enough then) stays good however long the user takes on the consent screen.
        if let maxAge = stored.request.maxAge, stored.createdAt / 1000 - session.authTime > Int64(maxAge) { return false }
        return true
    }

    /// Answers the request with `error` (once): at its redirect URI, or for a client registered anonymously on a page
    /// with a link back (`answerError`).
    /// A request another of this browser's requests answered meanwhile (a reload racing the first load, one
    /// with a code) is not answered again with an error (review, session 28): the error page, as for a code.
    func answerWithError(_ stored: StoredAuthorizationRequest, _ error: String, _ description: String) throws -> AuthorizeDecision {
        guard try store.write({ try store.markAuthorizationRequestAnswered(idHash: stored.idHash, at: env.now()) }) else {
            return .errorPage(AuthorizationService.unknownRequestMessage)
        }
        return answerError(try store.read { try store.client(stored.request.clientID) },
                           errorResponse(stored.request.redirectURI, error, description, state: stored.request.state,
                                         mode: stored.request.responseMode), description)
    }

    /// Answers the request with a code for `scope` (a subset of what was
    /// asked), records the connection, and returns the client's response.
    func grant(_ stored: StoredAuthorizationRequest, user: User, authTime: Int64, session: SessionRecord?, scope: [String],
               consent: RememberedConsent) throws -> AuthorizationResponse {
        let code = try issueCode(stored.request, user: user, authTime: authTime, session: session, scope: scope, consent: consent,
                                 answering: stored.idHash)
        return AuthorizationResponse(redirectURI: stored.request.redirectURI, parameters: [("code", code), ("state", stored.request.state), ("iss", env.issuer)],
                                     mode: stored.request.responseMode)
    }

    /// The request's client as it is now, not as it was when the request was
    /// made (up to ten minutes ago), when it may still be answered at the
    /// request's redirect URI: enabled, the URI still registered, and the
    /// request pushed if the client must push its requests now (RFC 9126 §6,
    /// FAPI 2.0: marked so after the request was made, it gets no code for
    /// one that was not). Read where the request's other reads are (the memo
    /// answers it, no round trip of its own).
    func answerableClient(_ request: AuthorizationRequest) throws -> Client? {
        guard let client = try store.read({ try store.client(request.clientID) }), client.enabled,
              AuthorizationService.redirectURIMatches(request.redirectURI, registered: client.redirectURIs),
              request.pushed || !client.mustPushRequests else { return nil }
        return client
    }

    /// Issues a single-use, 60-second code and records the connection, in one
    /// transaction; `answering` marks a stored request answered (once).
    /// `session`: the session signing in (nil for a user's token on the app
    /// API); its `sid` is recorded for Back-Channel Logout and carried to
    /// the ID token. A session that ended meanwhile gets no code.
    public func issueCode(_ request: AuthorizationRequest, user: User, authTime: Int64, session: SessionRecord?, scope: [String],
                          consent: RememberedConsent, answering idHash: String?) throws -> String {
        let sid = session?.sid
        let code = env.randomToken(prefix: "lkc_", bytes: 32)
        let now = env.now()
        // A disabled client, a redirect URI taken off it or a scope it no longer holds gets no code (the
        // token endpoint checks the client and its scopes again at redemption, and PKCE where the client must use
        // it now).
        guard let client = try answerableClient(request), scope.allSatisfy(client.scope.contains) else { throw ConsentError.clientChanged }
        // Lost with the database's crash, all of it goes (the answer, the code, the connection's new scopes): the
        // client's redemption fails and the user answers again. A redemption flushes it first (`writeDeferringFlush`).
        try store.writeDeferringFlush {
            // recordConnection reads it below, and the session is held: on PostgreSQL the reads go with the answer's update.
            // The session first: a password change deletes the user's sessions before their connections, and locks
            // taken in the other order waited for each other until PostgreSQL's deadlock timeout (review, session 22).
            if let session { try store.prefetchSessionHold(idHash: session.idHash) }
            try store.prefetchConnection(userID: user.id, clientID: request.clientID)
            if let idHash {
                guard try store.markAuthorizationRequestAnswered(idHash: idHash, at: now) else { throw ConsentError.alreadyAnswered }
            }
            try store.insertCode(AuthorizationCodeRecord(codeHash: AuthorizationService.hash(code), clientID: request.clientID, userID: user.id,
                                                         redirectURI: request.redirectURI, redirectURISent: request.redirectURISent,
                                                         scope: scope, nonce: request.nonce, codeChallenge: request.codeChallenge,
                                                         authTime: authTime, createdAt: now, expiresAt: now + AuthorizationService.codeLifetimeMillis,
                                                         sid: sid, claims: request.claims, dpopJKT: request.dpopJKT,
                                                         pushed: request.pushed))
            // Back-Channel Logout needs the session signed in here only when the client listens.
            if let sid, request.backchannel {
                try store.recordSessionClient(sid: sid, clientID: request.clientID, userID: user.id, at: now,
                                              expiresAt: now + SessionService.lifetimeMillis)
            }
            try recordConnection(userID: user.id, clientID: request.clientID, scope: scope, consent: consent, authTime: authTime, now: now)
            // Signed out meanwhile (the consent read the session before this write; review, session 18): the
            // logout spent the session's codes and revoked its grants before this one existed. Held, the logout
            // waits for this write and then spends its code too.
            if let session, try !store.holdSession(idHash: session.idHash) { throw ConsentError.loginRequired }
        }
        return code
    }

    /// The user granted `scope` to the client (inside the grant's
    /// transaction): the connection the account page lists (SPEC 5.2), with
    /// every scope granted since the user connected the app, and what later
    /// requests need not ask again, as `consent` says.
    func recordConnection(userID: String, clientID: String, scope: [String], consent: RememberedConsent, authTime: Int64, now: Int64) throws {
        // Read for update: a grant to the same user and client on another node waits for this one, or this for it.
        try store.prefetchConnection(userID: userID, clientID: clientID)
        let existing = try store.connection(userID: userID, clientID: clientID)
        let granted = (existing?.grantedScope ?? []) + scope.filter { !(existing?.grantedScope ?? []).contains($0) }
        let remembered: [String]
        switch consent {
        case .replace: remembered = scope
        case .forget: remembered = []
        case .keep, .covered: remembered = existing?.rememberedScope ?? []
        }
        if consent == .covered && !scope.allSatisfy(remembered.contains) { throw RememberedConsentWithdrawn() }
        // Less remembered than before: the user took something away, which no crash may give back.
        if !(existing?.rememberedScope ?? []).allSatisfy(remembered.contains) { store.requireFlush() }
        try store.upsertConnection(UserConnection(userID: userID, clientID: clientID, rememberedScope: remembered,
                                                  grantedScope: granted, authTime: authTime, accessTime: now, createdAt: existing?.createdAt ?? now))
    }

    // MARK: Consent

    /// The consent decision of a signed-in user (SPEC 5.1).
    public func accept(_ requestID: String, browser: String?, user: User, session: SessionRecord, scope: [String], remember: Bool) throws -> AuthorizationResponse {
        guard let stored = try answerable(requestID, browser: browser) else { throw ConsentError.notFound }
        guard signedInFreshly(for: stored, session) else { throw ConsentError.loginRequired }
        guard !scope.isEmpty, scope.allSatisfy(stored.request.scope.contains) else { throw ConsentError.scopeNotRequested }
        if let device = stored.request.deviceCodeHash {
            return try DeviceAuthorizationService(env: env, store: store).answer(stored, deviceCodeHash: device, user: user, authTime: session.authTime,
                                                                                  scope: stored.request.scope.filter(scope.contains))
        }
        return try grant(stored, user: user, authTime: session.authTime, session: session,
                         scope: stored.request.scope.filter(scope.contains), consent: remember ? .replace : .forget)
    }

    /// `user`: who denied it (recorded on a device code, which a user's answer ends).
    public func reject(_ requestID: String, browser: String?, user: User, session: SessionRecord) throws -> AuthorizationResponse {
        guard let stored = try answerable(requestID, browser: browser) else { throw ConsentError.notFound }
        if let device = stored.request.deviceCodeHash {
            return try DeviceAuthorizationService(env: env, store: store).answer(stored, deviceCodeHash: device, user: user, authTime: session.authTime,
                                                                                  scope: nil)
        }
        // Not even an error goes to a redirect URI the client no longer has, or to a disabled client.
        guard try answerableClient(stored.request) != nil else { throw ConsentError.clientChanged }
        let answered = try store.write { try store.markAuthorizationRequestAnswered(idHash: stored.idHash, at: env.now()) }
        guard answered else { throw ConsentError.alreadyAnswered }
        return errorResponse(stored.request.redirectURI, "access_denied", "The user denied the request.", state: stored.request.state,
                             mode: stored.request.responseMode)
    }
}

public enum ConsentError: Error, Equatable {
    case notFound
    case alreadyAnswered
    case scopeNotRequested
    /// The request asks for a newer sign-in than the session's (`prompt=login`, `max_age`).
    case loginRequired
    /// The client was disabled, lost the redirect URI or a scope since the request was made.
    case clientChanged

    public static let clientChangedMessage = "The application changed since this request was made. Go back to it and start again."
}

import Common
import Cryptography
import JOSE

/// RP-Initiated Logout 1.0: a client asks Latchkey to end the user's
/// session. With a valid `id_token_hint` naming the signed-in user the
/// session ends at once; otherwise the user confirms first (a third party
/// must not be able to sign people out with a link). The user then goes to
/// the client's registered `post_logout_redirect_uri` (exact match), with
/// `state`, or sees that they are signed out.
///
/// What a logout ends: the Latchkey session (its cookie and row), the
/// grants made in it without `offline_access`, and, over the back channel,
/// the sessions of the clients it signed into (`BackchannelLogout`).
/// Refresh tokens granted with `offline_access` are meant to outlive the
/// session (OIDC Core §11) and stay; the user revokes them with the
/// connection on `/account/`.
public struct LogoutService {
    let env: Environment
    let store: Store
    let keys: KeyRing

    public init(env: Environment, store: Store, keys: KeyRing) {
        self.env = env
        self.store = store
        self.keys = keys
    }

    public struct Parameters: Sendable, Equatable {
        public var idTokenHint: String?
        public var clientID: String?
        public var postLogoutRedirectURI: String?
        public var state: String?

        public init(_ items: [(String, String)]) {
            func value(_ name: String) -> String? { items.first { $0.0 == name }?.1.nilIfEmpty }
            idTokenHint = value("id_token_hint")
            clientID = value("client_id")
            postLogoutRedirectURI = value("post_logout_redirect_uri")
            state = value("state")
        }
    }

    public enum Decision: Sendable, Equatable {
        /// Something is wrong with the request: shown, never redirected.
        case errorPage(String)
        /// Ask the signed-in user; `clientName` when the client is known,
        /// `redirectOrigin` where the answer will be redirected (a form's
        /// `form-action` must allow it: browsers apply it to the redirect too).
        case confirm(clientName: String?, redirectOrigin: String?)
        /// The session is over (or there was none): here next.
        case signedOut(redirect: String?)
    }

    /// What an `id_token_hint` is (parsed once).
    enum Hint {
        /// An ID token Latchkey signed for this issuer (expired is fine: §2): its subject, the client it was issued
        /// to, and its session. Only an ID token's shape will do (`typ` JWT, `exp`, `iat`, `auth_time`): an access
        /// token or a signed userinfo answer, also Latchkey's JWTs, is no hint.
        case idToken(subject: String, clientID: String, sid: String?)
        /// Signed by a key that is not published (any more): one revoked (`latchkey keys revoke`) may have signed
        /// the ID token of a session still live, where a rotated-out key stays published longer than a session
        /// lasts. Such a hint is as none, so the user confirms on the page rather than being unable to sign out of
        /// a session begun before the revoke (review of the change, session 29); a made-up kid gets no more than
        /// sending no hint gets.
        case unpublishedKey
        case invalid
    }

    func classify(_ token: String) throws -> Hint {
        guard let parsed = JWS.parse(token), let kid = parsed.kid else { return .invalid }
        guard let key = try keys.verificationKey(kid: kid) else { return .unpublishedKey }
        guard parsed.algorithm == key.algorithm.rawValue, JWS.verify(parsed, key: key), parsed.typ == "JWT",
              parsed.payload["exp"]?.intValue != nil, parsed.payload["iat"]?.intValue != nil, parsed.payload["auth_time"]?.intValue != nil,
              parsed.payload["iss"]?.stringValue == env.issuer, let subject = parsed.payload["sub"]?.stringValue,
              let audience = parsed.payload["aud"]?.stringValue ?? parsed.payload["azp"]?.stringValue else { return .invalid }
        return .idToken(subject: subject, clientID: audience, sid: parsed.payload["sid"]?.stringValue)
    }

    /// The hint's subject, the client it was issued to and its session, when it is an ID token Latchkey signed
    /// for this issuer with a key still published (`Hint.idToken`).
    public func hint(_ token: String) throws -> (subject: String, clientID: String, sid: String?)? {
        guard case let .idToken(subject, clientID, sid) = try classify(token) else { return nil }
        return (subject, clientID, sid)
    }

    /// Why a request is not acceptable, shown on the error page.
    static let invalidRequest = "The logout request is not valid: its id_token_hint, client_id or post_logout_redirect_uri does not match a "
        + "registered client, or its state is longer than 2048 bytes."

    /// What the request asks for and whether it is acceptable (§2, §3).
    func resolve(_ p: Parameters) throws -> (subject: String?, sid: String?, client: Client?, redirect: String?)? {
        // Echoed in the redirect: bounded as /oauth2/authorize bounds it (a longer one made a Location nginx refused, 502).
        if let state = p.state, state.utf8.count > 2048 { return nil }
        var subject: String?, sid: String?, clientID = p.clientID, ignoredHint = false
        if let token = p.idTokenHint {
            switch try classify(token) {
            case .invalid: return nil
            case .unpublishedKey: ignoredHint = true
            case let .idToken(sub, aud, hintSid):
                if let clientID, clientID != aud { return nil }
                (subject, sid, clientID) = (sub, hintSid, aud)
            }
        }
        let client = try clientID.flatMap { id in try store.read { try store.client(id) } }
        if clientID != nil && client == nil { return nil }
        var redirect: String?
        // A post-logout URI that only the ignored hint named a client for goes unused, as it would without a hint.
        if let uri = p.postLogoutRedirectURI, !(ignoredHint && client == nil) {
            guard let client, client.postLogoutRedirectURIs.contains(uri) else { return nil }
            // §3: without an id_token_hint nothing confirms that the client asked (anyone may
            // register a client and its URIs): no redirection then, only the signed-out page. Nor for a
            // client an operator disabled: its URIs lead nowhere any more (attacker review, session 17).
            if subject != nil && client.enabled { redirect = p.state == nil ? uri : AuthorizationService.redirect(uri, [("state", p.state)]) }
        }
        return (subject, sid, client, redirect)
    }

    /// GET or POST /oauth2/logout.
    public func request(_ p: Parameters, sessionToken: String?) throws -> Decision {
        guard let (subject, sid, client, redirect) = try resolve(p) else {
            return .errorPage(LogoutService.invalidRequest)
        }
        let sessions = SessionService(env: env, store: store)
        guard let token = sessionToken, let (session, user) = try sessions.current(token) else {
            // No one is signed in here: nothing ended, and a client registered anonymously does not have this server
            // send a visitor to its URI (anyone's own ID token for it would do: RFC 9700 §4.11.2, attacker review, session 24).
            return .signedOut(redirect: client.map(ClientRegistration.isAnonymous) == true ? nil : redirect)
        }
        // The hint must name this user and this very session: an ID token from an earlier session (any
        // client the user ever used holds one), or one no browser session signed in for (minted on the app
        // API with a user's token, or by a device), does not end this one unasked.
        if let subject, subject == user.id, let sid, sid == session.sid {
            try sessions.logout(token)
            return .signedOut(redirect: redirect)
        }
        // Only a hint about this user shows that the client asked on their behalf: a bare client_id, or anyone's
        // own ID token of a client of their own, could put any app's name on the page and send the user to its
        // URI after they confirm (attacker review, session 19).
        let theirs = subject == user.id
        return .confirm(clientName: theirs ? client.map(ClientSpec.displayName) : nil,
                        redirectOrigin: theirs ? redirect.flatMap(URIRules.origin) : nil)
    }

    /// The user confirmed on the page (the caller checked the CSRF token
    /// against the session it read: `userID` is that session's user).
    public func confirmed(_ p: Parameters, sessionToken: String?, userID: String) throws -> Decision {
        guard let (subject, _, _, redirect) = try resolve(p) else {
            return .errorPage(LogoutService.invalidRequest)
        }
        if let token = sessionToken { try SessionService(env: env, store: store).logout(token) }
        // To the client's URI only when the hint was about the user who confirmed (see `request`).
        return .signedOut(redirect: subject != nil && subject == userID ? redirect : nil)
    }
}

extension String {
    fileprivate var nilIfEmpty: String? { isEmpty ? nil : self }
}

import Common

public struct SessionRecord: Sendable, Equatable {
    public var idHash: String
    public var userID: String
    /// SHA-256 of the CSRF token (the token itself is only in the browser).
    public var csrf: String
    public var authTime: Int64
    public var createdAt: Int64
    public var expiresAt: Int64
    /// The session's `sid` (Back-Channel Logout 1.0), derived from `idHash` once, at sign-in.
    public var sid: String

    public init(idHash: String, userID: String, csrf: String, authTime: Int64, createdAt: Int64, expiresAt: Int64, sid: String? = nil) {
        self.idHash = idHash
        self.sid = sid ?? BackchannelLogout.sid(sessionIDHash: idHash)
        self.userID = userID
        self.csrf = csrf
        self.authTime = authTime
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

/// A validated authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1,
/// RFC 7636 §4.3), kept until it is answered or 10 minutes pass.
public struct AuthorizationRequest: Sendable, Equatable {
    public var clientID: String
    public var redirectURI: String
    /// Whether the client sent redirect_uri (then the token request must repeat it).
    public var redirectURISent: Bool
    public var scope: [String]
    public var state: String?
    public var nonce: String?
    public var codeChallenge: String?
    public var prompt: [String]
    public var maxAge: Int?
    /// SHA-256 of the browser-binding cookie of the browser that started the request.
    public var browserHash: String?
    /// How the response goes back (query unless `response_mode=form_post`).
    public var responseMode: ResponseMode
    /// The `claims` parameter (OIDC Core §5.5), when sent with openid.
    public var claims: ClaimsRequest?
    /// Whether the client listens for Back-Channel Logout (then the code records the session it was issued in).
    public var backchannel = false
    /// A device authorization (RFC 8628) the user answers on the consent
    /// screen: the hash of its device code. Such a request has no redirect
    /// URI; the answer goes to the device code, and the browser back to `/device`.
    public var deviceCodeHash: String?
    /// RFC 9449 §10: the DPoP key the code is bound to (`dpop_jkt`, or a PAR request's proof).
    public var dpopJKT: String?
    /// The user an `id_token_hint` named ("" for a hint that did not verify): another user's session
    /// answers only after signing in anew (OIDC Core §3.1.2.2).
    public var hintedSubject: String?
    /// `login_hint` (OIDC Core §3.1.2.1), kept only when it is fit to prefill the sign-in page's username.
    public var loginHint: String?
    /// Whether it came through the pushed authorization request endpoint (RFC 9126): a client that must push its
    /// requests (RFC 9126 §6, FAPI 2.0) gets a code only for one that did, whenever it was made.
    public var pushed = false

    public init(clientID: String, redirectURI: String, redirectURISent: Bool, scope: [String], state: String?, nonce: String?,
                codeChallenge: String?, prompt: [String], maxAge: Int?, browserHash: String? = nil, responseMode: ResponseMode = .query,
                claims: ClaimsRequest? = nil) {
        self.clientID = clientID
        self.redirectURI = redirectURI
        self.redirectURISent = redirectURISent
        self.scope = scope
        self.state = state
        self.nonce = nonce
        self.codeChallenge = codeChallenge
        self.prompt = prompt
        self.maxAge = maxAge
        self.browserHash = browserHash
        self.responseMode = responseMode
        self.claims = claims
    }

    public var json: JSON {
        [
            "client_id": .string(clientID), "redirect_uri": .string(redirectURI), "redirect_uri_sent": .bool(redirectURISent),
            "scope": .string(Scopes.join(scope)), "state": JSON(state), "nonce": JSON(nonce), "code_challenge": JSON(codeChallenge),
            "prompt": JSON(prompt), "max_age": maxAge.map { JSON($0) } ?? .null, "browser": JSON(browserHash),
            "response_mode": .string(responseMode.rawValue), "claims": claims?.json ?? .null, "backchannel": .bool(backchannel),
            "device": JSON(deviceCodeHash), "dpop_jkt": JSON(dpopJKT), "hinted_subject": JSON(hintedSubject),
            "login_hint": JSON(loginHint), "pushed": .bool(pushed),
        ]
    }

    public init?(json: JSON) {
        guard let clientID = json["client_id"]?.stringValue, let redirectURI = json["redirect_uri"]?.stringValue,
              let scope = json["scope"]?.stringValue.flatMap(Scopes.parse) else { return nil }
        self.init(clientID: clientID, redirectURI: redirectURI, redirectURISent: json["redirect_uri_sent"]?.boolValue ?? true, scope: scope,
                  state: json["state"]?.stringValue, nonce: json["nonce"]?.stringValue, codeChallenge: json["code_challenge"]?.stringValue,
                  prompt: (json["prompt"]?.arrayValue ?? []).compactMap(\.stringValue), maxAge: json["max_age"]?.intValue.map { Int($0) },
                  browserHash: json["browser"]?.stringValue,
                  responseMode: json["response_mode"]?.stringValue.flatMap(ResponseMode.init(rawValue:)) ?? .query,
                  claims: json["claims"].flatMap(ClaimsRequest.init(json:)))
        backchannel = json["backchannel"]?.boolValue ?? false
        deviceCodeHash = json["device"]?.stringValue
        dpopJKT = json["dpop_jkt"]?.stringValue
        hintedSubject = json["hinted_subject"]?.stringValue
        loginHint = json["login_hint"]?.stringValue
        pushed = json["pushed"]?.boolValue ?? false
    }

    /// A `login_hint` the sign-in page may show as the username: at most 256
    /// bytes of text without control, bidirectional-override or invisible
    /// characters. Any other is dropped, not refused: a hint is optional to
    /// honour (OIDC Core §3.1.2.1), and the user types the name instead.
    public static func usableLoginHint(_ hint: String?) -> String? {
        guard let hint, hint.utf8.count <= 256, ClientSpec.isDisplaySafe(hint), ClientSpec.isVisible(hint) else {
            return nil
        }
        return hint
    }
}

public struct StoredAuthorizationRequest: Sendable, Equatable {
    public var idHash: String
    public var request: AuthorizationRequest
    public var createdAt: Int64
    public var expiresAt: Int64
    public var answeredAt: Int64?

    public init(idHash: String, request: AuthorizationRequest, createdAt: Int64, expiresAt: Int64, answeredAt: Int64? = nil) {
        self.idHash = idHash
        self.request = request
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.answeredAt = answeredAt
    }
}

public struct AuthorizationCodeRecord: Sendable, Equatable {
    public var codeHash: String
    public var clientID: String
    public var userID: String
    public var redirectURI: String
    public var redirectURISent: Bool
    public var scope: [String]
    public var nonce: String?
    public var codeChallenge: String?
    public var authTime: Int64
    public var createdAt: Int64
    public var expiresAt: Int64
    public var consumedAt: Int64?
    public var familyID: String?
    /// The session the code was issued in (`sid`, Back-Channel Logout 1.0); nil without one.
    public var sid: String?
    public var claims: ClaimsRequest?
    /// RFC 9449 §10: the DPoP key whose proof must come with the redemption.
    public var dpopJKT: String?
    /// Whether its request came through the pushed authorization request endpoint (RFC 9126).
    public var pushed: Bool

    public init(codeHash: String, clientID: String, userID: String, redirectURI: String, redirectURISent: Bool, scope: [String], nonce: String? = nil,
                codeChallenge: String? = nil, authTime: Int64, createdAt: Int64, expiresAt: Int64, consumedAt: Int64? = nil, familyID: String? = nil,
                sid: String? = nil, claims: ClaimsRequest? = nil, dpopJKT: String? = nil, pushed: Bool = false) {
        self.codeHash = codeHash
        self.clientID = clientID
        self.userID = userID
        self.redirectURI = redirectURI
        self.redirectURISent = redirectURISent
        self.scope = scope
        self.nonce = nonce
        self.codeChallenge = codeChallenge
        self.authTime = authTime
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.consumedAt = consumedAt
        self.familyID = familyID
        self.sid = sid
        self.claims = claims
        self.dpopJKT = dpopJKT
        self.pushed = pushed
    }
}

/// How long a token family and its refresh tokens are kept once they have
/// expired, before the purge at the next insert takes them: the longest
/// access token a family can have issued, and five minutes for the time
/// between a grant's commit and its token's signing and for clocks that
/// differ between nodes, so every token a purged family ever issued has
/// expired too. A rotated-out refresh token presented later than that is
/// refused as unknown (and revokes nothing) instead of revoking its family.
public enum TokenFamilies {
    public static let keptAfterExpiryMillis = Int64(ClientSpec.maxAccessTokenTTL + 300) * 1000
}

public struct RefreshTokenRecord: Sendable, Equatable {
    public var tokenHash: String
    public var familyID: String
    public var clientID: String
    public var userID: String
    public var scope: [String]
    public var authTime: Int64
    public var createdAt: Int64
    public var expiresAt: Int64
    public var rotatedAt: Int64?
    /// The DPoP key a public client's refresh token is bound to (RFC 9449 §5).
    public var jkt: String?
    /// The hash of the token whose rotation issued this one (nil for a family's first, and before schema 21).
    public var parentHash: String?
    /// When a FAPI 2.0 client's retry withdrew it unused (`withdrawUnusedSuccessor`): presented again, it is reuse.
    public var withdrawnAt: Int64?
    /// When the sign-in its grant came from ends (ms): no token of the family
    /// lives past it (`TokenService.refreshTokenExpiry`). nil for a grant
    /// with offline_access, and for tokens stored before schema 22 (then
    /// `authTime` plus a session's lifetime, as they were issued).
    public var sessionEndsAt: Int64?

    public init(tokenHash: String, familyID: String, clientID: String, userID: String, scope: [String], authTime: Int64, createdAt: Int64,
                expiresAt: Int64, rotatedAt: Int64? = nil, jkt: String? = nil, parentHash: String? = nil, withdrawnAt: Int64? = nil,
                sessionEndsAt: Int64? = nil) {
        self.sessionEndsAt = sessionEndsAt
        self.parentHash = parentHash
        self.withdrawnAt = withdrawnAt
        self.tokenHash = tokenHash
        self.familyID = familyID
        self.clientID = clientID
        self.userID = userID
        self.scope = scope
        self.authTime = authTime
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.rotatedAt = rotatedAt
        self.jkt = jkt
    }
}

/// An app a user has authorized (SPEC 5.2): the consent it may remember and
/// when it was last used.
public struct UserConnection: Sendable, Equatable {
    public var userID: String
    public var clientID: String
    /// Scopes the user chose to remember (empty when `remember: false`).
    public var rememberedScope: [String]
    /// Scopes granted most recently.
    public var grantedScope: [String]
    public var authTime: Int64
    public var accessTime: Int64
    public var createdAt: Int64

    public init(userID: String, clientID: String, rememberedScope: [String], grantedScope: [String], authTime: Int64, accessTime: Int64, createdAt: Int64) {
        self.userID = userID
        self.clientID = clientID
        self.rememberedScope = rememberedScope
        self.grantedScope = grantedScope
        self.authTime = authTime
        self.accessTime = accessTime
        self.createdAt = createdAt
    }
}

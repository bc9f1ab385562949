/// An authorization request's parameters as received, unjudged.
public struct AuthorizationParameters: Sendable, Equatable {
    public var clientID: String?
    public var redirectURI: String?
    public var responseType: String?
    public var responseMode: String?
    public var scope: String?
    public var state: String?
    public var nonce: String?
    public var codeChallenge: String?
    public var codeChallengeMethod: String?
    public var prompt: String?
    public var maxAge: String?
    public var requestObject: String?
    public var requestURI: String?
    public var claims: String?
    /// RFC 9449 §10: the thumbprint of the DPoP key the code is bound to.
    public var dpopJKT: String?
    /// OIDC Core §3.1.2.1: an ID token naming the user the client expects.
    public var idTokenHint: String?
    /// OIDC Core §3.1.2.1: who the client thinks will sign in (an email address or a username).
    public var loginHint: String?
    /// The subject of `idTokenHint` once the endpoint verified it as one of
    /// this server's ID tokens; "" when it could not (no user is that). Never
    /// read from the request itself.
    public var hintedSubject: String?
    /// Whether some parameter came more than once.
    public var repeated = false

    public init(clientID: String? = nil, scope: String? = nil, nonce: String? = nil, codeChallenge: String? = nil, codeChallengeMethod: String? = nil) {
        self.clientID = clientID
        self.scope = scope
        self.nonce = nonce
        self.codeChallenge = codeChallenge
        self.codeChallengeMethod = codeChallengeMethod
    }

    /// From query or form pairs; empty values count as absent.
    public init(pairs: [(String, String)]) {
        var values: [String: String] = [:]
        for (k, v) in pairs where !v.isEmpty {
            if values[k] != nil { repeated = true }
            values[k] = v
        }
        clientID = values["client_id"]
        redirectURI = values["redirect_uri"]
        responseType = values["response_type"]
        responseMode = values["response_mode"]
        scope = values["scope"]
        state = values["state"]
        nonce = values["nonce"]
        codeChallenge = values["code_challenge"]
        codeChallengeMethod = values["code_challenge_method"]
        prompt = values["prompt"]
        maxAge = values["max_age"]
        requestObject = values["request"]
        requestURI = values["request_uri"]
        claims = values["claims"]
        dpopJKT = values["dpop_jkt"]
        idTokenHint = values["id_token_hint"]
        loginHint = values["login_hint"]
    }
}

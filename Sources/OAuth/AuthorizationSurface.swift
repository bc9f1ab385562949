/// What differs between the surfaces that issue codes: data, not code.
public struct AuthorizationSurface: Sendable {
    public enum RedirectRule: Sendable {
        /// The request names one of the client's registered URIs (OIDC Core §3.1.2.1: required).
        case requested
        /// The client's one registered URI, never sent (the app API).
        case onlyRegistered
    }

    public enum ScopeRule: Sendable {
        /// RFC 6749 §3.3 grammar; any scope the client may not request refuses the request.
        case strict
        /// Space-separated, at most `maxLength` bytes; scopes the client may not request are dropped (the app API).
        case dropUnrequestable(maxLength: Int)
    }

    public var redirect: RedirectRule
    /// Whether `response_type=code` must be sent (else it is implied).
    public var responseTypeSent: Bool
    public var scope: ScopeRule
    public var requiresOpenID: Bool
    public var printableNonce: Bool

    /// `/oauth2/authorize` (RFC 6749 §4.1.1, OIDC Core §3.1.2.1).
    public static let authorizationEndpoint = AuthorizationSurface(redirect: .requested, responseTypeSent: true, scope: .strict,
                                                                   requiresOpenID: false, printableNonce: false)
    /// The app API's `/auth/code` (SPEC 6.4).
    public static let appAPI = AuthorizationSurface(redirect: .onlyRegistered, responseTypeSent: false,
                                                    scope: .dropUnrequestable(maxLength: 255), requiresOpenID: true, printableNonce: true)
}

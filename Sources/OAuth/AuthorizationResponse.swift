import Common

/// How an authorization response travels back to the client: appended to
/// the redirect URI's query (RFC 6749 §4.1.2, the code flow's default), or
/// POSTed by an auto-submitting form (OAuth 2.0 Form Post Response Mode),
/// so that the code never appears in a URL, a log or a Referer.
public enum ResponseMode: String, Sendable, CaseIterable {
    case query
    case formPost = "form_post"
}

/// A response to the client's redirect URI: a code or an error, with
/// `state` and `iss` (RFC 9207), in the request's response mode.
public struct AuthorizationResponse: Sendable, Equatable {
    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String
    }

    public var redirectURI: String
    public var fields: [Field]
    public var mode: ResponseMode

    /// Parameters whose value is nil (an absent `state`) are left out.
    public init(redirectURI: String, parameters: [(String, String?)], mode: ResponseMode) {
        self.redirectURI = redirectURI
        self.fields = parameters.compactMap { name, value in value.map { Field(name: name, value: $0) } }
        self.mode = mode
    }

    /// The query-mode redirect: the fields appended to the redirect URI's query.
    public var location: String { AuthorizationService.redirect(redirectURI, fields.map { ($0.name, $0.value) }) }

    /// The redirect URI's origin (scheme, host, port): what a form-post
    /// page's `form-action` allows. Redirect URIs are validated at
    /// registration, so the parts are plain URI bytes.
    public var origin: String? { URIRules.origin(redirectURI) }
}

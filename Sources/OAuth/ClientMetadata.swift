import Common

/// The client metadata OpenID Connect and the later RFCs added to RFC 7591's
/// basics (logout URIs, back-channel logout, keys, PAR, signed userinfo,
/// policy and terms): written and read once, for the native API, dynamic
/// registration and the native representation alike.
public enum ClientMetadata {
    /// The members a client has (an unset optional one is left out).
    public static func members(_ c: Client) -> [(String, JSON)] {
        var members: [(String, JSON)] = [
            ("post_logout_redirect_uris", JSON(c.postLogoutRedirectURIs)),
            ("backchannel_logout_session_required", .bool(c.backchannelLogoutSessionRequired)),
            ("require_pushed_authorization_requests", .bool(c.requirePushedRequests)),
            ("dpop_bound_access_tokens", .bool(c.dpopBoundAccessTokens)), ("fapi2_security_profile", .bool(c.fapi2)),
        ]
        if let uri = c.backchannelLogoutURI { members.append(("backchannel_logout_uri", .string(uri))) }
        if let jwks = c.jwks { members.append(("jwks", jwks)) }
        if let alg = c.userinfoAlg { members.append(("userinfo_signed_response_alg", .string(alg.rawValue))) }
        if let uri = c.policyURI { members.append(("policy_uri", .string(uri))) }
        if let uri = c.tosURI { members.append(("tos_uri", .string(uri))) }
        return members
    }

    /// Their names, for the surfaces' lists of fields they take.
    public static let names = ["post_logout_redirect_uris", "backchannel_logout_uri", "backchannel_logout_session_required", "jwks",
                               "require_pushed_authorization_requests", "userinfo_signed_response_alg", "policy_uri", "tos_uri",
                               "dpop_bound_access_tokens", "fapi2_security_profile"]

    /// Reads them from a body into `spec` (absent: the defaults; the
    /// registry's rules judge the values, `ClientSpec.problems`).
    public static func read(_ r: inout FieldReader, into spec: inout ClientSpec) throws {
        spec.postLogoutRedirectURIs = try r.strings("post_logout_redirect_uris") ?? []
        spec.backchannelLogoutURI = try r.string("backchannel_logout_uri")
        spec.backchannelLogoutSessionRequired = try r.bool("backchannel_logout_session_required") ?? false
        spec.jwks = r.body["jwks"].flatMap { $0.isNull ? nil : $0 }
        spec.requirePushedRequests = try r.bool("require_pushed_authorization_requests") ?? false
        spec.userinfoAlg = try r.string("userinfo_signed_response_alg")
        spec.policyURI = try r.string("policy_uri")
        spec.tosURI = try r.string("tos_uri")
        spec.dpopBoundAccessTokens = try r.bool("dpop_bound_access_tokens") ?? false
        spec.fapi2 = try r.bool("fapi2_security_profile") ?? false
    }
}

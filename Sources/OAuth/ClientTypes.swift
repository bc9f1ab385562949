/// The closed vocabularies of client metadata (issue 12): what a stored
/// client holds is one of these, never a string matched by hand. Input
/// arrives as strings (`ClientSpec`) and is refused with a field error when
/// it is not one of them; past validation only these types travel.

/// RFC 7591 §2 `grant_types`, as far as Latchkey issues them.
public enum GrantType: String, Sendable, CaseIterable {
    case authorizationCode = "authorization_code"
    case refreshToken = "refresh_token"
    case clientCredentials = "client_credentials"
}

/// RFC 7591 §2 `token_endpoint_auth_method`.
public enum ClientAuthMethod: String, Sendable, CaseIterable {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1).
    case clientSecretBasic = "client_secret_basic"
    /// `client_id` and `client_secret` in the form body.
    case clientSecretPost = "client_secret_post"
    /// A public client: no secret, PKCE instead (RFC 7591's `none`).
    case publicClient = "none"
}

/// The identity providers an upstream client record (SPEC 6.5) may name.
public enum UpstreamProvider: String, Sendable, CaseIterable {
    case azureAD = "Azure AD"
    case google = "Google"

    /// The source also took the providers' numbers: "1" and "2".
    public init?(parsing raw: String) {
        switch raw.trimmingCharacters() {
        case "Azure AD", "1": self = .azureAD
        case "Google", "2": self = .google
        default: return nil
        }
    }
}

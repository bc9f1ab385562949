/// The closed vocabularies of client metadata (issue 12): what a stored
/// client holds is one of these, never a string matched by hand. Input
/// arrives as strings (`ClientSpec`) and is refused with a field error when
/// it is not one of them; past validation only these types travel.

/// RFC 7591 §2 `grant_types`. The values Latchkey knows are those of the
/// grants in `TokenExchange.grants`, each declared beside its grant
/// (`GrantType.refreshToken` in `Grants/RefreshTokenGrant.swift`), so a new
/// grant is one file and one line in that list.
public struct GrantType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// A grant type the token endpoint answers, or nil.
    public init?(known raw: String) {
        guard TokenExchange.grants[GrantType(rawValue: raw)] != nil else { return nil }
        self.init(rawValue: raw)
    }

    /// Every grant type the token endpoint answers, in `TokenExchange`'s order.
    public static var known: [GrantType] { TokenExchange.grantList.map(\.type) }

    public var description: String { rawValue }
}

/// RFC 7591 §2 `token_endpoint_auth_method`.
public enum ClientAuthMethod: String, Sendable, CaseIterable {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1).
    case clientSecretBasic = "client_secret_basic"
    /// `client_id` and `client_secret` in the form body.
    case clientSecretPost = "client_secret_post"
    /// A public client: no secret, PKCE instead (RFC 7591's `none`).
    case publicClient = "none"
    /// A JWT signed with one of the client's registered keys (`jwks`), RFC 7523 §2.2, OIDC Core §9.
    case privateKeyJWT = "private_key_jwt"

    /// Whether the client authenticates with a secret Latchkey holds (hashed).
    public var usesSecret: Bool { self == .clientSecretBasic || self == .clientSecretPost }
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

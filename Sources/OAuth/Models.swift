import Common
import Cryptography

public struct Organization: Sendable, Equatable {
    public var id: String
    public var name: String
    public var clientLimit: Int
    public var primaryClientID: String?
    public var createdAt: Int64

    public init(id: String, name: String, clientLimit: Int, primaryClientID: String?, createdAt: Int64) {
        self.id = id
        self.name = name
        self.clientLimit = clientLimit
        self.primaryClientID = primaryClientID
        self.createdAt = createdAt
    }
}

/// An OAuth client (RFC 7591 metadata names in comments).
public struct Client: Sendable, Equatable {
    public var clientID: String
    public var organizationID: String
    public var isPrimary: Bool
    public var name: String                 // client_name
    public var description: String?
    public var clientURI: String?           // client_uri
    public var redirectURIs: [String]       // redirect_uris
    public var grantTypes: [GrantType]      // grant_types
    public var authMethod: ClientAuthMethod // token_endpoint_auth_method
    public var scope: [String]              // scope
    public var accessTokenTTL: Int
    public var refreshTokenTTL: Int
    public var enabled: Bool
    public var extraData: JSON              // the caller's own object
    /// Fields only a compatible surface knows (businessName, accessType, ...).
    public var attributes: JSON
    public var createdAt: Int64
    public var updatedAt: Int64
    public var version: Int
    public var lastUsedAt: Int64?
    public var hasLogo: Bool
    /// Carried by every token issued to the client (`gen`); a token of an
    /// older generation is inactive. Bumped when the client is disabled and
    /// when an operator resets it, so neither re-enabling nor the old secret
    /// brings a token back.
    public var tokenGeneration: Int
    /// id_token_signed_response_alg (SPEC 10.1): the key its ID tokens are signed with.
    public var idTokenAlg: SignatureAlgorithm
    /// post_logout_redirect_uris (RP-Initiated Logout 1.0 §3.1): exact matches only.
    public var postLogoutRedirectURIs: [String]
    /// backchannel_logout_uri (Back-Channel Logout 1.0 §2.2): where logout tokens are POSTed.
    public var backchannelLogoutURI: String?
    /// backchannel_logout_session_required: logout tokens must carry `sid`.
    public var backchannelLogoutSessionRequired: Bool
    /// jwks (RFC 7591 §2): the public keys a `private_key_jwt` client signs its assertions with.
    public var jwks: JSON?
    /// require_pushed_authorization_requests (RFC 9126 §6): /oauth2/authorize takes only a request_uri from PAR.
    public var requirePushedRequests: Bool
    /// userinfo_signed_response_alg (OIDC Registration §2): userinfo answers as a JWT signed with this algorithm's key; nil: plain JSON.
    public var userinfoAlg: SignatureAlgorithm?
    /// policy_uri and tos_uri (RFC 7591 §2): the client's privacy policy and terms, linked on the consent page.
    public var policyURI: String?
    public var tosURI: String?
    /// dpop_bound_access_tokens (RFC 9449 §5.2): every token request must carry a DPoP proof.
    public var dpopBoundAccessTokens: Bool
    /// Held to the FAPI 2.0 Security Profile (SPEC 10.2): PAR, PKCE S256,
    /// private_key_jwt and DPoP on every request, whatever else is set.
    public var fapi2: Bool

    /// The profile's rules, or the client's own settings.
    public var mustPushRequests: Bool { requirePushedRequests || fapi2 }
    public var mustBindTokens: Bool { dpopBoundAccessTokens || fapi2 }
    public var mustUsePKCE: Bool { isPublic || fapi2 }
    /// Whether JWTs of this algorithm may be the client's: FAPI 2.0 §5.4 allows PS256, ES256 and EdDSA, and
    /// Latchkey has no PS256, so a FAPI 2.0 client's (its DPoP proofs, its tokens) are never RS256.
    public func allows(_ alg: SignatureAlgorithm) -> Bool { !(fapi2 && alg == .rs256) }
    /// What the client's tokens are signed with where `alg` would be (its ID and logout tokens and signed userinfo
    /// as stored, a node of the version before may have stored RS256 during an upgrade; the access-token algorithm):
    /// ES256, always published, where `alg` is not allowed.
    public func signingAlgorithm(_ alg: SignatureAlgorithm) -> SignatureAlgorithm { allows(alg) ? alg : .es256 }

    public init(clientID: String, organizationID: String, isPrimary: Bool = false, name: String, description: String? = nil,
                clientURI: String? = nil, redirectURIs: [String] = [], grantTypes: [GrantType] = [.clientCredentials],
                authMethod: ClientAuthMethod = .clientSecretBasic, scope: [String] = [], accessTokenTTL: Int = 900,
                refreshTokenTTL: Int = 2_592_000, enabled: Bool = true, extraData: JSON = .object([]), attributes: JSON = .object([]),
                createdAt: Int64, updatedAt: Int64? = nil, version: Int = 1, lastUsedAt: Int64? = nil, hasLogo: Bool = false,
                tokenGeneration: Int = 0, idTokenAlg: SignatureAlgorithm = .es256,
                postLogoutRedirectURIs: [String] = [], backchannelLogoutURI: String? = nil, backchannelLogoutSessionRequired: Bool = false,
                jwks: JSON? = nil, requirePushedRequests: Bool = false, userinfoAlg: SignatureAlgorithm? = nil,
                policyURI: String? = nil, tosURI: String? = nil, dpopBoundAccessTokens: Bool = false,
                fapi2: Bool = false) {
        self.clientID = clientID
        self.organizationID = organizationID
        self.isPrimary = isPrimary
        self.name = name
        self.description = description
        self.clientURI = clientURI
        self.redirectURIs = redirectURIs
        self.grantTypes = grantTypes
        self.authMethod = authMethod
        self.scope = scope
        self.accessTokenTTL = accessTokenTTL
        self.refreshTokenTTL = refreshTokenTTL
        self.enabled = enabled
        self.extraData = extraData
        self.attributes = attributes
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
        self.version = version
        self.lastUsedAt = lastUsedAt
        self.hasLogo = hasLogo
        self.tokenGeneration = tokenGeneration
        self.idTokenAlg = idTokenAlg
        self.postLogoutRedirectURIs = postLogoutRedirectURIs
        self.backchannelLogoutURI = backchannelLogoutURI
        self.backchannelLogoutSessionRequired = backchannelLogoutSessionRequired
        self.jwks = jwks
        self.requirePushedRequests = requirePushedRequests
        self.userinfoAlg = userinfoAlg
        self.policyURI = policyURI
        self.tosURI = tosURI
        self.dpopBoundAccessTokens = dpopBoundAccessTokens
        self.fapi2 = fapi2
    }

    public var isPublic: Bool { authMethod == .publicClient }

    /// SPEC 6.4: a client that can ask a user for consent (the consent
    /// screen and the app surface's public reads show only these): enabled,
    /// the authorization_code grant and a redirect URI, never a primary client.
    public var canAskForConsent: Bool {
        !isPrimary && enabled && grantTypes.contains(.authorizationCode) && !redirectURIs.isEmpty
    }
}

/// One secret of a client, as stored: never the secret itself.
public struct ClientSecret: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// Server-generated `lks_…`: HMAC-SHA-256 under the server's pepper.
        case hmac
        /// Caller-chosen password: scrypt.
        case scrypt
    }

    public var id: Int64
    public var clientID: String
    public var kind: Kind
    public var hash: String
    public var createdAt: Int64
    /// nil while current; set when a rotation gave it a grace period.
    public var expiresAt: Int64?

    public init(id: Int64 = 0, clientID: String, kind: Kind, hash: String, createdAt: Int64, expiresAt: Int64? = nil) {
        self.id = id
        self.clientID = clientID
        self.kind = kind
        self.hash = hash
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

public struct SigningKeyRecord: Sendable, Equatable {
    public var kid: String
    public var algorithm: String
    /// PKCS#8 DER, sealed with the KEK when `encrypted`.
    public var privateKey: [UInt8]
    public var encrypted: Bool
    public var publicKey: [UInt8]
    public var createdAt: Int64
    public var retiredAt: Int64?

    public init(kid: String, algorithm: String, privateKey: [UInt8], encrypted: Bool, publicKey: [UInt8], createdAt: Int64, retiredAt: Int64? = nil) {
        self.kid = kid
        self.algorithm = algorithm
        self.privateKey = privateKey
        self.encrypted = encrypted
        self.publicKey = publicKey
        self.createdAt = createdAt
        self.retiredAt = retiredAt
    }
}

public struct User: Sendable, Equatable {
    public var id: String
    public var username: String
    public var email: String?
    public var name: String?
    public var passwordHash: String
    public var createdAt: Int64

    public init(id: String, username: String, email: String?, name: String?, passwordHash: String, createdAt: Int64) {
        self.id = id
        self.username = username
        self.email = email
        self.name = name
        self.passwordHash = passwordHash
        self.createdAt = createdAt
    }
}

/// An audit record: who did what to which target, when, through which
/// surface, under which request id. Never holds a secret.
/// The audit log's bounds (SPEC 6.0: every write is recorded).
public enum AuditLog {
    /// How long an event is kept: a year. Older ones are purged as the organization's later writes are recorded.
    public static let retentionMillis: Int64 = 365 * 86_400_000
    /// The deepest `offset` a read takes; deeper pages are read with `before` (an event id), which costs the
    /// same at any depth (an offset costs a step for every event it skips).
    public static let maxOffset = 10_000
}

public struct AuditEvent: Sendable, Equatable {
    public var id: Int64
    public var organizationID: String?
    public var actor: String
    public var action: String
    public var target: String?
    public var surface: String
    public var requestID: String?
    public var details: JSON
    public var createdAt: Int64

    public init(id: Int64 = 0, organizationID: String?, actor: String, action: String, target: String?, surface: String,
                requestID: String?, details: JSON = .object([]), createdAt: Int64) {
        self.id = id
        self.organizationID = organizationID
        self.actor = actor
        self.action = action
        self.target = target
        self.surface = surface
        self.requestID = requestID
        self.details = details
        self.createdAt = createdAt
    }
}

/// When a client gets a refresh token with its authorization code grant.
public enum RefreshTokenPolicy: Sendable, Equatable {
    /// Only when the user granted `offline_access` (the default).
    case withOfflineAccess
    /// Always (the identity platform's `accessType: OFFLINE`).
    case always

    /// The attribute the policy is kept in (a client's attributes travel through every store and surface unchanged).
    static let attribute = "always_issue_refresh_token"

    /// The policy kept in a client's attributes.
    public init(attributes: JSON) {
        self = attributes[RefreshTokenPolicy.attribute]?.boolValue == true ? .always : .withOfflineAccess
    }

    /// Writes the policy into a client's attributes.
    public func store(in attributes: inout JSON) {
        attributes.set(RefreshTokenPolicy.attribute, .bool(self == .always))
    }
}

extension Client {
    public var refreshTokenPolicy: RefreshTokenPolicy { RefreshTokenPolicy(attributes: attributes) }
}

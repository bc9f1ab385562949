/// Why a registry operation was refused: a closed set, so that every
/// surface's renderer handles every case (the compiler checks it). Each
/// surface renders these in its own shape; the rule behind each lives only
/// here.
public enum RegistryError: Error, Equatable {
    /// Unknown, or in another organization: the two are indistinguishable.
    case notFound
    case invalid([FieldError])
    case forbidden(Forbidden)
    case conflict(Conflict)
    /// `If-Match` named another version.
    case preconditionFailed

    /// What the caller may not do (403).
    public enum Forbidden: Equatable, Sendable {
        /// The action is reserved for the organization's primary client.
        case primaryOnly
        /// Another client tried to change the primary client.
        case primaryChangesItself
        /// The caller's token does not hold this scope, so it cannot grant it (SPEC 6.0).
        case privilegedScope(String)
        /// The client belongs to another organization: only `locate` says so
        /// (the integration surface's AU0008); everywhere else it is `notFound`.
        case otherOrganization
    }

    /// What the current state refuses (409).
    public enum Conflict: Equatable, Sendable {
        case primaryUndeletable
        case primaryMustStayEnabled
        case primaryMustStayConfidential
        /// The primary client cannot remove its own client_credentials grant or management scopes.
        case primaryLockout
        case limitReached
        /// A `version` field named another version.
        case staleVersion
        case clientIDTaken
        case publicClientHasNoSecret
        /// A client whose id takes a user's or an organization's form (registered before the prefixes were reserved) stays disabled.
        case reservedClientID
    }

    public static let primaryOnly = RegistryError.forbidden(.primaryOnly)
    public static let primaryUndeletable = RegistryError.conflict(.primaryUndeletable)
    public static let limitReached = RegistryError.conflict(.limitReached)
    public static let primaryLockout = RegistryError.conflict(.primaryLockout)
    public static let staleVersion = RegistryError.conflict(.staleVersion)

    public static func privilegedScope(_ scope: String) -> RegistryError { .forbidden(.privilegedScope(scope)) }
}

extension RegistryError.Forbidden {
    /// The native API's error code.
    public var code: String {
        switch self {
        case .primaryOnly, .primaryChangesItself: return "primary_only"
        case .privilegedScope: return "privileged_scope"
        case .otherOrganization: return "other_organization"
        }
    }

    public var message: String {
        switch self {
        case .primaryOnly: return "This action is reserved for the primary client."
        case .primaryChangesItself: return "Only the primary client may change itself."
        case let .privilegedScope(scope): return "You do not have access to this scope: '\(scope)'"
        case .otherOrganization: return "The client belongs to a different organization."
        }
    }
}

extension RegistryError.Conflict {
    /// The native API's error code.
    public var code: String {
        switch self {
        case .primaryUndeletable, .primaryMustStayEnabled, .primaryMustStayConfidential: return "primary_client"
        case .primaryLockout: return "primary_lockout"
        case .limitReached: return "client_limit_reached"
        case .staleVersion: return "version_mismatch"
        case .clientIDTaken: return "client_id_taken"
        case .publicClientHasNoSecret: return "public_client"
        case .reservedClientID: return "reserved_client_id"
        }
    }

    public var message: String {
        switch self {
        case .primaryUndeletable: return "The primary client cannot be deleted."
        case .primaryMustStayEnabled: return "The primary client cannot be disabled."
        case .primaryMustStayConfidential: return "The primary client must stay confidential."
        case .primaryLockout: return "The primary client cannot remove its own client_credentials grant or management scopes."
        case .limitReached: return "The organization's client limit is reached."
        case .staleVersion: return "The client was changed since that version."
        case .clientIDTaken: return "A client with this client_id already exists."
        case .publicClientHasNoSecret: return "This client has no secret: it is public or authenticates with private_key_jwt."
        case .reservedClientID: return "This client's id takes a user's or an organization's form (usr-, org-): it stays disabled. Register a new client."
        }
    }
}

import Common

/// How a client presented itself at the token, introspection or revocation
/// endpoint (RFC 6749 §2.3.1).
public enum PresentedCredentials: Equatable, Sendable {
    case basic(clientID: String, secret: String)
    case post(clientID: String, secret: String)
    case publicClient(clientID: String)
    case none

    public var usedBasic: Bool { if case .basic = self { return true } else { return false } }
}

/// Authenticates OAuth clients (SPEC 4.3).
public struct ClientAuthenticator {
    let env: Environment
    let store: Store
    let hasher: SecretHasher
    let cache: VerifiedSecretCache?

    public init(env: Environment, store: Store, hasher: SecretHasher, cache: VerifiedSecretCache?) {
        self.env = env
        self.store = store
        self.hasher = hasher
        self.cache = cache
    }

    /// Returns the authenticated client, or throws `invalid_client` (401,
    /// with a Basic challenge when Basic was used). Unknown client, wrong
    /// secret, wrong method and disabled client all look the same.
    public func authenticate(_ credentials: PresentedCredentials, allowPublic: Bool, enforceMethod: Bool = true) throws -> Client {
        let basic = credentials.usedBasic
        switch credentials {
        case .none:
            throw OAuthError.invalidClient("Client authentication is required.", basic: true)
        case let .publicClient(clientID):
            guard allowPublic, let client = try store.client(clientID), client.isPublic, client.enabled else {
                throw OAuthError.invalidClient(detail: "public client rejected")
            }
            return client
        case let .basic(clientID, secret), let .post(clientID, secret):
            guard let client = try store.client(clientID) else {
                // Spend comparable time on unknown ids so they cannot be told apart.
                _ = hasher.hmacHash(secret)
                throw OAuthError.invalidClient(basic: basic, detail: "unknown client")
            }
            let secrets = try store.secrets(clientID: clientID)
            let ok = hasher.verify(secret, against: secrets, now: env.now(), cache: cache)
            guard ok, !client.isPublic, client.enabled else {
                throw OAuthError.invalidClient(basic: basic, detail: "bad secret or disabled client")
            }
            if enforceMethod && !env.acceptAnySecretMethod {
                let method = basic ? "client_secret_basic" : "client_secret_post"
                guard client.authMethod == method else {
                    throw OAuthError.invalidClient(basic: basic, detail: "client registered for \(client.authMethod)")
                }
            }
            return client
        }
    }
}

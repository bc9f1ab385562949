import Common

/// RFC 6749 §4.4: "The client can request an access token using only its
/// client credentials". An omitted scope grants every scope the client
/// holds; a scope it does not hold is `invalid_scope`. Only reads: the
/// client, its secrets and the key ring come from the read transaction of
/// its authentication.
public struct ClientCredentialsGrant: Grant {
    public let type = GrantType.clientCredentials
    public let allowsPublicClients = false

    public init() {}
    public var readsOnly: Bool { true }

    public func exchange(_ request: TokenRequest, client: Client, service: TokenService) throws -> TokenResponse {
        var scope = client.scope
        if let requestedScope = request["scope"] {
            guard let requested = Scopes.parse(requestedScope) else { throw OAuthError.invalidScope("The scope parameter is malformed.") }
            guard requested.allSatisfy(client.scope.contains) else { throw OAuthError.invalidScope() }
            scope = requested
        }
        let issued = try service.tokens.issue(client: client, subject: client.clientID, scope: scope, ttl: client.accessTokenTTL, jkt: request.dpopJKT)
        var response = TokenResponse(accessToken: issued.token, expiresIn: client.accessTokenTTL, scope: scope)
        response.dpopBound = request.dpopJKT != nil
        return response
    }

    /// Records when a client last obtained a token, at most once a day, so
    /// the hot path stays read-only.
    public func issued(to client: Client, service: TokenService) throws {
        let now = service.env.now()
        if let last = client.lastUsedAt, now - last < 86_400_000 { return }
        try service.store.write { try service.store.touchClient(client.clientID, lastUsedAt: now) }
    }
}

extension GrantType {
    public static let clientCredentials = GrantType(rawValue: "client_credentials")
}

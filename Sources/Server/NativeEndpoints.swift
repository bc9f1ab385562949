import Common
import HTTPCore
import OAuth

/// The native management API (`/api/v1`), SPEC 6.1.
enum NativeEndpoints {
    /// The bearer token's client, which must hold one of `scopes`.
    static func caller(_ request: Request, _ ctx: RequestContext, scopes: [String]) throws -> Client {
        try ctx.tokens.authenticateBearer(bearerToken(request), requiredScope: scopes).client
    }

    static func bearerToken(_ request: Request) -> String? {
        guard let header = request.headers["Authorization"] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return parts[1].trimmingSpaces()
    }

    static func organization(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let client = try caller(request, ctx, scopes: ["clients:read"])
        guard let org = try ctx.store.organization(client.organizationID) else { throw APIProblem.notFound() }
        return .json([
            "organization_id": .string(org.id), "name": .string(org.name), "primary_client_id": JSON(org.primaryClientID),
            "client_limit": JSON(org.clientLimit), "created_at": .string(Timestamp.rfc3339(millis: org.createdAt)),
        ])
    }

    static func currentClient(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let client = try caller(request, ctx, scopes: [])
        return .json(ClientRepresentation.json(client, issuer: ctx.env.issuer))
    }
}

/// The native JSON shape of a client (SPEC 6.1).
enum ClientRepresentation {
    static func json(_ c: Client, issuer: String) -> JSON {
        var members: [(String, JSON)] = [
            ("client_id", .string(c.clientID)), ("organization_id", .string(c.organizationID)), ("primary", .bool(c.isPrimary)),
            ("client_name", .string(c.name)),
        ]
        if let d = c.description { members.append(("description", .string(d))) }
        if let u = c.clientURI { members.append(("client_uri", .string(u))) }
        if c.hasLogo { members.append(("logo_uri", .string("\(issuer)/api/v1/clients/\(c.clientID)/logo"))) }
        members += [
            ("redirect_uris", JSON(c.redirectURIs)), ("grant_types", JSON(c.grantTypes)),
            ("token_endpoint_auth_method", .string(c.authMethod)), ("scope", .string(Scopes.join(c.scope))),
            ("access_token_ttl", JSON(c.accessTokenTTL)), ("refresh_token_ttl", JSON(c.refreshTokenTTL)),
            ("enabled", .bool(c.enabled)), ("extra_data", c.extraData),
            ("created_at", .string(Timestamp.rfc3339(millis: c.createdAt))), ("updated_at", .string(Timestamp.rfc3339(millis: c.updatedAt))),
            ("version", JSON(c.version)),
        ]
        return .object(members)
    }
}

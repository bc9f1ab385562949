import Common
import HTTPCore
import Imaging
import OAuth

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
            ("redirect_uris", JSON(c.redirectURIs)), ("grant_types", JSON(c.grantTypes.map(\.rawValue))),
            ("token_endpoint_auth_method", .string(c.authMethod.rawValue)), ("scope", .string(Scopes.join(c.scope))),
            ("access_token_ttl", JSON(c.accessTokenTTL)), ("refresh_token_ttl", JSON(c.refreshTokenTTL)),
            ("enabled", .bool(c.enabled)), ("extra_data", c.extraData), ("id_token_signed_response_alg", .string(c.idTokenAlg.rawValue)),
            ("created_at", .string(Timestamp.rfc3339(millis: c.createdAt))), ("updated_at", .string(Timestamp.rfc3339(millis: c.updatedAt))),
            ("version", JSON(c.version)),
        ]
        return .object(members + ClientMetadata.members(c))
    }
}

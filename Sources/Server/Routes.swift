import HTTPCore

/// The route table: every path Latchkey answers, in one place.
enum Routes {
    static let oauthBodyLimit = 16 * 1024
    static let apiBodyLimit = 1024 * 1024
    static let logoBodyLimit = 2 * 1024 * 1024

    static func register(_ r: inout Router<Endpoint>) {
        func add(_ method: String, _ path: String, _ surface: Surface, maxBody: Int = apiBodyLimit, _ handler: @escaping Handler) {
            r.add(method, path, Endpoint(surface: surface, maxBody: maxBody, handler: handler, pattern: path))
        }
        add("GET", "/healthz", .system, maxBody: 0, SystemEndpoints.health)
        add("GET", "/metrics", .system, maxBody: 0, SystemEndpoints.metrics)

        add("GET", "/.well-known/openid-configuration", .oauth, maxBody: 0, DiscoveryEndpoints.configuration)
        add("GET", "/.well-known/oauth-authorization-server", .oauth, maxBody: 0, DiscoveryEndpoints.configuration)
        add("GET", "/oauth2/jwks", .oauth, maxBody: 0, DiscoveryEndpoints.jwks)
        add("POST", "/oauth2/token", .oauth, maxBody: oauthBodyLimit, TokenEndpoint.token)
        add("POST", "/oauth2/introspect", .oauth, maxBody: oauthBodyLimit, TokenEndpoint.introspect)
        add("POST", "/oauth2/revoke", .oauth, maxBody: oauthBodyLimit, TokenEndpoint.revoke)

        add("GET", "/oauth2/authorize", .oauth, maxBody: 0, UserEndpoints.authorize)
        add("POST", "/oauth2/authorize", .oauth, maxBody: oauthBodyLimit, UserEndpoints.authorize)
        add("GET", "/oauth2/authorize/continue", .oauth, maxBody: 0, UserEndpoints.authorizeContinue)
        add("GET", "/oauth2/userinfo", .bearer, maxBody: 0, UserEndpoints.userinfo)
        add("POST", "/oauth2/userinfo", .bearer, maxBody: oauthBodyLimit, UserEndpoints.userinfo)

        add("POST", "/api/v1/session", .native, maxBody: oauthBodyLimit, UserEndpoints.login)
        add("GET", "/api/v1/session", .native, maxBody: 0, UserEndpoints.currentSession)
        add("DELETE", "/api/v1/session", .native, maxBody: 0, UserEndpoints.logout)
        add("GET", "/api/v1/authorization-requests/{id}", .native, maxBody: 0, UserEndpoints.authorizationRequest)
        add("POST", "/api/v1/authorization-requests/{id}/accept", .native, maxBody: oauthBodyLimit, UserEndpoints.accept)
        add("POST", "/api/v1/authorization-requests/{id}/reject", .native, maxBody: oauthBodyLimit, UserEndpoints.reject)
        add("GET", "/api/v1/me/connections", .native, maxBody: 0, UserEndpoints.listConnections)
        add("GET", "/api/v1/me/connections/{client_id}", .native, maxBody: 0, UserEndpoints.getConnection)
        add("DELETE", "/api/v1/me/connections/{client_id}", .native, maxBody: 0, UserEndpoints.deleteConnection)

        add("POST", "/external/v1/oauth/client", .integration, IntegrationSurface.create)
        add("PUT", "/external/v1/oauth/client", .integration, IntegrationSurface.update)
        add("GET", "/external/v1/oauth/client", .integration, maxBody: 0, IntegrationSurface.list)
        add("PUT", "/external/v1/oauth/client/password-reset", .integration, IntegrationSurface.passwordReset)
        add("GET", "/external/v1/oauth/client/current", .integration, maxBody: 0, IntegrationSurface.current)
        add("PUT", "/external/v1/oauth/password", .integration, IntegrationSurface.ownPassword)
        add("DELETE", "/external/v1/oauth/client/{clientId}", .integration, maxBody: 0, IntegrationSurface.delete)

        add("GET", "/api/oauth/app/id/{client_id}", .app, maxBody: 0, AppSurface.get)
        add("GET", "/api/oauth/app/id/{client_id}/image", .app, maxBody: 0, AppSurface.image)
        add("GET", "/api/oauth/app/ids", .app, maxBody: 0, AppSurface.ids)
        add("GET", "/api/oauth/app", .app, maxBody: 0, AppSurface.list)
        add("POST", "/api/oauth/app", .app, AppSurface.create)
        add("PUT", "/api/oauth/app/id/{client_id}", .app, AppSurface.update)
        add("PUT", "/api/oauth/app/id/{client_id}/image", .app, maxBody: logoBodyLimit, AppSurface.putImage)
        add("PUT", "/api/oauth/app/id/{client_id}/rotate", .app, maxBody: oauthBodyLimit, AppSurface.rotate)
        add("DELETE", "/api/oauth/app/id/{client_id}", .app, maxBody: 0, AppSurface.delete)
        add("GET", "/api/oauth/openid-configuration", .oauth, maxBody: 0, DiscoveryEndpoints.configuration)
        add("GET", "/api/oauth/jwks", .oauth, maxBody: 0, DiscoveryEndpoints.jwks)
        add("POST", "/api/oauth/token", .oauth, maxBody: oauthBodyLimit, TokenEndpoint.token)
        add("GET", "/api/oauth/userinfo", .bearer, maxBody: 0, UserEndpoints.userinfo)
        add("POST", "/api/oauth/userinfo", .bearer, maxBody: oauthBodyLimit, UserEndpoints.userinfo)
        add("POST", "/api/oauth/auth/code", .app, maxBody: oauthBodyLimit, AppSurface.authCode)
        add("GET", "/api/oauth/connection", .app, maxBody: 0, AppSurface.listConnections)
        add("GET", "/api/oauth/connection/id/{client_id}", .app, maxBody: 0, AppSurface.getConnection)
        add("DELETE", "/api/oauth/connection/id/{client_id}", .app, maxBody: 0, AppSurface.deleteConnection)

        add("POST", "/v3/oauth-clients", .identity, IdentitySurface.create)
        add("GET", "/v3/oauth-clients", .identity, maxBody: 0, IdentitySurface.list)
        add("GET", "/v3/oauth-clients/{id}", .identity, maxBody: 0, IdentitySurface.get)
        add("PATCH", "/v3/oauth-clients/{id}", .identity, IdentitySurface.patch)
        add("DELETE", "/v3/oauth-clients/{id}", .identity, maxBody: 0, IdentitySurface.delete)

        add("POST", "/uc/resources/oauthclient", .uc, UpstreamSurface.create)
        add("PUT", "/uc/resources/oauthclient", .uc, UpstreamSurface.update)
        add("GET", "/uc/resources/oauthclient", .uc, maxBody: 0, UpstreamSurface.get)
        add("DELETE", "/uc/resources/oauthclient", .uc, maxBody: 0, UpstreamSurface.delete)
        add("GET", "/uc/resources/oauthclient/list", .uc, maxBody: 0, UpstreamSurface.list)

        add("GET", "/api/v1/organization", .native, maxBody: 0, NativeEndpoints.organization)
        add("GET", "/api/v1/audit", .native, maxBody: 0, NativeEndpoints.audit)
        add("POST", "/api/v1/clients", .native, NativeEndpoints.createClient)
        add("GET", "/api/v1/clients", .native, maxBody: 0, NativeEndpoints.listClients)
        add("GET", "/api/v1/clients/current", .native, maxBody: 0, NativeEndpoints.currentClient)
        add("POST", "/api/v1/clients/current/secret", .native, maxBody: oauthBodyLimit, NativeEndpoints.rotateOwnSecret)
        add("GET", "/api/v1/clients/{id}", .native, maxBody: 0, NativeEndpoints.getClient)
        add("PATCH", "/api/v1/clients/{id}", .native, NativeEndpoints.patchClient)
        add("PUT", "/api/v1/clients/{id}", .native, NativeEndpoints.putClient)
        add("DELETE", "/api/v1/clients/{id}", .native, maxBody: 0, NativeEndpoints.deleteClient)
        add("POST", "/api/v1/clients/{id}/secret", .native, maxBody: oauthBodyLimit, NativeEndpoints.rotateSecret)
        add("PUT", "/api/v1/clients/{id}/logo", .native, maxBody: logoBodyLimit, NativeEndpoints.putLogo)
        add("GET", "/api/v1/clients/{id}/logo", .native, maxBody: 0, NativeEndpoints.getLogo)
        add("DELETE", "/api/v1/clients/{id}/logo", .native, maxBody: 0, NativeEndpoints.deleteLogo)
    }
}

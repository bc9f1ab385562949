import HTTPCore

/// The route table: every path Latchkey answers, in one place.
enum Routes {
    static let oauthBodyLimit = 16 * 1024
    static let apiBodyLimit = 1024 * 1024
    static let logoBodyLimit = 2 * 1024 * 1024

    static func register(_ r: inout Router<Endpoint>) {
        func add(_ method: HTTPRequest.Method, _ path: String, _ surface: Surface, maxBody: Int = apiBodyLimit, cors: CrossOrigin = .none,
                 _ handler: @escaping Handler) {
            r.add(method, path, Endpoint(surface: surface, maxBody: maxBody, handler: handler, pattern: path, crossOrigin: cors))
        }
        add(.get, "/healthz", .system, maxBody: 0, SystemEndpoints.health)
        add(.get, "/metrics", .system, maxBody: 0, SystemEndpoints.metrics)

        add(.get, "/.well-known/openid-configuration", .oauth, maxBody: 0, cors: .anyone, DiscoveryEndpoints.configuration)
        add(.get, "/.well-known/oauth-authorization-server", .oauth, maxBody: 0, cors: .anyone, DiscoveryEndpoints.configuration)
        add(.get, "/oauth2/jwks", .oauth, maxBody: 0, cors: .anyone, DiscoveryEndpoints.jwks)
        add(.post, "/oauth2/token", .oauth, maxBody: oauthBodyLimit, cors: .clientOrigins, TokenEndpoint.token)
        add(.post, "/oauth2/introspect", .oauth, maxBody: oauthBodyLimit, TokenEndpoint.introspect)
        add(.post, "/oauth2/revoke", .oauth, maxBody: oauthBodyLimit, cors: .clientOrigins, TokenEndpoint.revoke)
        add(.post, "/oauth2/par", .oauth, maxBody: oauthBodyLimit, PushedRequestEndpoint.push)
        add(.post, "/oauth2/device_authorization", .oauth, maxBody: oauthBodyLimit, DeviceEndpoints.authorize)
        add(.get, "/oauth2/logout", .oauth, maxBody: 0, LogoutEndpoints.logout)
        add(.post, "/oauth2/logout", .oauth, maxBody: oauthBodyLimit, LogoutEndpoints.logout)
        add(.post, "/oauth2/register", .registration, maxBody: oauthBodyLimit, RegistrationEndpoints.register)
        add(.get, "/oauth2/register/{client_id}", .registration, maxBody: 0, RegistrationEndpoints.read)
        add(.put, "/oauth2/register/{client_id}", .registration, maxBody: oauthBodyLimit, RegistrationEndpoints.replace)
        add(.delete, "/oauth2/register/{client_id}", .registration, maxBody: 0, RegistrationEndpoints.delete)

        add(.get, "/oauth2/authorize", .oauth, maxBody: 0, UserEndpoints.authorize)
        add(.post, "/oauth2/authorize", .oauth, maxBody: oauthBodyLimit, UserEndpoints.authorize)
        add(.get, "/oauth2/authorize/continue", .oauth, maxBody: 0, UserEndpoints.authorizeContinue)
        add(.get, "/oauth2/userinfo", .bearer, maxBody: 0, cors: .clientOrigins, UserEndpoints.userinfo)
        add(.post, "/oauth2/userinfo", .bearer, maxBody: oauthBodyLimit, cors: .clientOrigins, UserEndpoints.userinfo)

        add(.post, "/api/v1/session", .native, maxBody: oauthBodyLimit, UserEndpoints.login)
        add(.get, "/api/v1/session", .native, maxBody: 0, UserEndpoints.currentSession)
        add(.delete, "/api/v1/session", .native, maxBody: 0, UserEndpoints.logout)
        add(.get, "/api/v1/authorization-requests/{id}", .native, maxBody: 0, UserEndpoints.authorizationRequest)
        add(.post, "/api/v1/authorization-requests/{id}/accept", .native, maxBody: oauthBodyLimit, UserEndpoints.accept)
        add(.post, "/api/v1/authorization-requests/{id}/reject", .native, maxBody: oauthBodyLimit, UserEndpoints.reject)
        add(.post, "/api/v1/device", .native, maxBody: oauthBodyLimit, DeviceEndpoints.enter)
        add(.get, "/api/v1/me/profile", .native, maxBody: 0, ProfileEndpoints.get)
        add(.put, "/api/v1/me/profile", .native, maxBody: oauthBodyLimit, ProfileEndpoints.put)
        add(.get, "/api/v1/me/connections", .native, maxBody: 0, UserEndpoints.listConnections)
        add(.get, "/api/v1/me/connections/{client_id}", .native, maxBody: 0, UserEndpoints.getConnection)
        add(.delete, "/api/v1/me/connections/{client_id}", .native, maxBody: 0, UserEndpoints.deleteConnection)

        add(.post, "/external/v1/oauth/client", .integration, IntegrationSurface.create)
        add(.put, "/external/v1/oauth/client", .integration, IntegrationSurface.update)
        add(.get, "/external/v1/oauth/client", .integration, maxBody: 0, IntegrationSurface.list)
        add(.put, "/external/v1/oauth/client/password-reset", .integration, IntegrationSurface.passwordReset)
        add(.get, "/external/v1/oauth/client/current", .integration, maxBody: 0, IntegrationSurface.current)
        add(.put, "/external/v1/oauth/password", .integration, IntegrationSurface.ownPassword)
        add(.delete, "/external/v1/oauth/client/{clientId}", .integration, maxBody: 0, IntegrationSurface.delete)

        add(.get, "/api/oauth/app/id/{client_id}", .app, maxBody: 0, AppSurface.get)
        add(.get, "/api/oauth/app/id/{client_id}/image", .app, maxBody: 0, AppSurface.image)
        add(.get, "/api/oauth/app/ids", .app, maxBody: 0, AppSurface.ids)
        add(.get, "/api/oauth/app", .app, maxBody: 0, AppSurface.list)
        add(.post, "/api/oauth/app", .app, AppSurface.create)
        add(.put, "/api/oauth/app/id/{client_id}", .app, AppSurface.update)
        add(.put, "/api/oauth/app/id/{client_id}/image", .app, maxBody: logoBodyLimit, AppSurface.putImage)
        add(.put, "/api/oauth/app/id/{client_id}/rotate", .app, maxBody: oauthBodyLimit, AppSurface.rotate)
        add(.delete, "/api/oauth/app/id/{client_id}", .app, maxBody: 0, AppSurface.delete)
        add(.get, "/api/oauth/openid-configuration", .oauth, maxBody: 0, cors: .anyone, DiscoveryEndpoints.configuration)
        add(.get, "/api/oauth/jwks", .oauth, maxBody: 0, cors: .anyone, DiscoveryEndpoints.jwks)
        add(.post, "/api/oauth/token", .oauth, maxBody: oauthBodyLimit, cors: .clientOrigins, TokenEndpoint.token)
        add(.get, "/api/oauth/userinfo", .bearer, maxBody: 0, cors: .clientOrigins, UserEndpoints.userinfo)
        add(.post, "/api/oauth/userinfo", .bearer, maxBody: oauthBodyLimit, cors: .clientOrigins, UserEndpoints.userinfo)
        add(.post, "/api/oauth/auth/code", .app, maxBody: oauthBodyLimit, AppSurface.authCode)
        add(.get, "/api/oauth/connection", .app, maxBody: 0, AppSurface.listConnections)
        add(.get, "/api/oauth/connection/id/{client_id}", .app, maxBody: 0, AppSurface.getConnection)
        add(.delete, "/api/oauth/connection/id/{client_id}", .app, maxBody: 0, AppSurface.deleteConnection)

        add(.post, "/v3/oauth-clients", .identity, IdentitySurface.create)
        add(.get, "/v3/oauth-clients", .identity, maxBody: 0, IdentitySurface.list)
        add(.get, "/v3/oauth-clients/{id}", .identity, maxBody: 0, IdentitySurface.get)
        add(.patch, "/v3/oauth-clients/{id}", .identity, IdentitySurface.patch)
        add(.delete, "/v3/oauth-clients/{id}", .identity, maxBody: 0, IdentitySurface.delete)

        add(.post, "/uc/resources/oauthclient", .upstream, UpstreamSurface.create)
        add(.put, "/uc/resources/oauthclient", .upstream, UpstreamSurface.update)
        add(.get, "/uc/resources/oauthclient", .upstream, maxBody: 0, UpstreamSurface.get)
        add(.delete, "/uc/resources/oauthclient", .upstream, maxBody: 0, UpstreamSurface.delete)
        add(.get, "/uc/resources/oauthclient/list", .upstream, maxBody: 0, UpstreamSurface.list)

        add(.get, "/api/v1/organization", .native, maxBody: 0, NativeEndpoints.organization)
        add(.get, "/api/v1/audit", .native, maxBody: 0, NativeEndpoints.audit)
        add(.post, "/api/v1/clients", .native, NativeEndpoints.createClient)
        add(.get, "/api/v1/clients", .native, maxBody: 0, NativeEndpoints.listClients)
        add(.get, "/api/v1/clients/current", .native, maxBody: 0, NativeEndpoints.currentClient)
        add(.post, "/api/v1/clients/current/secret", .native, maxBody: oauthBodyLimit, NativeEndpoints.rotateOwnSecret)
        add(.get, "/api/v1/clients/{id}", .native, maxBody: 0, NativeEndpoints.getClient)
        add(.patch, "/api/v1/clients/{id}", .native, NativeEndpoints.patchClient)
        add(.put, "/api/v1/clients/{id}", .native, NativeEndpoints.putClient)
        add(.delete, "/api/v1/clients/{id}", .native, maxBody: 0, NativeEndpoints.deleteClient)
        add(.post, "/api/v1/clients/{id}/secret", .native, maxBody: oauthBodyLimit, NativeEndpoints.rotateSecret)
        add(.put, "/api/v1/clients/{id}/logo", .native, maxBody: logoBodyLimit, NativeEndpoints.putLogo)
        add(.get, "/api/v1/clients/{id}/logo", .native, maxBody: 0, NativeEndpoints.getLogo)
        add(.delete, "/api/v1/clients/{id}/logo", .native, maxBody: 0, NativeEndpoints.deleteLogo)
    }
}

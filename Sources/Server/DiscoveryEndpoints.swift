import Common
import Cryptography
import HTTPCore
import OAuth

/// OpenID Connect Discovery 1.0 §3 and RFC 8414 §2 (one document at both
/// well-known paths), and the JWK Set (RFC 7517 §5).
enum DiscoveryEndpoints {
    /// What the code flow can grant (SPEC 10.1): never the management scopes,
    /// which only client_credentials tokens carry.
    static let scopes = ["openid", "profile", "email", "phone", "address", "offline_access", "connections:read", "connections:write"]

    /// `algorithms`: those with a current key (SPEC 10.1: discovery lists exactly those).
    static func document(issuer: String, algorithms: [SignatureAlgorithm]) -> JSON {
        [
            "issuer": .string(issuer),
            "authorization_endpoint": .string(issuer + "/oauth2/authorize"),
            "token_endpoint": .string(issuer + "/oauth2/token"),
            "userinfo_endpoint": .string(issuer + "/oauth2/userinfo"),
            "jwks_uri": .string(issuer + "/oauth2/jwks"),
            "introspection_endpoint": .string(issuer + "/oauth2/introspect"),
            "revocation_endpoint": .string(issuer + "/oauth2/revoke"),
            "registration_endpoint": .string(issuer + "/oauth2/register"),
            "pushed_authorization_request_endpoint": .string(issuer + "/oauth2/par"),
            "device_authorization_endpoint": .string(issuer + "/oauth2/device_authorization"),
            "dpop_signing_alg_values_supported": JSON(DPoP.algorithms.map(\.rawValue)),
            "require_pushed_authorization_requests": false,
            "end_session_endpoint": .string(issuer + "/oauth2/logout"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": JSON(GrantType.known.map(\.rawValue)),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": JSON(algorithms.map(\.rawValue)),
            "userinfo_signing_alg_values_supported": JSON(algorithms.map(\.rawValue)),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            // A public client revokes its own tokens with its client_id alone (RFC 7009 §2.1).
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
            "introspection_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
            "revocation_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": JSON(scopes),
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "azp", "at_hash", "amr", "acr", "sid", "name", "given_name",
                                 "family_name", "preferred_username", "locale", "zoneinfo", "email", "email_verified", "phone_number",
                                 "phone_number_verified", "address"],
            "prompt_values_supported": ["none", "login", "consent", "select_account"],
            "authorization_response_iss_parameter_supported": true,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "claims_parameter_supported": true,
            "acr_values_supported": [.string(ClaimsRequest.passwordACR)],
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
        ]
    }

    static func configuration(_ request: Request, _ ctx: RequestContext) throws -> Response {
        var response = Response.json(document(issuer: ctx.env.issuer, algorithms: try ctx.keys.algorithms()))
        response.headers[.cacheControl] = "public, max-age=3600"
        response.headers[.accessControlAllowOrigin] = "*"
        return response
    }

    /// Cacheable briefly: a rotation publishes the new key at once, and
    /// clients refetch on an unknown `kid`. Served as `application/json`,
    /// what RP libraries expect; as `application/jwk-set+json` (RFC 7517
    /// §8.5.1) to a caller whose Accept asks for it.
    static func jwks(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let asked = request.headers.value(.accept)?.lowercased().contains("application/jwk-set+json") == true
        var response = Response.json(try ctx.keys.jwkSet(), contentType: asked ? "application/jwk-set+json" : "application/json")
        response.headers[.vary] = "Accept"
        response.headers[.cacheControl] = "public, max-age=300"
        response.headers[.accessControlAllowOrigin] = "*"
        return response
    }
}

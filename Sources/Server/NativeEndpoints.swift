import Common
import HTTPCore
import Imaging
import OAuth

/// The native management API (`/api/v1`), SPEC 6.1. Every rule lives in
/// `ClientRegistry`; this file translates JSON and HTTP to and from it.
enum NativeEndpoints {

    /// A management caller of the native API (`EndpointKit.caller`).
    static func caller(_ request: Request, _ ctx: RequestContext, scopes: [String]) throws -> Caller {
        try EndpointKit.caller(request, ctx, scopes: scopes, surface: .native)
    }

    // MARK: Bodies

    static let writableFields = ["client_name", "description", "client_uri", "redirect_uris", "grant_types", "token_endpoint_auth_method",
                                 "scope", "access_token_ttl", "refresh_token_ttl", "enabled", "extra_data", "id_token_signed_response_alg",
                                 "post_logout_redirect_uris"]
    static let readOnlyFields = ["organization_id", "primary", "logo_uri", "created_at", "updated_at", "client_secret"]

    /// Refuses read-only and unknown members (400), never ignores them.
    static func checkMembers(_ members: [(String, JSON)], allowClientID: Bool) throws {
        var errors: [FieldError] = []
        for (key, _) in members {
            if key == "client_id" && allowClientID { continue }
            if key == "version" || writableFields.contains(key) { continue }
            if readOnlyFields.contains(key) || key == "client_id" {
                errors.append(FieldError(key, "is read-only"))
            } else {
                errors.append(FieldError(key, "is not a known field"))
            }
        }
        if !errors.isEmpty {
            let readOnly = errors.contains { $0.message == "is read-only" }
            throw APIProblem(status: 400, code: readOnly ? "read_only_field" : "unknown_field", title: "Invalid request body",
                             detail: errors.map { "\($0.field) \($0.message)" }.joined(separator: "; "),
                             fieldErrors: errors.map { ($0.field, $0.message) })
        }
    }

    /// The writable fields as JSON: the base a merge patch applies to.
    static func writableJSON(_ c: Client) -> JSON {
        var members: [(String, JSON)] = [("client_name", .string(c.name))]
        if let d = c.description { members.append(("description", .string(d))) }
        if let u = c.clientURI { members.append(("client_uri", .string(u))) }
        members += [
            ("redirect_uris", JSON(c.redirectURIs)), ("grant_types", JSON(c.grantTypes.map(\.rawValue))), ("token_endpoint_auth_method", .string(c.authMethod.rawValue)),
            ("scope", .string(Scopes.join(c.scope))), ("access_token_ttl", JSON(c.accessTokenTTL)), ("refresh_token_ttl", JSON(c.refreshTokenTTL)),
            ("enabled", .bool(c.enabled)), ("extra_data", c.extraData), ("id_token_signed_response_alg", .string(c.idTokenAlg.rawValue)),
            ("post_logout_redirect_uris", JSON(c.postLogoutRedirectURIs)),
        ]
        return .object(members)
    }

    /// Builds a spec from a (complete) body, defaults for what is omitted;
    /// wrong types are field errors.
    static func spec(from body: JSON, attributes: JSON = .object([])) throws -> ClientSpec {
        var errors: [FieldError] = []
        func string(_ key: String, required: Bool = false) -> String? {
            switch body[key] {
            case nil, .null?:
                if required { errors.append(FieldError(key, "is required")) }
                return nil
            case let .string(s)?: return s
            case let other?:
                errors.append(FieldError(key, "must be a string, not \(other.typeName)"))
                return nil
            }
        }
        func strings(_ key: String) -> [String]? {
            guard let value = body[key], !value.isNull else { return nil }
            guard let items = value.arrayValue else { errors.append(FieldError(key, "must be an array of strings")); return nil }
            var out: [String] = []
            for (i, item) in items.enumerated() {
                guard let s = item.stringValue else { errors.append(FieldError("\(key)[\(i)]", "must be a string")); continue }
                out.append(s)
            }
            return out
        }
        func int(_ key: String) -> Int? {
            guard let value = body[key], !value.isNull else { return nil }
            guard case let .int(i) = value, let v = Int(exactly: i) else {
                errors.append(FieldError(key, "must be an integer"))
                return nil
            }
            return v
        }
        let clientID = string("client_id")
        let name = string("client_name", required: true) ?? ""
        let description = string("description")
        let clientURI = string("client_uri")
        let redirectURIs = strings("redirect_uris") ?? []
        let grantTypes = strings("grant_types")
        let method = string("token_endpoint_auth_method") ?? "client_secret_basic"
        var scope: [String] = []
        if let raw = string("scope") {
            if let parsed = Scopes.parse(raw) { scope = parsed } else { errors.append(FieldError("scope", "must be space-separated scope tokens")) }
        }
        let accessTTL = int("access_token_ttl") ?? 900
        let refreshTTL = int("refresh_token_ttl") ?? 2_592_000
        let idTokenAlg = string("id_token_signed_response_alg") ?? "ES256"
        let postLogout = strings("post_logout_redirect_uris") ?? []
        var enabled = true
        if let value = body["enabled"], !value.isNull {
            if let b = value.boolValue { enabled = b } else { errors.append(FieldError("enabled", "must be a boolean")) }
        }
        var extra: JSON = .object([])
        if let value = body["extra_data"], !value.isNull {
            if value.objectValue != nil { extra = value } else { errors.append(FieldError("extra_data", "must be a JSON object")) }
        }
        if !errors.isEmpty { throw RegistryError.invalid(errors) }
        return ClientSpec(clientID: clientID, name: name, description: description, clientURI: clientURI, redirectURIs: redirectURIs,
                          grantTypes: grantTypes, authMethod: method, scope: scope, accessTokenTTL: accessTTL, refreshTokenTTL: refreshTTL,
                          enabled: enabled, extraData: extra, attributes: attributes, idTokenAlg: idTokenAlg,
                          postLogoutRedirectURIs: postLogout)
    }

    static func versionField(_ members: [(String, JSON)]) throws -> ExpectedVersion? {
        guard let value = members.first(where: { $0.0 == "version" })?.1 else { return nil }
        guard let v = value.intValue else { throw RegistryError.invalid([FieldError("version", "must be an integer")]) }
        return .field(Int(v))
    }

    /// `If-Match: "3"` (412 on mismatch); `*` matches any version. A weak or
    /// malformed tag never matches (RFC 9110 §13.1.1 compares strongly), but
    /// an unknown client is still 404 first.
    static func ifMatch(_ request: Request) -> ExpectedVersion? {
        guard let header = request.headers.value(.ifMatch)?.trimmingSpaces(), !header.isEmpty, header != "*" else { return nil }
        guard header.hasPrefix("\""), header.hasSuffix("\""), header.count >= 3, let v = Int(header.dropFirst().dropLast()) else {
            return .ifMatch(-1)
        }
        return .ifMatch(v)
    }

    static func withClient(_ client: Client, _ ctx: RequestContext, status: HTTPResponse.Status = .ok) -> Response {
        var response = Response.json(ClientRepresentation.json(client, issuer: ctx.env.issuer), status: status)
        response.headers[.eTag] = "\"\(client.version)\""
        response.headers[.cacheControl] = "no-store"
        return response
    }

    static func listParams(_ request: Request) throws -> (limit: Int, offset: Int) {
        guard let items = request.queryItems else { throw APIProblem.invalidBody("The query string is not valid percent-encoding.") }
        var limit = 50, offset = 0
        for (k, v) in items {
            switch k {
            case "limit":
                guard let l = Int(v), (1...250).contains(l) else { throw RegistryError.invalid([FieldError("limit", "must be 1..250")]) }
                limit = l
            case "offset":
                guard let o = Int(v), o >= 0, o <= 1_000_000_000 else { throw RegistryError.invalid([FieldError("offset", "must be a non-negative integer")]) }
                offset = o
            default: break
            }
        }
        return (limit, offset)
    }

}

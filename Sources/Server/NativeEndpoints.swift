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
                                 "scope", "access_token_ttl", "refresh_token_ttl", "enabled", "extra_data", "id_token_signed_response_alg"]
        + ClientMetadata.names
    static let readOnlyFields = ["organization_id", "primary", "logo_uri", "created_at", "updated_at", "client_secret"]

    /// Refuses read-only and unknown members (400), never ignores them. The
    /// first ten are named, the rest counted: one error a member made an
    /// answer eight times its request (independent review, session 20).
    static func checkMembers(_ members: [(String, JSON)], allowClientID: Bool) throws {
        var errors: [FieldError] = []
        var unnamed = 0
        var readOnly = false
        for (key, _) in members {
            if key == "client_id" && allowClientID { continue }
            if key == "version" || writableFields.contains(key) { continue }
            let isReadOnly = readOnlyFields.contains(key) || key == "client_id"
            readOnly = readOnly || isReadOnly
            guard errors.count < maxNamedMembers else { unnamed += 1; continue }
            errors.append(isReadOnly ? FieldError(key, "is read-only") : FieldError(Echo.name(key), "is not a known field"))
        }
        if !errors.isEmpty {
            let more = unnamed > 0 ? "; and \(unnamed) more" : ""
            throw APIProblem(status: 400, code: readOnly ? "read_only_field" : "unknown_field", title: "Invalid request body",
                             detail: errors.map { "\($0.field) \($0.message)" }.joined(separator: "; ") + more,
                             fieldErrors: errors.map { ($0.field, $0.message) })
        }
    }

    /// How many refused members an error names.
    static let maxNamedMembers = 10

    /// The writable fields as JSON: the base a merge patch applies to.
    static func writableJSON(_ c: Client) -> JSON {
        var members: [(String, JSON)] = [("client_name", .string(c.name))]
        if let d = c.description { members.append(("description", .string(d))) }
        if let u = c.clientURI { members.append(("client_uri", .string(u))) }
        members += [
            ("redirect_uris", JSON(c.redirectURIs)), ("grant_types", JSON(c.grantTypes.map(\.rawValue))), ("token_endpoint_auth_method", .string(c.authMethod.rawValue)),
            ("scope", .string(Scopes.join(c.scope))), ("access_token_ttl", JSON(c.accessTokenTTL)), ("refresh_token_ttl", JSON(c.refreshTokenTTL)),
            ("enabled", .bool(c.enabled)), ("extra_data", c.extraData), ("id_token_signed_response_alg", .string(c.idTokenAlg.rawValue)),
        ] + ClientMetadata.members(c)
        return .object(members)
    }

    /// Builds a spec from a (complete) body, defaults for what is omitted;
    /// wrong types are field errors.
    static func spec(from body: JSON, attributes: JSON = .object([])) throws -> ClientSpec {
        var r = FieldReader(collecting: body)
        let clientID = try r.string("client_id")
        let name = try r.string("client_name", required: true) ?? ""
        let description = try r.string("description")
        let clientURI = try r.string("client_uri")
        let redirectURIs = try r.strings("redirect_uris") ?? []
        let grantTypes = try r.strings("grant_types")
        let method = try r.string("token_endpoint_auth_method") ?? "client_secret_basic"
        var scope: [String] = []
        if let raw = try r.string("scope") {
            if let parsed = Scopes.parse(raw) { scope = parsed } else { try r.fail("scope", "must be space-separated scope tokens") }
        }
        let accessTTL = try r.int("access_token_ttl") ?? 900
        let refreshTTL = try r.int("refresh_token_ttl") ?? 2_592_000
        let idTokenAlg = try r.string("id_token_signed_response_alg") ?? "ES256"
        let enabled = try r.bool("enabled") ?? true
        var extra: JSON = .object([])
        if let value = body["extra_data"], !value.isNull {
            if value.objectValue != nil { extra = value } else { try r.fail("extra_data", "must be a JSON object") }
        }
        var spec = ClientSpec(clientID: clientID, name: name, description: description, clientURI: clientURI, redirectURIs: redirectURIs,
                              grantTypes: grantTypes, authMethod: method, scope: scope, accessTokenTTL: accessTTL, refreshTokenTTL: refreshTTL,
                              enabled: enabled, extraData: extra, attributes: attributes, idTokenAlg: idTokenAlg)
        try ClientMetadata.read(&r, into: &spec)
        if !r.errors.isEmpty { throw RegistryError.invalid(r.errors) }
        return spec
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
        var response = Response.json(ClientRepresentation.json(client, issuer: ctx.env.issuer), status: status).noStore()
        response.headers[.eTag] = "\"\(client.version)\""
        return response
    }

    static func listParams(_ request: Request) throws -> (limit: Int, offset: Int) {
        try EndpointKit.page(request, .standard) { RegistryError.invalid([$0]) }
    }

}

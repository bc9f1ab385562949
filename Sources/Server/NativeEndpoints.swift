import Common
import HTTPCore
import Imaging
import OAuth

/// The native management API (`/api/v1`), SPEC 6.1. Every rule lives in
/// `ClientRegistry`; this file translates JSON and HTTP to and from it.
enum NativeEndpoints {
    static let surface = "native"

    // MARK: Authentication

    static func bearerToken(_ request: Request) -> String? {
        guard let header = request.headers["Authorization"] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return parts[1].trimmingSpaces()
    }

    /// The bearer token's client, which must hold one of `scopes` (any when
    /// empty). Every management surface comes through here: only a token the
    /// client obtained for itself (client_credentials) is accepted (SPEC 3).
    static func caller(_ request: Request, _ ctx: RequestContext, scopes: [String], surface: String = surface) throws -> Caller {
        let (claims, client) = try ctx.store.read {
            try ctx.tokens.authenticateBearer(bearerToken(request), requiredScope: scopes, clientOnly: true)
        }
        return Caller(client: client, scopes: claims.scope, requestID: request.requestID, surface: surface)
    }

    static func registry(_ ctx: RequestContext) -> ClientRegistry {
        ClientRegistry(env: ctx.env, store: ctx.store, hasher: ctx.hasher, guards: ctx.guards)
    }

    // MARK: Bodies

    /// A JSON object body, or a 4xx: wrong media type 415, malformed 400.
    static func jsonObject(_ request: Request, mediaTypes: [String] = ["application/json"]) throws -> [(String, JSON)] {
        guard let type = request.mediaType, mediaTypes.contains(type) else {
            throw APIProblem.unsupportedMediaType(mediaTypes.joined(separator: " or "))
        }
        guard !request.body.isEmpty else { throw APIProblem.invalidBody("The request body is empty.") }
        let value: JSON
        do {
            value = try JSON.parse(request.body)
        } catch let error as JSONParseError {
            throw APIProblem(status: 400, code: "invalid_json", title: "Malformed JSON", detail: "The body is not valid JSON: \(error.description).")
        }
        guard let members = value.objectValue else { throw APIProblem.invalidBody("The body must be a JSON object.") }
        return members
    }

    static let writableFields = ["client_name", "description", "client_uri", "redirect_uris", "grant_types", "token_endpoint_auth_method",
                                 "scope", "access_token_ttl", "refresh_token_ttl", "enabled", "extra_data"]
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
            ("redirect_uris", JSON(c.redirectURIs)), ("grant_types", JSON(c.grantTypes)), ("token_endpoint_auth_method", .string(c.authMethod)),
            ("scope", .string(Scopes.join(c.scope))), ("access_token_ttl", JSON(c.accessTokenTTL)), ("refresh_token_ttl", JSON(c.refreshTokenTTL)),
            ("enabled", .bool(c.enabled)), ("extra_data", c.extraData),
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
                          enabled: enabled, extraData: extra, attributes: attributes)
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
        guard let header = request.headers["If-Match"]?.trimmingSpaces(), !header.isEmpty, header != "*" else { return nil }
        guard header.hasPrefix("\""), header.hasSuffix("\""), header.count >= 3, let v = Int(header.dropFirst().dropLast()) else {
            return .ifMatch(-1)
        }
        return .ifMatch(v)
    }

    static func withClient(_ client: Client, _ ctx: RequestContext, status: Int = 200) -> Response {
        var response = Response.json(ClientRepresentation.json(client, issuer: ctx.env.issuer), status: status)
        response.headers["ETag"] = "\"\(client.version)\""
        response.headers["Cache-Control"] = "no-store"
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

    // MARK: Routes

    static func organization(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:read"])
        guard let org = try ctx.store.read({ try ctx.store.organization(caller.organizationID) }) else { throw APIProblem.notFound() }
        return .json([
            "organization_id": .string(org.id), "name": .string(org.name), "primary_client_id": JSON(org.primaryClientID),
            "client_limit": JSON(org.clientLimit), "created_at": .string(Timestamp.rfc3339(millis: org.createdAt)),
        ])
    }

    static func createClient(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        let members = try jsonObject(request)
        try checkMembers(members, allowClientID: true)
        let spec = try spec(from: .object(members))
        let issued = try registry(ctx).create(spec, caller: caller)
        var body = ClientRepresentation.json(issued.client, issuer: ctx.env.issuer)
        if let secret = issued.secret { body.set("client_secret", .string(secret)) }
        var response = Response.json(body, status: 201)
        response.headers["Location"] = "\(ctx.env.issuer)/api/v1/clients/\(issued.client.clientID)"
        response.headers["ETag"] = "\"\(issued.client.version)\""
        response.headers["Cache-Control"] = "no-store"
        return response
    }

    static func listClients(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:read"])
        let (limit, offset) = try listParams(request)
        let prefix = request.queryValue("client_name")
        let (clients, total) = try registry(ctx).list(caller: caller, namePrefix: prefix, limit: limit, offset: offset)
        var response = Response.json(["clients": .array(clients.map { ClientRepresentation.json($0, issuer: ctx.env.issuer) })])
        response.headers["X-Total-Count"] = String(total)
        response.headers["Cache-Control"] = "no-store"
        return response
    }

    static func getClient(_ request: Request, _ ctx: RequestContext) throws -> Response {
        // One read transaction for the caller's token and the client.
        let client = try ctx.store.read {
            let caller = try caller(request, ctx, scopes: ["clients:read"])
            return try registry(ctx).get(ctx.param("id"), caller: caller)
        }
        return withClient(client, ctx)
    }

    static func currentClient(_ request: Request, _ ctx: RequestContext) throws -> Response {
        withClient(try caller(request, ctx, scopes: []).client, ctx)
    }

    static func patchClient(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        let members = try jsonObject(request, mediaTypes: ["application/merge-patch+json", "application/json"])
        try checkMembers(members, allowClientID: false)
        let expected = try ifMatch(request) ?? versionField(members)
        let patch = JSON.object(members.filter { $0.0 != "version" })
        let client = try registry(ctx).update(ctx.param("id"), caller: caller, expected: expected) { current in
            let merged = writableJSON(current).mergePatched(with: patch)
            return try spec(from: merged, attributes: current.attributes)
        }
        return withClient(client, ctx)
    }

    static func putClient(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        let members = try jsonObject(request)
        try checkMembers(members, allowClientID: false)
        let expected = try ifMatch(request) ?? versionField(members)
        let body = JSON.object(members.filter { $0.0 != "version" })
        let client = try registry(ctx).update(ctx.param("id"), caller: caller, expected: expected) { current in
            try spec(from: body, attributes: current.attributes)
        }
        return withClient(client, ctx)
    }

    static func deleteClient(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        try registry(ctx).delete(ctx.param("id"), caller: caller)
        return .empty()
    }

    static func rotate(_ id: String, _ request: Request, _ ctx: RequestContext, caller: Caller) throws -> Response {
        var grace = 0
        if !request.body.isEmpty {
            let members = try jsonObject(request)
            for (key, value) in members {
                guard key == "grace_period_seconds" else {
                    throw RegistryError.invalid([FieldError(key, "is not a known field")])
                }
                guard let g = value.intValue else { throw RegistryError.invalid([FieldError("grace_period_seconds", "must be an integer")]) }
                grace = Int(clamping: g)
            }
        }
        let issued = try registry(ctx).rotateSecret(id, caller: caller, graceSeconds: grace)
        var response = Response.json([
            "client_id": .string(issued.client.clientID), "client_secret": JSON(issued.secret),
            "previous_secret_expires_at": issued.previousSecretExpiresAt.map { .string(Timestamp.rfc3339(millis: $0)) } ?? .null,
        ])
        response.headers["Cache-Control"] = "no-store"
        return response
    }

    static func rotateSecret(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        return try rotate(ctx.param("id"), request, ctx, caller: caller)
    }

    /// A client may always rotate its own secret: no management scope needed.
    static func rotateOwnSecret(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: [])
        return try rotate(caller.client.clientID, request, ctx, caller: caller)
    }

    // MARK: Logos

    static let maxLogoBytes = 1024 * 1024

    /// The image of a logo upload: a multipart `image` field or a raw image body.
    static func uploadedImage(_ request: Request) throws -> (declared: String?, bytes: [UInt8]) {
        guard let type = request.mediaType else { throw APIProblem.unsupportedMediaType("multipart/form-data, image/png, image/jpeg or image/gif") }
        if type == "multipart/form-data" {
            guard let boundary = Multipart.boundary(fromContentType: request.headers["Content-Type"] ?? ""),
                  let parts = Multipart.parse(request.body, boundary: boundary) else {
                throw APIProblem.invalidBody("The multipart body is malformed.")
            }
            guard let part = parts.first(where: { $0.name == "image" }) else {
                throw RegistryError.invalid([FieldError("image", "is required")])
            }
            let declared = part.contentType?.split(separator: ";").first.map { $0.trimmingSpaces().lowercased() }
            return (declared == "application/octet-stream" ? nil : declared, part.body)
        }
        if ["image/png", "image/jpeg", "image/jpg", "image/gif"].contains(type) { return (type, request.body) }
        throw APIProblem.unsupportedMediaType("multipart/form-data, image/png, image/jpeg or image/gif")
    }

    /// Magic bytes, declared type, header dimensions, then decode and
    /// re-encode as PNG within 256x256 (SPEC 6.1).
    /// The side of the preview the public app reads carry inline (SPEC 6.4, 7.1).
    static let previewSide = 64

    /// Checks an upload and re-encodes it: the logo (256 px) and its preview.
    static func processLogo(declared: String?, bytes: [UInt8], _ ctx: RequestContext) throws -> (logo: [UInt8], preview: [UInt8]) {
        guard bytes.count <= maxLogoBytes else {
            throw APIProblem(status: 413, code: "image_too_large", title: "Image too large", detail: "A logo may be at most 1 MiB.")
        }
        guard let format = Imaging.sniff(bytes) else {
            throw APIProblem(status: 415, code: "unsupported_image", title: "Unsupported image", detail: "Logos must be PNG, JPEG or GIF.")
        }
        if let declared {
            let normalized = declared == "image/jpg" ? "image/jpeg" : declared
            guard normalized == format.rawValue else {
                throw APIProblem(status: 415, code: "image_type_mismatch", title: "Unsupported image",
                                 detail: "The declared type does not match the image's content.")
            }
        }
        guard let header = Imaging.header(bytes) else {
            throw APIProblem(status: 400, code: "invalid_image", title: "Invalid image", detail: "The image header is missing or truncated.")
        }
        guard Imaging.acceptable(header) else {
            throw APIProblem(status: 400, code: "image_dimensions", title: "Invalid image",
                             detail: "Logos may be at most 4096 pixels on a side and 4194304 pixels in all (and a JPEG at most 64 scans).")
        }
        do {
            let sizes = try ctx.images.reencode(bytes, format, [256, previewSide])
            return (sizes[0], sizes[1])
        } catch is SlowHashesBusy {
            throw APIProblem(status: 503, code: "busy", title: "Busy", detail: "Another logo is being processed; retry shortly.",
                             headers: [("Retry-After", "2")])
        } catch {
            throw APIProblem(status: 400, code: "invalid_image", title: "Invalid image", detail: "The image could not be decoded.")
        }
    }

    static func putLogo(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        let id = ctx.param("id")
        _ = try ctx.store.read { try registry(ctx).get(id, caller: caller) }
        let (declared, bytes) = try uploadedImage(request)
        let png = try processLogo(declared: declared, bytes: bytes, ctx)
        _ = try registry(ctx).setLogo(id, caller: caller, png: png.logo, preview: png.preview)
        return .empty()
    }

    /// Public: the consent screen shows logos to people who are not API callers.
    static func getLogo(_ request: Request, _ ctx: RequestContext) throws -> Response {
        guard let logo = try ctx.store.read({ try ctx.store.logo(clientID: ctx.param("id")) }) else { throw APIProblem.notFound() }
        return logoResponse(logo, request)
    }

    static func logoResponse(_ logo: (contentType: String, image: [UInt8], etag: String), _ request: Request) -> Response {
        let etag = "\"\(logo.etag)\""
        var response: Response
        if let inm = request.headers["If-None-Match"], inm.split(separator: ",").contains(where: { $0.trimmingSpaces() == etag || $0.trimmingSpaces() == "*" }) {
            response = Response(status: 304)
        } else {
            response = Response(status: 200, headers: Headers([("Content-Type", "image/png")]), body: logo.image)
        }
        response.headers["ETag"] = etag
        response.headers["Cache-Control"] = "public, max-age=300"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = "default-src 'none'"
        response.headers["Cross-Origin-Resource-Policy"] = "same-site"
        return response
    }

    static func deleteLogo(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        try registry(ctx).deleteLogo(ctx.param("id"), caller: caller)
        return .empty()
    }

    // MARK: Audit

    static func audit(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["audit:read"])
        let (limit, offset) = try listParams(request)
        let (events, total) = try ctx.store.read { try ctx.store.auditEvents(organizationID: caller.organizationID, limit: limit, offset: offset) }
        var response = Response.json(["events": .array(events.map { e in
            [
                "id": .int(e.id), "actor": .string(e.actor), "action": .string(e.action), "target": JSON(e.target),
                "surface": .string(e.surface), "request_id": JSON(e.requestID), "details": e.details,
                "created_at": .string(Timestamp.rfc3339(millis: e.createdAt)),
            ]
        })])
        response.headers["X-Total-Count"] = String(total)
        response.headers["Cache-Control"] = "no-store"
        return response
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

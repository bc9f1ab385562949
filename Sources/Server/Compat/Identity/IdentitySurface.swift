import Common
import HTTPCore
import OAuth

/// The identity platform's `/v3/oauth-clients` (SPEC 6.3): camelCase
/// fields, enums for grant types, access type and client type, JSON Patch
/// updates, and detailCode/trackingId errors.
enum IdentitySurface {
    static let readScopes = ["sp:oauth-client:read", "sp:oauth-client:manage"]
    static let manageScope = "sp:oauth-client:manage"
    static let grantNames = ["CLIENT_CREDENTIALS": "client_credentials", "AUTHORIZATION_CODE": "authorization_code", "REFRESH_TOKEN": "refresh_token"]
    static let patchable = ["businessName", "homepageUrl", "name", "description", "accessTokenValiditySeconds", "refreshTokenValiditySeconds",
                            "redirectUris", "grantTypes", "accessType", "enabled", "strongAuthSupported", "claimsSupported"]
    static let writable = patchable + ["type", "internal", "scope"]
    static let readOnly = ["id", "secret", "created", "modified", "lastUsed"]

    struct Failure: Error {
        let status: HTTPResponse.Status
        let message: String
        var field: String?
    }

    static func detailCode(_ status: HTTPResponse.Status) -> String {
        switch status.code {
        case 400: return "400.1 Bad Request Content"
        case 403: return "403.0 Forbidden"
        case 404: return "404.0 Not Found"
        case 409: return "409.0 Conflict"
        case 412: return "412.0 Precondition Failed"
        case 413: return "413.0 Payload Too Large"
        case 415: return "415.0 Unsupported Media Type"
        default: return "500.0 Internal Server Error"
        }
    }

    static func render(_ error: Error, request: Request) -> Response? {
        var status: HTTPResponse.Status = .internalServerError
        var message = "An internal error occurred."
        var causes: [JSON] = []
        var headers = HTTPFields()
        switch error {
        case let e as OAuthError where e.status == 401:
            var response = Response.json(["error": .string("JWT validation failed: \(e.publicDescription)")], status: 401)
            response.headers.append(contentsOf: HTTPFields(e.headers))
            return response
        case let e as OAuthError: (status, message) = (.init(code: e.status), e.publicDescription)
        case let f as Failure:
            (status, message) = (f.status, f.message)
            if let field = f.field { causes = [["field": .string(field), "message": .string(f.message)]] }
        case let e as RegistryError:
            let p = ErrorRendering.problem(e)
            (status, message) = (p.status, e == .notFound ? "OAuth client not found." : p.detail)
            causes = p.fieldErrors.map { ["field": .string($0.field), "message": .string($0.message)] }
        case let p as APIProblem:
            (status, message) = (p.status, p.detail)
            headers = p.headers
        default: break
        }
        var response = Response.json([
            "detailCode": .string(detailCode(status)), "trackingId": .string(request.requestID),
            "messages": [["locale": "en-US", "localeOrigin": "DEFAULT", "text": .string(message)]], "causes": .array(causes),
        ], status: status)
        response.headers.append(contentsOf: headers)
        return response
    }

    static func caller(_ request: Request, _ ctx: RequestContext, _ scopes: [String]) throws -> Caller {
        try EndpointKit.caller(request, ctx, scopes: scopes, surface: .identity)
    }

    // MARK: Representation

    static func json(_ c: Client, secret: String? = nil) -> JSON {
        let a = c.attributes
        return [
            "id": .string(c.clientID), "secret": JSON(secret), "businessName": a["businessName"] ?? .null, "homepageUrl": JSON(c.clientURI),
            "name": .string(c.name), "description": JSON(c.description), "accessTokenValiditySeconds": JSON(c.accessTokenTTL),
            "refreshTokenValiditySeconds": JSON(c.refreshTokenTTL), "redirectUris": JSON(c.redirectURIs),
            "grantTypes": JSON(c.grantTypes.compactMap { g in grantNames.first(where: { $0.value == g.rawValue })?.key }),
            "accessType": .string(a["accessType"]?.stringValue ?? "ONLINE"), "type": .string(c.isPublic ? "PUBLIC" : "CONFIDENTIAL"),
            "internal": .bool(a["internal"]?.boolValue ?? false), "enabled": .bool(c.enabled),
            "strongAuthSupported": .bool(a["strongAuthSupported"]?.boolValue ?? false), "claimsSupported": .bool(a["claimsSupported"]?.boolValue ?? false),
            "created": .string(Timestamp.rfc3339(millis: c.createdAt)), "modified": .string(Timestamp.rfc3339(millis: c.updatedAt)),
            "lastUsed": c.lastUsedAt.map { .string(Timestamp.rfc3339(millis: $0)) } ?? .null, "scope": JSON(c.scope),
        ]
    }

    /// The spec a complete v3 body describes; `current` supplies what the body cannot set.
    static func spec(_ body: JSON, creatorScope: [String]?, current: Client?) throws -> ClientSpec {
        func fail(_ field: String, _ why: String) -> Failure { Failure(status: 400, message: "\(field) \(why)", field: field) }
        var r = FieldReader(body) { fail($0.field, $0.message) }
        let name = try r.string("name", required: true)!
        // Required on create (SPEC 6.3); a client made elsewhere may have none, and a patch of its name must not need one.
        let description = current == nil ? try r.string("description", required: true)! : try r.string("description")
        let accessTTL = try r.int("accessTokenValiditySeconds", required: true)!
        guard let grantItems = try r.strings("grantTypes", required: true) else { throw fail("grantTypes", "is required") }
        var grants: [String] = []
        for g in grantItems {
            guard let mapped = grantNames[g] else { throw fail("grantTypes", "must contain only CLIENT_CREDENTIALS, AUTHORIZATION_CODE, REFRESH_TOKEN") }
            if !grants.contains(mapped) { grants.append(mapped) }
        }
        // Grants this surface cannot name (the device grant, say) are not its to remove.
        for g in current?.grantTypes ?? [] where !grantNames.values.contains(g.rawValue) && !grants.contains(g.rawValue) { grants.append(g.rawValue) }
        guard let accessType = try r.string("accessType", required: true), ["ONLINE", "OFFLINE"].contains(accessType) else {
            throw fail("accessType", "must be ONLINE or OFFLINE")
        }
        let enabled = try r.bool("enabled", required: true)!
        let type = try r.string("type") ?? (current.map { $0.isPublic ? "PUBLIC" : "CONFIDENTIAL" } ?? "CONFIDENTIAL")
        guard ["CONFIDENTIAL", "PUBLIC"].contains(type) else { throw fail("type", "must be CONFIDENTIAL or PUBLIC") }
        var scope = current?.scope ?? creatorScope ?? []
        if let items = try r.strings("scope") {
            guard items.allSatisfy(Scopes.isValidToken) else { throw fail("scope", "must contain valid scope names") }
            scope = Scopes.unique(items)
        }
        var attributes: JSON = current?.attributes ?? .object([])
        attributes.set("businessName", JSON(try r.string("businessName")))
        attributes.set("accessType", .string(accessType))
        (accessType == "OFFLINE" ? RefreshTokenPolicy.always : .withOfflineAccess).store(in: &attributes)
        attributes.set("internal", .bool(try r.bool("internal") ?? attributes["internal"]?.boolValue ?? false))
        attributes.set("strongAuthSupported", .bool(try r.bool("strongAuthSupported") ?? false))
        attributes.set("claimsSupported", .bool(try r.bool("claimsSupported") ?? false))
        if let bn = attributes["businessName"]?.stringValue, bn.utf8.count > 255 { throw fail("businessName", "must be at most 255 bytes") }
        // Fields this surface does not know (the ID token algorithm, logout URIs, ...) stay as they are.
        var spec = current.map(ClientSpec.init) ?? ClientSpec(name: name)
        spec.clientID = nil
        (spec.name, spec.description, spec.clientURI, spec.redirectURIs) = (name, description, try r.string("homepageUrl"), try r.strings("redirectUris") ?? [])
        // CONFIDENTIAL keeps the confidential method the client has (secret or private_key_jwt).
        let confidential = current.map { $0.isPublic ? "client_secret_basic" : $0.authMethod.rawValue } ?? "client_secret_basic"
        (spec.grantTypes, spec.authMethod, spec.scope) = (grants, type == "PUBLIC" ? "none" : confidential, scope)
        (spec.accessTokenTTL, spec.refreshTokenTTL) = (accessTTL, try r.int("refreshTokenValiditySeconds") ?? current?.refreshTokenTTL ?? 2_592_000)
        (spec.enabled, spec.attributes) = (enabled, attributes)
        return spec
    }

    static func body(_ request: Request) throws -> [(String, JSON)] {
        let members = try EndpointKit.jsonObject(request)
        if let ro = members.first(where: { readOnly.contains($0.0) }) { throw Failure(status: 400, message: "\(ro.0) is read-only", field: ro.0) }
        if let unknown = members.first(where: { !writable.contains($0.0) }) {
            throw Failure(status: 400, message: "\(Echo.name(unknown.0)) is not a known field", field: Echo.name(unknown.0))
        }
        return members
    }

    // MARK: Routes

    static func create(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, [manageScope])
        let spec = try spec(.object(try body(request)), creatorScope: caller.scopes, current: nil)
        let issued = try EndpointKit.registry(ctx).create(spec, caller: caller)
        return Response.json(json(issued.client, secret: issued.secret)).noStore()
    }

    static func list(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, readScopes)
        var filter = ClientFilter()
        if let filters = request.queryValue("filters") {
            let parts = filters.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if parts == ["lastUsed", "isnull"] {
                filter.lastUsed = .never
            } else if parts.count == 3, parts[0] == "lastUsed", parts[1] == "le", let limit = Timestamp.parse(parts[2]) {
                filter.lastUsed = .atOrBefore(limit)
            } else {
                throw Failure(status: 400, message: "Unsupported filter: only 'lastUsed le <RFC 3339>' and 'lastUsed isnull' are supported.",
                              field: "filters")
            }
        }
        let (limit, offset) = try EndpointKit.page(request, .standard) { Failure(status: 400, message: "\($0.field) \($0.message)", field: $0.field) }
        let page = try EndpointKit.registry(ctx).list(caller: caller, filter: filter, limit: limit, offset: offset)
        var response = Response.json(.array(page.clients.map { json($0) })).noStore()
        if request.queryValue("count") == "true" { response.headers[.xTotalCount] = String(page.total) }
        return response
    }

    static func get(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, readScopes)
        return .json(json(try ctx.store.read { try EndpointKit.registry(ctx).get(ctx.param("id"), caller: caller) }))
    }

    static let maxPatchOperations = 100

    /// RFC 6902 on the v3 representation, limited to the patchable fields.
    static func patch(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, [manageScope])
        guard request.mediaType == "application/json-patch+json" else {
            throw APIProblem.unsupportedMediaType("application/json-patch+json")
        }
        let document: JSON
        do { document = try JSON.parse(request.body) } catch { throw Failure(status: 400, message: "The body is not valid JSON.") }
        guard let items = document.arrayValue else { throw Failure(status: 400, message: "A JSON Patch is an array of operations.") }
        // Twelve fields, at most 20 redirect URIs: no real patch comes near; the patch runs with the client's row held.
        guard items.count <= maxPatchOperations else {
            throw Failure(status: 400, message: "A JSON Patch here has at most \(maxPatchOperations) operations.")
        }
        let operations: [JSONPatchOperation]
        do { operations = try items.map(JSONPatchOperation.init) } catch let e as JSONPatchError { throw Failure(status: 400, message: e.description) }
        for op in operations {
            for pointer in [op.path] + (op.from.map { [$0] } ?? []) {
                guard let field = pointer.first, patchable.contains(field) else {
                    let shown = Echo.name("/" + pointer.joined(separator: "/"))
                    throw Failure(status: 400, message: "The path \(shown) cannot be patched.", field: Echo.name(pointer.first ?? ""))
                }
            }
        }
        let client = try EndpointKit.registry(ctx).update(ctx.param("id"), caller: caller, expected: nil) { current in
            let patched: JSON
            do { patched = try json(current).patched(with: operations) } catch let e as JSONPatchError {
                throw Failure(status: 400, message: e.description)
            }
            return try spec(patched, creatorScope: nil, current: current)
        }
        return .json(json(client))
    }

    static func delete(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, [manageScope])
        try EndpointKit.registry(ctx).delete(ctx.param("id"), caller: caller)
        return .empty()
    }
}

import Common
import HTTPCore
import OAuth

/// The integration platform's client API (SPEC 6.2), `/external/v1/oauth`:
/// camelCase fields, caller-chosen passwords, and `{"code","message"}`
/// errors from the source's dictionary. Every rule is the registry's.
enum IntegrationSurface {
    static let scope = "manageExternalClients"

    /// An error in the source's shape.
    struct Failure: Error {
        let code: String
        let status: HTTPResponse.Status
        let message: String

        static func payload(_ field: String, _ why: String) -> Failure {
            Failure(code: "GN0002", status: 400, message: "The payload you have supplied is invalid. \(field): \(why)")
        }
        static func notFound(_ id: String) -> Failure { Failure(code: "AU0005", status: 404, message: "Client \(Echo.name(id)) not found.") }
        static let unauthorized = Failure(code: "AU0001", status: 401, message: "The access token is missing, invalid or expired.")
        static let callerGone = Failure(code: "AU0006", status: 404, message: "The calling client no longer exists.")
        static let primaryOnly = Failure(code: "AU0007", status: 403, message: "This action is reserved for the primary client")
        static let otherOrganization = Failure(code: "AU0008", status: 403, message: "The client belongs to a different organization.")
        static let limit = Failure(code: "AU0009", status: 409, message: "The organization's client limit is reached.")
        static let primaryUndeletable = Failure(code: "AU0010", status: 409, message: "Can't remove the primary OAuth client")
        static func scope(_ s: String) -> Failure { Failure(code: "AU0002", status: 403, message: "You do not have access to this scope: '\(s)'") }
    }

    static func render(_ error: Error, request: Request) -> Response? {
        let failure: Failure
        // A refused DPoP proof or bound token keeps its challenge and nonce (RFC 9449 §7.1, §9) under the source's body;
        // any other 401 keeps the source's Bearer challenge.
        var challenge: [(String, String)] = []
        switch error {
        case let f as Failure: failure = f
        case let e as OAuthError where e.code == "insufficient_scope": failure = .scope(IntegrationSurface.scope)
        case let e as OAuthError where e.status == 401:
            failure = .unauthorized
            if e.headers.contains(where: { $0.0 == "DPoP-Nonce" || $0.1.hasPrefix("DPoP ") }) { challenge = e.headers }
        case let e as RegistryError:
            switch e {
            case .notFound: failure = Failure(code: "AU0005", status: 404, message: "Client not found.")
            case let .invalid(errors): failure = .payload(fieldName(errors.first?.field ?? "body"), errors.first?.message ?? "invalid")
            case let .forbidden(why):
                switch why {
                case .privilegedScope: failure = Failure(code: "AU0002", status: 403, message: why.message)
                case .primaryOnly, .primaryChangesItself: failure = .primaryOnly
                case .otherOrganization: failure = .otherOrganization
                }
            case let .conflict(why):
                switch why {
                case .limitReached: failure = .limit
                case .primaryUndeletable: failure = .primaryUndeletable
                case .primaryMustStayEnabled, .primaryMustStayConfidential, .primaryLockout, .staleVersion, .clientIDTaken, .publicClientHasNoSecret,
                     .reservedClientID:
                    failure = Failure(code: "GN0002", status: 409, message: why.message)
                }
            case .preconditionFailed: failure = Failure(code: "GN0002", status: 412, message: "Precondition failed.")
            }
        case let p as APIProblem where p.status.kind != .serverError: failure = Failure(code: "GN0002", status: p.status == 415 || p.status == 413 ? p.status : 400,
                                                                         message: "The payload you have supplied is invalid. \(p.detail)")
        default: return nil
        }
        var response = Response.json(["code": .string(failure.code), "message": .string(failure.message)], status: failure.status)
        response.headers.append(contentsOf: HTTPFields(challenge))
        if failure.status == 401, !response.headers.contains(.wwwAuthenticate) { response.headers[.wwwAuthenticate] = "Bearer realm=\"latchkey\"" }
        return response
    }

    // MARK: Helpers

    /// The registry's field as this surface names it (SPEC 6.2: GN0002 names the field the caller sent).
    static func fieldName(_ native: String) -> String {
        ["client_name": "application", "scope": "accessScopes", "extra_data": "extraData", "client_id": "clientId"][native] ?? native
    }

    static func caller(_ request: Request, _ ctx: RequestContext, scopes: [String]) throws -> Caller {
        do {
            return try EndpointKit.caller(request, ctx, scopes: scopes, surface: .integration)
        } catch let e as OAuthError where e.tokenOfDeletedClient {
            // Said only to the token's holder: a DPoP-bound token sent without its key's proof learns nothing of its
            // client (refused as any bound token is; the proof's jti is not recorded, the answer is an error anyway).
            if let claims = e.deletedClientsToken, let token = EndpointKit.bearerToken(request) {
                try DPoPEndpoint.checkBinding(request, ctx, token: token, claims: claims, recording: false)
            }
            throw Failure.callerGone
        }
    }

    static func body(_ request: Request, allowed: [String]) throws -> JSON {
        let members: [(String, JSON)]
        do {
            members = try EndpointKit.jsonObject(request)
        } catch let p as APIProblem {
            throw Failure.payload("body", p.detail)
        }
        if let unknown = members.first(where: { !allowed.contains($0.0) }) { throw Failure.payload(Echo.name(unknown.0), "is not a known field") }
        return .object(members)
    }

    static func string(_ body: JSON, _ key: String, required: Bool) throws -> String? {
        var r = FieldReader(body) { Failure.payload($0.field, $0.message) }
        return try r.string(key, required: required)
    }

    /// 72 characters of four bytes each.
    static let maxPasswordBytes = 288

    static func password(_ body: JSON) throws -> String {
        let p = try string(body, "password", required: true)!
        // Characters are grapheme clusters (one may be megabytes of combining marks): bytes bound it too, first.
        guard p.utf8.count <= maxPasswordBytes, (8...72).contains(p.count) else {
            throw Failure.payload("password", "must be 8..72 characters (at most \(maxPasswordBytes) bytes)")
        }
        return p
    }

    static func scopes(_ body: JSON) throws -> [String]? {
        guard let value = body["accessScopes"], !value.isNull else { return nil }
        guard let items = value.arrayValue, items.allSatisfy({ $0.stringValue.map(Scopes.isValidToken) == true }) else {
            throw Failure.payload("accessScopes", "must be an array of scope names")
        }
        return Scopes.unique(items.compactMap(\.stringValue))
    }

    static func extraData(_ body: JSON) throws -> JSON? {
        guard let value = body["extraData"], !value.isNull else { return nil }
        guard value.objectValue != nil else { throw Failure.payload("extraData", "must be an object") }
        return value
    }

    static func json(_ c: Client, primary: Bool = false) -> JSON {
        var members: [(String, JSON)] = [
            ("clientId", .string(c.clientID)), ("application", .string(c.name)), ("accessScopes", JSON(c.scope)), ("extraData", c.extraData),
        ]
        if primary { members.append(("primary", .bool(c.isPrimary))) }
        return .object(members)
    }

    /// This surface tells another organization's client apart (AU0008), as its source did.
    static func target(_ id: String, _ caller: Caller, _ ctx: RequestContext) throws {
        do {
            _ = try ctx.store.read { try EndpointKit.registry(ctx).locate(id, caller: caller) }
        } catch RegistryError.notFound {
            throw Failure.notFound(id)
        }
    }

    // MARK: Routes

    static func create(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: [scope])
        let body = try body(request, allowed: ["password", "application", "accessScopes", "extraData"])
        let password = try password(body)
        let application = try string(body, "application", required: true)!
        let spec = ClientSpec(name: application, grantTypes: ["client_credentials"], scope: try scopes(body) ?? [],
                              extraData: try extraData(body) ?? .object([]))
        let issued = try EndpointKit.registry(ctx).create(spec, caller: caller, password: password)
        return .json(json(issued.client), status: 201)
    }

    static func update(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: [scope])
        let body = try body(request, allowed: ["clientId", "application", "accessScopes", "extraData"])
        let id = try string(body, "clientId", required: true)!
        let application = try string(body, "application", required: false)
        let newScopes = try scopes(body)
        let extra = try extraData(body)
        try target(id, caller, ctx)
        _ = try EndpointKit.registry(ctx).update(id, caller: caller, expected: nil) { current in
            var spec = ClientSpec(current)
            if let application { spec.name = application }
            if let newScopes { spec.scope = newScopes }
            if let extra { spec.extraData = extra }
            return spec
        }
        return .empty()
    }

    static func passwordReset(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: [scope])
        let body = try body(request, allowed: ["clientId", "password"])
        let id = try string(body, "clientId", required: true)!
        let password = try password(body)
        do {
            try EndpointKit.registry(ctx).resetPassword(id, caller: caller, password: password)
        } catch RegistryError.notFound {
            throw Failure.notFound(id)
        }
        return .empty()
    }

    static func current(_ request: Request, _ ctx: RequestContext) throws -> Response {
        .json(json(try caller(request, ctx, scopes: []).client))
    }

    static func ownPassword(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: [])
        let body = try body(request, allowed: ["password"])
        try ctx.guards.spendOwnChange(clientID: caller.client.clientID, now: ctx.env.now())
        try EndpointKit.registry(ctx).setPassword(caller.client.clientID, caller: caller, password: try password(body))
        return .empty()
    }

    static func list(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: [scope])
        let all = try EndpointKit.registry(ctx).all(caller: caller)
        var response = Response.json(.array(all.map { json($0, primary: true) }))
        response.headers[.xTotalCount] = String(all.count)
        return response
    }

    static func delete(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: [scope])
        let id = ctx.param("clientId")
        try target(id, caller, ctx)
        try EndpointKit.registry(ctx).delete(id, caller: caller)
        return .empty()
    }
}

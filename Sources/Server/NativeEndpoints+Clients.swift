import Common
import HTTPCore
import Imaging
import OAuth

/// The native API routes of organizations, clients and secrets (SPEC 6.1, 6.2) and the audit log.
extension NativeEndpoints {
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
        let members = try EndpointKit.jsonObject(request)
        try checkMembers(members, allowClientID: true)
        let spec = try spec(from: .object(members))
        let issued = try EndpointKit.registry(ctx).create(spec, caller: caller)
        var body = ClientRepresentation.json(issued.client, issuer: ctx.env.issuer)
        if let secret = issued.secret { body.set("client_secret", .string(secret)) }
        var response = Response.json(body, status: 201).noStore()
        response.headers[.location] = "\(ctx.env.issuer)/api/v1/clients/\(issued.client.clientID)"
        response.headers[.eTag] = "\"\(issued.client.version)\""
        return response
    }

    static func listClients(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:read"])
        let (limit, offset) = try listParams(request)
        let prefix = request.queryValue("client_name")
        let (clients, total) = try EndpointKit.registry(ctx).list(caller: caller, namePrefix: prefix, limit: limit, offset: offset)
        var response = Response.json(["clients": .array(clients.map { ClientRepresentation.json($0, issuer: ctx.env.issuer) })]).noStore()
        response.headers[.xTotalCount] = String(total)
        return response
    }

    static func getClient(_ request: Request, _ ctx: RequestContext) throws -> Response {
        // One read transaction for the caller's token and the client; a DPoP-bound caller proves its key after it.
        let (client, proof) = try ctx.store.read {
            let (caller, proof) = try EndpointKit.callerProvingLater(request, ctx, scopes: ["clients:read"], surface: .native)
            return (Result { try EndpointKit.registry(ctx).get(ctx.param("id"), caller: caller) }, proof)
        }
        try proof()  // before anything of the answer, a 404 included
        return withClient(try client.get(), ctx)
    }

    static func currentClient(_ request: Request, _ ctx: RequestContext) throws -> Response {
        withClient(try caller(request, ctx, scopes: []).client, ctx)
    }

    static func patchClient(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        let members = try EndpointKit.jsonObject(request, mediaTypes: ["application/merge-patch+json", "application/json"])
        try checkMembers(members, allowClientID: false)
        let expected = try ifMatch(request) ?? versionField(members)
        let patch = JSON.object(members.filter { $0.0 != "version" })
        let client = try EndpointKit.registry(ctx).update(ctx.param("id"), caller: caller, expected: expected) { current in
            let merged = writableJSON(current).mergePatched(with: patch)
            return try spec(from: merged, attributes: current.attributes)
        }
        return withClient(client, ctx)
    }

    static func putClient(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        let members = try EndpointKit.jsonObject(request)
        try checkMembers(members, allowClientID: false)
        let expected = try ifMatch(request) ?? versionField(members)
        let body = JSON.object(members.filter { $0.0 != "version" })
        let client = try EndpointKit.registry(ctx).update(ctx.param("id"), caller: caller, expected: expected) { current in
            try spec(from: body, attributes: current.attributes)
        }
        return withClient(client, ctx)
    }

    static func deleteClient(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        try EndpointKit.registry(ctx).delete(ctx.param("id"), caller: caller)
        return .empty()
    }

    static func rotate(_ id: String, _ request: Request, _ ctx: RequestContext, caller: Caller) throws -> Response {
        var grace = 0
        if !request.body.isEmpty {
            let members = try EndpointKit.jsonObject(request)
            for (key, value) in members {
                guard key == "grace_period_seconds" else {
                    throw RegistryError.invalid([FieldError(Echo.name(key), "is not a known field")])
                }
                guard let g = value.intValue else { throw RegistryError.invalid([FieldError("grace_period_seconds", "must be an integer")]) }
                grace = Int(clamping: g)
            }
        }
        let issued = try EndpointKit.registry(ctx).rotateSecret(id, caller: caller, graceSeconds: grace)
        return Response.json([
            "client_id": .string(issued.client.clientID), "client_secret": JSON(issued.secret),
            "previous_secret_expires_at": issued.previousSecretExpiresAt.map { .string(Timestamp.rfc3339(millis: $0)) } ?? .null,
        ]).noStore()
    }

    static func rotateSecret(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        return try rotate(ctx.param("id"), request, ctx, caller: caller)
    }

    /// A client may always rotate its own secret: no management scope needed.
    static func rotateOwnSecret(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: [])
        try ctx.guards.spendOwnChange(clientID: caller.client.clientID, now: ctx.env.now())
        return try rotate(caller.client.clientID, request, ctx, caller: caller)
    }

    // MARK: Audit

    static func audit(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["audit:read"])
        let (limit, offset) = try EndpointKit.page(request, .audit) { RegistryError.invalid([$0]) }
        // `before` (an event id): the page below it, at any depth for the same cost (offsets stop at AuditLog.maxOffset).
        var before: Int64?
        if let raw = request.queryItems?.first(where: { $0.0 == "before" })?.1 {
            guard let id = Int64(raw), id > 0 else { throw RegistryError.invalid([FieldError("before", "must be an event id")]) }
            before = id
        }
        let (events, total) = try ctx.store.read {
            try ctx.store.auditEvents(organizationID: caller.organizationID, limit: limit, offset: offset, before: before)
        }
        var response = Response.json(["events": .array(events.map { e in
            [
                "id": .int(e.id), "actor": .string(e.actor), "action": .string(e.action), "target": JSON(e.target),
                "surface": .string(e.surface), "request_id": JSON(e.requestID), "details": e.details,
                "created_at": .string(Timestamp.rfc3339(millis: e.createdAt)),
            ]
        })]).noStore()
        response.headers[.xTotalCount] = String(total)
        return response
    }
}

import Common
import HTTPCore
import OAuth

/// The Go service's app API (SPEC 6.4), `/api/oauth`: an app is a
/// confidential client with one redirect URI; reads are public (the consent
/// screen needs them); errors are `{"message": "..."}`.
enum AppSurface {
    static let appScope = ["openid", "profile", "email", "offline_access"]
    static let readScope = "gov.user.oauth.app:read"
    static let writeScope = "gov.user.oauth.app:write"

    struct Failure: Error {
        let status: HTTPResponse.Status
        let message: String
    }

    static func render(_ error: Error, request: Request) -> Response? {
        var headers = HTTPFields()
        let status: HTTPResponse.Status
        let message: String
        switch error {
        case let f as Failure: (status, message) = (f.status, f.message)
        case let e as OAuthError:
            (status, message) = (.init(code: e.status), e.publicDescription)
            headers = HTTPFields(e.headers)
        case let e as RegistryError:
            let p = ErrorRendering.problem(e)
            (status, message) = (p.status, e == .notFound ? "App not found." : p.detail)
        case let p as APIProblem where p.status.kind != .serverError:
            (status, message) = (p.status, p.detail)
            headers = p.headers
        default: return nil
        }
        var response = Response.json(["message": .string(message)], status: status)
        response.headers.append(contentsOf: headers)
        return response
    }

    static func json(_ c: Client, logo: [UInt8]?) -> JSON {
        [
            "client_id": .string(c.clientID), "name": .string(ClientSpec.displayName(c)), "url": .string(c.clientURI ?? ""),
            "redirect_uri": .string(c.redirectURIs.first ?? ""),
            // A preview stored before the 6 KB bound (noise at 64 px) is left out until the next upload.
            "logo": .string(logo.flatMap { $0.count <= EndpointKit.maxPreviewBytes ? "data:image/png;base64," + Base64.encode($0) : nil } ?? ""),
            "time": .int(c.updatedAt / 1000), "creation_time": .int(c.createdAt / 1000),
        ]
    }

    /// The most ids one public batch read takes (SPEC 6.4, 7.1).
    static let maxBatch = 20

    static func app(_ id: String, _ ctx: RequestContext) throws -> JSON? {
        let registry = EndpointKit.registry(ctx)
        return try ctx.store.read {
            guard let client = try registry.consentable(id) else { return nil }
            return json(client, logo: try registry.logoPreviews(of: [client])[id])
        }
    }

    /// `{"name","url","redirect_uri"}`, checked by the registry's rules plus this API's length limits.
    static func fields(_ request: Request) throws -> (name: String, url: String?, redirect: String) {
        let members = try EndpointKit.jsonObject(request)
        if let unknown = members.first(where: { !["name", "url", "redirect_uri"].contains($0.0) }) {
            throw Failure(status: 400, message: "Unknown field: \(Echo.name(unknown.0)).")
        }
        var r = FieldReader(.object(members)) { Failure(status: 400, message: "\($0.field) \($0.message).") }
        let name = try r.string("name", required: true)!
        guard let redirect = try r.string("redirect_uri", required: true), !redirect.isEmpty else {
            throw Failure(status: 400, message: "redirect_uri is required.")
        }
        guard redirect.utf8.count <= 512 else { throw Failure(status: 400, message: "redirect_uri must be at most 512 characters.") }
        let url = try r.string("url")
        guard (url?.utf8.count ?? 0) <= 512 else { throw Failure(status: 400, message: "url must be at most 512 characters.") }
        return (name, url?.isEmpty == false ? url : nil, redirect)
    }

    static func spec(_ f: (name: String, url: String?, redirect: String)) -> ClientSpec {
        ClientSpec(name: f.name, clientURI: f.url, redirectURIs: [f.redirect], grantTypes: ["authorization_code", "refresh_token"], scope: appScope)
    }

    static func page(_ request: Request) throws -> (limit: Int, offset: Int) {
        try EndpointKit.page(request, .amountAndOffset) { Failure(status: 400, message: "\($0.field) \($0.message).") }
    }

    static func caller(_ request: Request, _ ctx: RequestContext, _ scope: String) throws -> Caller {
        try EndpointKit.caller(request, ctx, scopes: [scope], surface: .app)
    }

    // MARK: Apps

    static func get(_ request: Request, _ ctx: RequestContext) throws -> Response {
        guard let app = try app(ctx.param("client_id"), ctx) else { throw RegistryError.notFound }
        return .json(app)
    }

    static func image(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let id = ctx.param("client_id")
        guard let logo = try ctx.store.read({ try EndpointKit.registry(ctx).consentableLogo(id) }) else { throw RegistryError.notFound }
        return EndpointKit.logoResponse(logo, request)
    }

    static func ids(_ request: Request, _ ctx: RequestContext) throws -> Response {
        guard let raw = request.queryValue("ids") else { throw Failure(status: 400, message: "ids is required.") }
        let ids = raw.split(separator: ",").map(String.init).filter { !$0.isEmpty }
        guard ids.count <= maxBatch else { throw Failure(status: 400, message: "At most \(maxBatch) ids.") }
        var seen = Set<String>()
        let apps = try ids.filter { seen.insert($0).inserted }.compactMap { try app($0, ctx) }
        return .json(["apps": .array(apps)])
    }

    static func list(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, readScope)
        let (amount, offset) = try page(request)
        let registry = EndpointKit.registry(ctx)
        let page = try registry.list(caller: caller, namePrefix: nil, limit: amount, offset: offset)
        let previews = try ctx.store.read { try registry.logoPreviews(of: page.clients) }
        let apps = page.clients.map { c in json(c, logo: previews[c.clientID]) }
        var response = Response.json(["apps": .array(apps)])
        response.headers[.xTotalCount] = String(page.total)
        return response
    }

    static func create(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, writeScope)
        let issued = try EndpointKit.registry(ctx).create(spec(try fields(request)), caller: caller)
        return Response.json(["client_id": .string(issued.client.clientID), "key": JSON(issued.secret)], status: 201).noStore()
    }

    static func update(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, writeScope)
        let f = try fields(request)
        _ = try EndpointKit.registry(ctx).update(ctx.param("client_id"), caller: caller, expected: nil) { current in
            var spec = ClientSpec(current)
            spec.name = f.name
            spec.clientURI = f.url
            spec.redirectURIs = [f.redirect]
            return spec
        }
        return .empty()
    }

    static func putImage(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, writeScope)
        let id = ctx.param("client_id")
        try ctx.store.read { try EndpointKit.registry(ctx).checkMaySetLogo(id, caller: caller) }
        guard request.mediaType == "multipart/form-data" else {
            throw Failure(status: 415, message: "Upload the image as multipart/form-data in the field image.")
        }
        let (declared, bytes) = try EndpointKit.uploadedImage(request)
        let png = try EndpointKit.processLogo(declared: declared, bytes: bytes, ctx)
        _ = try EndpointKit.registry(ctx).setLogo(id, caller: caller, png: png.logo, preview: png.preview)
        return .empty()
    }

    static func rotate(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, writeScope)
        let issued = try EndpointKit.registry(ctx).rotateSecret(ctx.param("client_id"), caller: caller, graceSeconds: 0)
        return Response.json(["client_id": .string(issued.client.clientID), "key": JSON(issued.secret)]).noStore()
    }

    static func delete(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, writeScope)
        try EndpointKit.registry(ctx).delete(ctx.param("client_id"), caller: caller)
        return .empty()
    }

    // MARK: Consent code

    /// This surface's answer to a failed authorization check.
    static func failure(_ check: AuthorizationCheck) -> Failure {
        switch check {
        case .clientMissing: return Failure(status: 400, message: "client_id is required.")
        case .clientUnknown, .redirectURINotRegistered, .grantNotAllowed: return Failure(status: 404, message: "App not found.")
        case .scopeMalformed: return Failure(status: 400, message: "scope is required and must be at most 255 characters.")
        case .openIDRequired: return Failure(status: 400, message: "scope must include openid.")
        case .challengeMethodUnsupported: return Failure(status: 400, message: "code_challenge_method must be S256.")
        case .challengeMissing, .challengeMethodMissing: return Failure(status: 400, message: "code_challenge and code_challenge_method go together.")
        case .challengeMalformed: return Failure(status: 400, message: "code_challenge must be 43..128 characters of [A-Za-z0-9._~-].")
        case .pkceRequired: return Failure(status: 400, message: "Public apps must use PKCE (S256).")
        case .nonceTooLong, .nonceNotPrintable: return Failure(status: 400, message: "nonce must be printable and at most 255 characters.")
        // Parameters this surface does not take (the field list refuses them first).
        case .redirectURIMissing, .parameterRepeated, .responseModeUnsupported, .responseTypeMissing, .responseTypeUnsupported,
             .requestObjectUnsupported, .requestURIUnsupported, .scopeNotAllowed, .promptInvalid, .maxAgeInvalid, .stateTooLong, .stateNotPrintable,
             .claimsMalformed, .acrUnmet, .dpopKeyMalformed:
            return Failure(status: 400, message: AuthorizationService.describe(check))
        }
    }

    /// A signed-in user approves an app directly: a code for the app's one
    /// redirect URI (single use, 60 s).
    static func authCode(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let user: User
        /// When the user last signed in (OIDC Core §2 auth_time): the session's, or the one the user's token carries.
        let authTime: Int64
        /// A user token serves only for apps of its own client's organization (SPEC 6.4).
        var organization: String?
        /// The session signing in, when it is one (Back-Channel Logout).
        var session: SessionRecord?
        if request.headers.value(.authorization) != nil {
            let caller = try UserEndpoints.userCaller(request, ctx, scopes: ["gov.user.oauth.authorize"])
            user = caller.user
            authTime = caller.claims.authTime ?? caller.claims.issuedAt
            organization = caller.client.organizationID
        } else {
            let s = try UserEndpoints.sessionUser(request, ctx, write: true)
            user = s.user
            authTime = s.session.authTime
            session = s.session
        }
        let members = try EndpointKit.jsonObject(request)
        let allowed = ["client_id", "scope", "nonce", "code_challenge", "code_challenge_method"]
        if let unknown = members.first(where: { !allowed.contains($0.0) }) { throw Failure(status: 400, message: "Unknown field: \(Echo.name(unknown.0)).") }
        var r = FieldReader(.object(members)) { Failure(status: 400, message: "\($0.field) \($0.message).") }
        let parameters = AuthorizationParameters(clientID: try r.string("client_id"), scope: try r.string("scope"), nonce: try r.string("nonce"),
                                                 codeChallenge: try r.string("code_challenge"),
                                                 codeChallengeMethod: try r.string("code_challenge_method"))
        let authorization: AuthorizationRequest
        do {
            (_, authorization) = try AuthorizationChecks.run(parameters, surface: .appAPI) { id in
                try ctx.store.read { try EndpointKit.registry(ctx).app(forCode: id, organization: organization) }
            }
        } catch let failure as AuthorizationFailure {
            throw AppSurface.failure(failure.check)
        }
        do {
            let code = try AuthorizationService(env: ctx.env, store: ctx.store)
                .issueCode(authorization, user: user, authTime: authTime, session: session, scope: authorization.scope, consent: .replace,
                           answering: nil)
            return Response.json(["code": .string(code)]).noStore()
        } catch ConsentError.clientChanged {
            // Disabled or changed between the checks above and the code's transaction.
            throw RegistryError.notFound
        } catch ConsentError.loginRequired {
            // The session ended between its check above and the code's transaction.
            throw Failure(status: 401, message: "Sign in again.")
        }
    }

    // MARK: Connections

    static func listConnections(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let user = try UserEndpoints.user(request, ctx, scopes: ["gov.user.oauth.connection:read"], write: false)
        let (amount, offset) = try page(request)
        let list = try ConnectionService(env: ctx.env, store: ctx.store).list(userID: user.id, limit: amount, offset: offset).connections
        return .json(["connections": .array(list.map { UserEndpoints.connectionJSON($0.0, $0.1, ctx, withName: false) })])
    }

    static func getConnection(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let user = try UserEndpoints.user(request, ctx, scopes: ["gov.user.oauth.connection:read"], write: false)
        guard let (c, client) = try ConnectionService(env: ctx.env, store: ctx.store).get(userID: user.id, clientID: ctx.param("client_id")) else {
            throw Failure(status: 404, message: "Connection not found.")
        }
        return .json(UserEndpoints.connectionJSON(c, client, ctx, withName: false))
    }

    static func deleteConnection(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let user = try UserEndpoints.user(request, ctx, scopes: ["gov.user.oauth.connection:write"], write: true)
        guard try ConnectionService(env: ctx.env, store: ctx.store).delete(userID: user.id, clientID: ctx.param("client_id")) else {
            throw Failure(status: 404, message: "Connection not found.")
        }
        return .empty()
    }
}

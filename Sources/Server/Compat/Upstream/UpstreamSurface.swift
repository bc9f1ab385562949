import Common
import HTTPCore
import OAuth

/// The workload automation controller's `oauthclient` web services (SPEC
/// 6.5), `/uc/resources/oauthclient`: OAuth clients Latchkey holds at an
/// upstream provider, in JSON or XML, behind HTTP Basic, with plain-text
/// messages.
enum UpstreamSurface {
    static let scope = "providers:manage"
    static let prohibited = "Operation prohibited due to security constraints."
    static let readOnlyFields = ["authorizationEndpoint", "tokenEndpoint", "exportReleaseLevel", "exportTable"]
    static let fields = ["clientId", "clientSecret", "clusterRedirectUrls", "description", "name", "opswiseGroups", "provider", "retainSysIds",
                         "scopes", "sysId", "tenantId", "version"] + readOnlyFields
    static let exportReleaseLevel = "7.6.0.0"
    static let exportTable = "ops_oauth_client"

    struct Failure: Error {
        let status: HTTPResponse.Status
        let message: String
        var challenge = false
    }

    static func text(_ message: String, _ status: HTTPResponse.Status) -> Response { .text(message, status: status) }

    static func render(_ error: Error, request: Request) -> Response? {
        switch error {
        case let f as Failure:
            var r = text(f.message, f.status)
            if f.challenge { r.headers[.wwwAuthenticate] = "Basic realm=\"latchkey\", charset=\"UTF-8\"" }
            return r
        case let e as UpstreamError:
            switch e {
            case let .invalid(field, message): return text("Invalid \(field): \(message).", 400)
            case let .notFoundByName(name): return text("An OAuth Client with name \"\(name)\" does not exist.", 404)
            case let .notFoundByID(id): return text("An OAuth Client with id \"\(id)\" does not exist.", 404)
            case let .conflict(message): return text(message, 409)
            }
        case let p as APIProblem where p.status.kind != .serverError: return text(p.detail, p.status)
        case is OAuthError: return text(prohibited, 403)
        default: return nil
        }
    }

    /// HTTP Basic with a client holding providers:manage and the
    /// client_credentials grant; anything else is 403 (401 with a challenge
    /// when no credentials were sent).
    static func caller(_ request: Request, _ ctx: RequestContext) throws -> Caller {
        switch BasicCredentials.parse(request.headers.value(.authorization), formDecode: false) {
        case .absent:
            // 401 only when nothing was sent; a bearer token or another scheme is refused like wrong credentials (SPEC 6.5).
            if request.headers.value(.authorization) != nil { throw Failure(status: 403, message: prohibited) }
            throw Failure(status: 401, message: prohibited, challenge: true)
        case .malformed: throw Failure(status: 403, message: prohibited)
        case let .credentials(user, password):
            let client: Client
            do {
                client = try ctx.store.read {
                    try ctx.clientAuthenticator(request).authenticate(.basic(clientID: user, secret: password), allowPublic: false, enforceMethod: false)
                }
            } catch let e as OAuthError where e.status == 401 {
                throw Failure(status: 403, message: prohibited)
            }
            // The client acting as itself, as a client_credentials token would (SPEC 3): an operator who took that
            // grant away to end a client's management power ended this too (attacker review, session 18).
            guard client.scope.contains(scope), client.grantTypes.contains(.clientCredentials) else { throw Failure(status: 403, message: prohibited) }
            return Caller(client: client, scopes: client.scope, requestID: request.requestID, surface: Surface.upstream.rawValue)
        }
    }

    static func registry(_ ctx: RequestContext) -> UpstreamRegistry { UpstreamRegistry(env: ctx.env, store: ctx.store) }

    // MARK: Formats

    static func wantsXML(_ request: Request, default isXML: Bool) -> Bool {
        guard let accept = request.headers.value(.accept)?.lowercased(), !accept.isEmpty, accept != "*/*" else { return isXML }
        let xml = accept.firstRange(of: "xml")
        let json = accept.firstRange(of: "json")
        if let xml, let json { return xml.lowerBound < json.lowerBound }
        return xml != nil ? true : (json != nil ? false : isXML)
    }

    static func requestIsXML(_ request: Request) throws -> Bool {
        switch request.mediaType {
        case "application/json": return false
        case "application/xml", "text/xml": return true
        default: throw Failure(status: 415, message: "The body must be application/json or application/xml.")
        }
    }

    static func input(_ request: Request) throws -> UpstreamInput {
        guard !request.body.isEmpty else { throw Failure(status: 400, message: "The request body is empty.") }
        return try requestIsXML(request) ? xmlInput(request.body) : jsonInput(request.body)
    }

    static func bad(_ field: String, _ why: String) -> Failure { Failure(status: 400, message: "Invalid \(field): \(why).") }

    static func jsonInput(_ bytes: [UInt8]) throws -> UpstreamInput {
        let body: JSON
        do { body = try JSON.parse(bytes) } catch let e as JSONParseError { throw Failure(status: 400, message: "Invalid JSON: \(e.description).") }
        guard let members = body.objectValue else { throw Failure(status: 400, message: "The body must be a JSON object.") }
        if let unknown = members.first(where: { !fields.contains($0.0) }) { throw bad(Echo.name(unknown.0), "is not a known field") }
        var input = UpstreamInput()
        var r = FieldReader(body) { bad($0.field, $0.message) }
        input.sysID = try r.string("sysId")
        input.name = try r.string("name")
        input.tenantID = try r.string("tenantId")
        input.clientID = try r.string("clientId")
        input.clientSecret = try r.string("clientSecret")
        input.description = try r.string("description")
        input.opswiseGroups = try r.strings("opswiseGroups")
        input.scopes = try r.strings("scopes")
        switch body["provider"] {
        case nil, .null?: break
        case let .string(s)?: input.provider = s
        case let .int(i)?: input.provider = String(i)
        default: throw bad("provider", "must be Azure AD or Google")
        }
        input.retainSysIDs = try r.bool("retainSysIds") ?? input.retainSysIDs
        input.version = try r.int("version")
        if let v = body["clusterRedirectUrls"], !v.isNull {
            guard let items = v.arrayValue else { throw bad("clusterRedirectUrls", "must be an array") }
            input.clusterRedirectURLs = try items.enumerated().map { i, item in
                guard let node = item["clusterNode"]?.stringValue, let url = item["redirectUrl"]?.stringValue,
                      item.objectValue?.count == 2 else {
                    throw bad("clusterRedirectUrls[\(i)]", "must be {\"clusterNode\", \"redirectUrl\"}")
                }
                return (node: node, url: url)
            }
        }
        return input
    }

    static func xmlInput(_ bytes: [UInt8]) throws -> UpstreamInput {
        let root: XMLElement
        do { root = try XMLElement.parse(bytes) } catch let e as XMLParseError { throw Failure(status: 400, message: "Invalid XML: \(e.description).") }
        guard root.name == "oauthClient" else { throw bad("root element", "must be <oauthClient>") }
        var input = UpstreamInput()
        if let retain = root.attribute("retainSysIds") {
            guard retain == "true" || retain == "false" else { throw bad("retainSysIds", "must be true or false") }
            input.retainSysIDs = retain == "true"
        }
        var seen = Set<String>()
        for child in root.children {
            guard fields.contains(child.name), child.name != "retainSysIds" else { throw bad(Echo.name(child.name), "is not a known field") }
            guard seen.insert(child.name).inserted else { throw bad(child.name, "appears more than once") }
            func list(_ item: String) throws -> [String] {
                try child.children.map {
                    guard $0.name == item, $0.children.isEmpty else { throw bad(child.name, "must contain only <\(item)> elements") }
                    return $0.text
                }
            }
            switch child.name {
            case "sysId": input.sysID = child.text
            case "name": input.name = child.text
            case "provider": input.provider = child.text
            case "tenantId": input.tenantID = child.text
            case "clientId": input.clientID = child.text
            case "clientSecret": input.clientSecret = child.text
            case "description": input.description = child.text
            case "version":
                guard let v = Int(child.text.trimmingXMLSpacePublic()) else { throw bad("version", "must be an integer") }
                input.version = v
            case "scopes": input.scopes = try list("scope")
            case "opswiseGroups": input.opswiseGroups = try list("opswiseGroup")
            case "clusterRedirectUrls":
                input.clusterRedirectURLs = try child.children.enumerated().map { i, entry in
                    guard entry.name == "clusterRedirectUrl", let node = entry.child("clusterNode")?.text, let url = entry.child("redirectUrl")?.text,
                          entry.children.count == 2 else {
                        throw bad("clusterRedirectUrls[\(i)]", "must be <clusterRedirectUrl><clusterNode/><redirectUrl/></clusterRedirectUrl>")
                    }
                    return (node: node, url: url)
                }
            default: break
            }
        }
        return input
    }

    static func json(_ r: UpstreamClient) -> JSON {
        [
            "authorizationEndpoint": .string(r.authorizationEndpoint), "clientId": .string(r.clientID),
            "clusterRedirectUrls": .array(r.clusterRedirectURLs.map { ["clusterNode": .string($0.node), "redirectUrl": .string($0.url)] }),
            "description": JSON(r.description), "exportReleaseLevel": .string(exportReleaseLevel), "exportTable": .string(exportTable),
            "name": .string(r.name), "opswiseGroups": JSON(r.opswiseGroups), "provider": .string(r.provider.rawValue), "retainSysIds": true,
            "scopes": JSON(r.scopes), "sysId": .string(r.sysID), "tenantId": JSON(r.tenantID), "tokenEndpoint": .string(r.tokenEndpoint),
            "version": JSON(r.version),
        ]
    }

    static func xml(_ r: UpstreamClient) -> XMLElement {
        func leaf(_ name: String, _ text: String?) -> XMLElement { XMLElement(name: name, text: text ?? "") }
        return XMLElement(name: "oauthClient", attributes: [("retainSysIds", "true")], children: [
            leaf("authorizationEndpoint", r.authorizationEndpoint), leaf("clientId", r.clientID),
            XMLElement(name: "clusterRedirectUrls", children: r.clusterRedirectURLs.map {
                XMLElement(name: "clusterRedirectUrl", children: [leaf("clusterNode", $0.node), leaf("redirectUrl", $0.url)])
            }),
            leaf("description", r.description), leaf("exportReleaseLevel", exportReleaseLevel), leaf("exportTable", exportTable),
            leaf("name", r.name), XMLElement(name: "opswiseGroups", children: r.opswiseGroups.map { leaf("opswiseGroup", $0) }),
            leaf("provider", r.provider.rawValue), XMLElement(name: "scopes", children: r.scopes.map { leaf("scope", $0) }), leaf("sysId", r.sysID),
            leaf("tenantId", r.tenantID), leaf("tokenEndpoint", r.tokenEndpoint), leaf("version", String(r.version)),
        ])
    }

    static func respond(_ records: [UpstreamClient], single: Bool, _ request: Request) -> Response {
        if wantsXML(request, default: false) {
            let doc = single ? xml(records[0]) : XMLElement(name: "oauthClients", children: records.map(xml))
            return .text(doc.serialized(), status: 200, contentType: "application/xml; charset=utf-8")
        }
        return .json(single ? json(records[0]) : .array(records.map(json)))
    }

    /// `oauthclientname` or `oauthclientid`, exactly one.
    static func lookup(_ request: Request) throws -> (name: String?, id: String?) {
        guard let items = request.queryItems else { throw Failure(status: 400, message: "The query string is not valid percent-encoding.") }
        let name = items.first(where: { $0.0 == "oauthclientname" })?.1
        let id = items.first(where: { $0.0 == "oauthclientid" })?.1
        guard (name == nil) != (id == nil), !(name ?? id ?? "").isEmpty else {
            throw Failure(status: 400, message: "Give exactly one of oauthclientname and oauthclientid.")
        }
        return (name, id)
    }

    // MARK: Routes

    static func create(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx)
        let record = try registry(ctx).create(try input(request), caller: caller)
        return text("Successfully created the OAuth Client with id \(record.sysID).", 200)
    }

    static func update(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx)
        let record = try registry(ctx).update(try input(request), caller: caller)
        return text("Successfully updated the OAuth Client with id \(record.sysID).", 200)
    }

    static func get(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx)
        let (name, id) = try lookup(request)
        return respond([try registry(ctx).find(name: name, sysID: id, caller: caller)], single: true, request)
    }

    static func delete(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx)
        let (name, id) = try lookup(request)
        try registry(ctx).delete(name: name, sysID: id, caller: caller)
        return text("OAuth Client deleted successfully.", 200)
    }

    static func list(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx)
        return respond(try registry(ctx).list(caller: caller), single: false, request)
    }
}

import Common
import HTTPCore
import Imaging
import OAuth

/// What every management surface shares (issue 12): the bearer caller, the
/// registry, JSON object bodies, logo uploads and logo answers. The native
/// API and the four compatible surfaces call these and keep only their own
/// request and response mapping.
enum EndpointKit {
    // MARK: Callers

    /// The access token of `Authorization: Bearer …` or, for DPoP-bound
    /// tokens (RFC 9449 §7.1), `Authorization: DPoP …`.
    static func bearerToken(_ request: Request) -> String? {
        // By byte, as HTTP is defined (RFC 9110 §11.4): splitting the String would walk a long token's grapheme clusters.
        guard let header = request.headers.value(.authorization) else { return nil }
        let bytes = header.utf8
        guard let start = bytes.firstIndex(where: { $0 != 0x20 }), let space = bytes[start...].firstIndex(of: 0x20) else { return nil }
        let rest = bytes[bytes.index(after: space)...]
        guard !rest.isEmpty else { return nil }
        let scheme = String(Substring(bytes[start..<space])).lowercased()
        guard scheme == "bearer" || scheme == "dpop" else { return nil }
        return Substring(rest).trimmingSpaces()
    }

    /// Whether the Authorization header's scheme is `DPoP` (in any case), read
    /// by byte: every management request asks, bound token or not.
    static func usesDPoPScheme(_ request: Request) -> Bool {
        guard let bytes = request.headers.value(.authorization)?.utf8, let start = bytes.firstIndex(where: { $0 != 0x20 }) else { return false }
        let scheme = bytes[start..<(bytes[start...].firstIndex(of: 0x20) ?? bytes.endIndex)]
        return scheme.count == 4 && zip(scheme, "dpop".utf8).allSatisfy { $0 | 0x20 == $1 }
    }

    /// The bearer token's client, which must hold one of `scopes` (any when
    /// empty). Every management surface comes through here: only a token the
    /// client obtained for itself (client_credentials) is accepted (SPEC 3).
    static func caller(_ request: Request, _ ctx: RequestContext, scopes: [String], surface: Surface) throws -> Caller {
        let (caller, proof) = try callerProvingLater(request, ctx, scopes: scopes, surface: surface)
        try proof()
        return caller
    }

    /// `caller` for a read that wants one transaction for the caller and
    /// what it reads: the DPoP proof of a bound token (its jti is written)
    /// is checked by `proof`, which the handler calls after the read and
    /// before answering. Only for handlers without side effects.
    static func callerProvingLater(_ request: Request, _ ctx: RequestContext, scopes: [String],
                                   surface: Surface) throws -> (caller: Caller, proof: () throws -> Void) {
        let token = bearerToken(request)
        let (claims, client) = try ctx.store.read { try ctx.tokens.authenticateBearer(token, clientOnly: true) }
        let caller = Caller(client: client, scopes: claims.scope, requestID: request.requestID, surface: surface.rawValue)
        do {
            try TokenService.requireScope(scopes, of: claims)
        } catch {
            // A bound token's binding first: without the key's proof, a 401, whatever the token's scope. Checked
            // without recording the proof's jti: this may run inside a read (`getClient`), where a write is a crash
            // (review of the change, session 32), and a proof replayed here gets the same 403 again, nothing else.
            if let token { try DPoPEndpoint.checkBinding(request, ctx, token: token, claims: claims, recording: false) }
            throw error
        }
        return (caller, { if let token { try DPoPEndpoint.checkBinding(request, ctx, token: token, claims: claims) } })
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

    // MARK: Pagination

    /// How a surface names and bounds its page parameters.
    struct Paging {
        let limitName: String
        let maxLimit: Int
        /// nil: the limit is required.
        let defaultLimit: Int?
        let offsetRequired: Bool
        var maxOffset = 1_000_000_000

        /// `limit` 1..250 (50 when absent), `offset` >= 0 (the native API, /v3).
        static let standard = Paging(limitName: "limit", maxLimit: 250, defaultLimit: 50, offsetRequired: false)
        /// `amount` 1..255 and `offset`, both required (the app API).
        static let amountAndOffset = Paging(limitName: "amount", maxLimit: 255, defaultLimit: nil, offsetRequired: true)
        /// The audit log, which no client limit bounds: `offset` at most `AuditLog.maxOffset` (deeper with `before`).
        static let audit = Paging(limitName: "limit", maxLimit: 250, defaultLimit: 50, offsetRequired: false, maxOffset: AuditLog.maxOffset)
    }

    /// The page a list request asks for; a problem is the surface's own error
    /// (`refuse`). Offsets stop at a billion (the audit log's sooner): past that a scan costs without an answer.
    static func page(_ request: Request, _ paging: Paging, refuse: (FieldError) -> any Error) throws -> (limit: Int, offset: Int) {
        guard let items = request.queryItems else { throw refuse(FieldError("query", "is not valid percent-encoding")) }
        func value(_ name: String) -> String? { items.first(where: { $0.0 == name })?.1 }
        let limitRange = 1...paging.maxLimit
        var limit = paging.defaultLimit ?? 0
        if let raw = value(paging.limitName) {
            guard let v = Int(raw), limitRange.contains(v) else { throw refuse(FieldError(paging.limitName, "must be \(limitRange.lowerBound)..\(limitRange.upperBound)")) }
            limit = v
        } else if paging.defaultLimit == nil {
            throw refuse(FieldError(paging.limitName, "is required and must be \(limitRange.lowerBound)..\(limitRange.upperBound)"))
        }
        var offset = 0
        if let raw = value("offset") {
            guard let v = Int(raw), v >= 0 else { throw refuse(FieldError("offset", "must be a non-negative integer")) }
            guard v <= paging.maxOffset else { throw refuse(FieldError("offset", "must be at most \(paging.maxOffset)")) }
            offset = v
        } else if paging.offsetRequired {
            throw refuse(FieldError("offset", "is required and must be a non-negative integer"))
        }
        return (limit, offset)
    }

    // MARK: Logos

    static let maxLogoBytes = 1024 * 1024

    /// The image of a logo upload: a multipart `image` field or a raw image body.
    static func uploadedImage(_ request: Request) throws -> (declared: String?, bytes: [UInt8]) {
        guard let type = request.mediaType else { throw APIProblem.unsupportedMediaType("multipart/form-data, image/png, image/jpeg or image/gif") }
        if type == "multipart/form-data" {
            guard let boundary = Multipart.boundary(fromContentType: request.headers.value(.contentType) ?? ""),
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
    /// The preview the public app reads carry inline (SPEC 6.4, 7.1): 64 px,
    /// or 32 px when a noisy image makes that larger than `maxPreviewBytes`
    /// (a 64 px preview of noise is 14 KB, and a public read carries twenty:
    /// review, session 20).
    static let previewSides = [64, 32]
    static let maxPreviewBytes = 6_144

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
            let sizes = try ctx.images.reencode(bytes, format, [256] + previewSides)
            return (sizes[0], sizes[1].count <= maxPreviewBytes ? sizes[1] : sizes[2])
        } catch let busy as SlowHashesBusy {
            throw busy  // every decode permit is taken: 503 in the surface's one shape (ErrorRendering)
        } catch {
            throw APIProblem(status: 400, code: "invalid_image", title: "Invalid image", detail: "The image could not be decoded.")
        }
    }

    static func logoResponse(_ logo: (contentType: String, image: [UInt8], etag: String), _ request: Request) -> Response {
        let etag = "\"\(logo.etag)\""
        var response: Response
        if let inm = request.headers.value(.ifNoneMatch), inm.split(separator: ",").contains(where: { $0.trimmingSpaces() == etag || $0.trimmingSpaces() == "*" }) {
            response = Response(status: 304)
        } else {
            response = Response(status: .ok, headers: [.contentType: "image/png"], body: logo.image)
        }
        response.headers[.eTag] = etag
        response.headers[.cacheControl] = "public, max-age=300"
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.contentSecurityPolicy] = "default-src 'none'"
        response.headers[.crossOriginResourcePolicy] = "same-site"
        return response
    }
}

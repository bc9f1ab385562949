import Common
import HTTPCore
import Imaging
import OAuth

/// Client logos (SPEC 6.1): uploads decoded out of process, served as blobs with their ETag.
extension NativeEndpoints {
    // MARK: Logos

    static let maxLogoBytes = 1024 * 1024

    /// The image of a logo upload: a multipart `image` field or a raw image body.
    static func uploadedImage(_ request: Request) throws -> (declared: String?, bytes: [UInt8]) {
        guard let type = request.mediaType else { throw APIProblem.unsupportedMediaType("multipart/form-data, image/png, image/jpeg or image/gif") }
        if type == "multipart/form-data" {
            guard let boundary = Multipart.boundary(fromContentType: request.headers[.contentType] ?? ""),
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
        } catch let busy as SlowHashesBusy {
            throw busy  // every decode permit is taken: 503 in the surface's one shape (ErrorRendering)
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
        if let inm = request.headers[.ifNoneMatch], inm.split(separator: ",").contains(where: { $0.trimmingSpaces() == etag || $0.trimmingSpaces() == "*" }) {
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

    static func deleteLogo(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        try registry(ctx).deleteLogo(ctx.param("id"), caller: caller)
        return .empty()
    }
}

import Common
import HTTPCore
import Imaging
import OAuth

/// Client logos (SPEC 6.1): uploads decoded out of process, served as blobs with their ETag.
extension NativeEndpoints {
    // MARK: Logos

    static func putLogo(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        let id = ctx.param("id")
        try ctx.store.read { try EndpointKit.registry(ctx).checkMaySetLogo(id, caller: caller) }
        let (declared, bytes) = try EndpointKit.uploadedImage(request)
        let png = try EndpointKit.processLogo(declared: declared, bytes: bytes, ctx)
        _ = try EndpointKit.registry(ctx).setLogo(id, caller: caller, png: png.logo, preview: png.preview)
        return .empty()
    }

    /// Public: the consent screen shows logos to people who are not API callers.
    static func getLogo(_ request: Request, _ ctx: RequestContext) throws -> Response {
        guard let logo = try ctx.store.read({ try ctx.store.logo(clientID: ctx.param("id")) }) else { throw APIProblem.notFound() }
        return EndpointKit.logoResponse(logo, request)
    }

    static func deleteLogo(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let caller = try caller(request, ctx, scopes: ["clients:write"])
        try EndpointKit.registry(ctx).deleteLogo(ctx.param("id"), caller: caller)
        return .empty()
    }
}

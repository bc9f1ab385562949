import Common
import HTTPCore
import OAuth

enum SystemEndpoints {
    /// 200 once the database answers and a signing key exists; 503 otherwise.
    static func health(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let ready = (try? ctx.keys.signingKey()) != nil
        var response = Response.json(["status": ready ? "ok" : "unavailable"], status: ready ? 200 : 503)
        response.headers["Cache-Control"] = "no-store"
        return response
    }
}

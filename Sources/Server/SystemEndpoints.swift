import Common
import HTTPCore
import OAuth

enum SystemEndpoints {
    /// 200 once the database answers and a signing key exists; 503 otherwise.
    static func health(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let ready = (try? ctx.keys.signingKey()) != nil
        return Response.json(["status": ready ? "ok" : "unavailable"], status: ready ? 200 : 503).noStore()
    }

    /// Prometheus text metrics of this node. nginx serves the path only to
    /// the private network (`location = /metrics`); the workers answer it
    /// whoever asks, as a scraper may reach a node directly.
    static func metrics(_ request: Request, _ ctx: RequestContext) throws -> Response {
        return Response.text(ctx.metrics.render(pool: ctx.guards.pool), status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8").noStore()
    }
}

import Common
import HTTPCore
import OAuth

enum SystemEndpoints {
    /// 200 once the database answers (a read of its own, on PostgreSQL a
    /// round trip: the key ring signs on with the keys it loaded while the
    /// database is gone a moment, so a key says nothing of it) and a signing
    /// key exists; otherwise 503 with `Retry-After`, as every answer then.
    static func health(_ request: Request, _ ctx: RequestContext) throws -> Response {
        let storeAnswers = (try? ctx.store.read { _ = try ctx.store.meta("keys_version"); return true }) ?? false
        let ready = storeAnswers && (try? ctx.keys.signingKey()) != nil
        var response = Response.json(["status": ready ? "ok" : "unavailable"], status: ready ? 200 : 503).noStore()
        if !ready { response.headers[.retryAfter] = "1" }
        return response
    }

    /// Prometheus text metrics of this node. nginx serves the path only to
    /// the private network (`location = /metrics`); the workers answer it
    /// whoever asks, as a scraper may reach a node directly.
    static func metrics(_ request: Request, _ ctx: RequestContext) throws -> Response {
        return Response.text(ctx.metrics.render(pool: ctx.guards.pool, failures: ctx.guards.failures), status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8").noStore()
    }
}

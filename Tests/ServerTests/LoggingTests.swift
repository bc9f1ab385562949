import Common
import HTTPCore
import OAuth
import Server
import Synchronization
import TestSupport
import Testing

/// Collects what a logger writes.
final class LogLines: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    var sink: Logger.Sink { { bytes in self.lines.withLock { $0.append(String(decoding: bytes, as: UTF8.self)) } } }
}

@Suite struct RequestLogTests {
    func worker(_ h: Harness, level: Logger.Level, into lines: LogLines) throws -> Worker {
        try Worker(app: Application(env: h.env, logger: Logger(level: level, sink: lines.sink)), store: h.store)
    }

    func call(_ worker: Worker, _ method: String, _ path: String, headers: [(String, String)] = [], body: String = "") -> Response {
        worker.handle(Request(method: HTTPRequest.Method(method)!, path: path, query: "", headers: HTTPFields(headers), body: Array(body.utf8), requestID: "req-log"))
    }

    @Test func atInfoSuccessesAreLeftToTheAccessLogAndRefusalsAreLogged() throws {
        let h = try Harness()
        let lines = LogLines()
        let w = try worker(h, level: .info, into: lines)
        #expect(call(w, "GET", "/healthz").status == 200)
        #expect(lines.all.isEmpty)
        let refused = call(w, "POST", "/oauth2/token", headers: [
            ("Content-Type", "application/x-www-form-urlencoded"), ("Authorization", Harness.basic(h.primary.clientID, "lks_wrong-secret")),
        ], body: "grant_type=client_credentials")
        #expect(refused.status == 401)
        #expect(call(w, "GET", "/no/such/path").status == 404)
        let logged = lines.all
        #expect(logged.count == 2)
        let first = try JSON.parse(logged[0].trimmingSuffixNewline)
        #expect(first["level"]?.stringValue == "info")
        #expect(first["status"]?.intValue == 401)
        #expect(first["path"]?.stringValue == "/oauth2/token")
        #expect(first["request_id"]?.stringValue == "req-log")
        #expect(first["error"]?.stringValue?.hasPrefix("invalid_client (401) at ") == true)
        #expect(logged.allSatisfy { $0.hasSuffix("\n") && !$0.contains("lks_") && !$0.contains("Basic") })
    }

    @Test func atDebugEveryRequestIsLogged() throws {
        let h = try Harness()
        let lines = LogLines()
        let w = try worker(h, level: .debug, into: lines)
        #expect(call(w, "GET", "/healthz").status == 200)
        let line = try JSON.parse(try #require(lines.all.first).trimmingSuffixNewline)
        #expect(line["level"]?.stringValue == "debug")
        #expect(line["status"]?.intValue == 200)
    }

    @Test func offAndErrorLevelsKeepQuiet() throws {
        let h = try Harness()
        for level in [Logger.Level.error, .off] {
            let lines = LogLines()
            let w = try worker(h, level: level, into: lines)
            #expect(call(w, "GET", "/no/such/path").status == 404)
            Logger(level: level, sink: lines.sink).info("started")
            #expect(lines.all.isEmpty)
        }
        #expect(Logger(level: .error).logs(.error))
        #expect(!Logger(level: .off).logs(.error))
    }

    @Test func credentialsEchoedInAPathOrAnErrorAreRedacted() throws {
        let secret = "lks_XMsn-luwyLr5Jdg3FkmJ37QPx2hlDsmBCJ4UVjDYvsU"
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
        #expect(Logger.redacted("/api/v1/clients/\(secret)/logo") == "/api/v1/clients/[redacted lks]/logo")
        #expect(Logger.redacted("unknown_field: \(secret) is not a known field") == "unknown_field: [redacted lks] is not a known field")
        #expect(Logger.redacted("token \(jwt), lkr_\(secret.dropFirst(4)).") == "token [redacted JWT], [redacted lkr]")
        // Ids and ordinary words are left alone.
        for text in ["/api/v1/clients/c_8f2a9d0b1e7c4a55", "/oauth2/token", "invalid_client (401) at OAuth/ClientAuthentication.swift:50: bad secret",
                     "lks_short", "ablks_XMsn-luwyLr5Jdg3FkmJ37QPx2h", "é lk"] {
            #expect(Logger.redacted(text) == text)
        }
        let h = try Harness()
        let lines = LogLines()
        let w = try worker(h, level: .info, into: lines)
        let token = try h.token()
        #expect(call(w, "POST", "/api/v1/clients", headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "application/json")],
                     body: "{\"client_name\": \"x\", \"\(secret)\": 1}").status == 400)
        #expect(call(w, "GET", "/api/v1/clients/\(secret)", headers: [("Authorization", "Bearer \(token)")]).status == 404)
        #expect(lines.all.count == 2)
        #expect(lines.all.allSatisfy { !$0.contains(secret) && !$0.contains("lks_") && $0.contains("[redacted lks]") })
        // A pending authorization request's id is left out (secret hygiene review, session 29), its action kept.
        #expect(Logger.loggedPath("/api/v1/authorization-requests/Zk3v9aQ_0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7/accept")
                == "/api/v1/authorization-requests/[redacted]/accept")
        #expect(Logger.loggedPath("/api/v1/authorization-requests/Zk3v9aQ_0b1c2d3e") == "/api/v1/authorization-requests/[redacted]")
        #expect(Logger.loggedPath("/api/v1/clients/\(secret)") == "/api/v1/clients/[redacted lks]")
        #expect(call(w, "GET", "/api/v1/authorization-requests/Zk3v9aQ_0b1c2d3e4f5a/reject").status.code >= 400)
        #expect(lines.all.last?.contains("Zk3v9aQ") == false && lines.all.last?.contains("/api/v1/authorization-requests/[redacted]/reject") == true)
    }

    @Test func levelsByStatusAndName() {
        #expect(Logger.level(forStatus: 200) == .debug)
        #expect(Logger.level(forStatus: 303) == .debug)
        #expect(Logger.level(forStatus: 400) == .info)
        #expect(Logger.level(forStatus: 429) == .info)
        #expect(Logger.level(forStatus: 503) == .error)
        #expect(Logger.Level(name: "WARNING") == .warn)
        #expect(Logger.Level(name: "verbose") == nil)
        #expect(Logger.Level.allCases.allSatisfy { Logger.Level(name: $0.name) == $0 })
    }
}

extension String {
    var trimmingSuffixNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}

/// Per-node Prometheus metrics (issue 11): requests by route pattern and
/// status, latency histograms, saturation, the slow-hash pool.
@Suite struct MetricsTests {
    @Test func requestsAreCountedByRoutePatternNeverByRawPath() throws {
        let h = try Harness()
        let token = try h.token()
        _ = h.call("GET", "/healthz")
        _ = h.json("GET", "/api/v1/clients/some-unknown-id", token: token)
        _ = h.json("GET", "/api/v1/clients/another-unknown", token: token)
        _ = h.call("GET", "/no/such/path/at-all")
        let r = h.call("GET", "/metrics")
        #expect(r.status == 200)
        #expect(r.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
        let text = r.bodyText
        #expect(text.contains("latchkey_requests_total{route=\"/healthz\",status=\"200\"} 1"))
        #expect(text.contains("latchkey_requests_total{route=\"/api/v1/clients/{id}\",status=\"404\"} 2"))
        #expect(text.contains("latchkey_requests_total{route=\"unmatched\",status=\"404\"} 1"))
        #expect(text.contains("latchkey_requests_total{route=\"/oauth2/token\",status=\"200\"} 1"))
        #expect(text.contains("latchkey_request_duration_seconds_count{route=\"/api/v1/clients/{id}\"} 2"))
        #expect(text.contains("latchkey_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 1"))
        #expect(text.contains("latchkey_slow_hash_in_use 0"))
        #expect(text.contains("# TYPE latchkey_logout_deliveries_dropped_total counter\nlatchkey_logout_deliveries_dropped_total "))
        #expect(text.contains("latchkey_requests_in_flight 1"), "the scrape itself")
        #expect(!text.contains("some-unknown-id"), "raw paths never become labels")
    }

    @Test func aSharedDatabasesCountersAreRenderedWhenGiven() {
        let plain = Metrics(workers: 3).render()
        #expect(!plain.contains("latchkey_store_"), "SQLite: no round trips to count")
        let metrics = Metrics(workers: 3, store: {
            StoreCounters(roundTrips: 42, connects: 3, connectionsLost: 1, connectFailures: 2, retries: 5, cancels: 6)
        })
        let text = metrics.render()
        #expect(text.contains("# TYPE latchkey_store_round_trips_total counter\nlatchkey_store_round_trips_total 42\n"))
        #expect(text.contains("latchkey_store_connects_total 3\n"))
        #expect(text.contains("latchkey_store_connections_lost_total 1\n"))
        #expect(text.contains("latchkey_store_connect_failures_total 2\n"))
        #expect(text.contains("latchkey_store_retries_total 5\n"))
        #expect(text.contains("# TYPE latchkey_store_cancels_total counter\nlatchkey_store_cancels_total 6\n"))
    }

    @Test func aSharedFailureLimitersFlushesAreRendered() {
        #expect(!Metrics(workers: 3).render(failures: FailureLimiter()).contains("latchkey_failure_count"), "one node: nothing shared")
        let limiter = FailureLimiter(shared: true)
        limiter.recordFailure(FailureLimiter.keys(account: "client-a", address: "192.0.2.1"), now: 1_000)
        let text = Metrics(workers: 3).render(failures: limiter)
        #expect(text.contains("# TYPE latchkey_failure_counts_unsent gauge\nlatchkey_failure_counts_unsent 2\n"))
        #expect(text.contains("# TYPE latchkey_failure_count_flushes_failed_total counter\nlatchkey_failure_count_flushes_failed_total 0\n"))
    }

    @Test func thePoolsAcceptCountersAreRenderedWhenGiven() {
        #expect(!Metrics(workers: 3).render().contains("latchkey_accept_"))
        let text = Metrics(workers: 3, accepting: { (batched: 7, stolen: 2, refused: 4) }).render()
        #expect(text.contains("# TYPE latchkey_accept_batched_total counter\nlatchkey_accept_batched_total 7\n"))
        #expect(text.contains("latchkey_accept_stolen_total 2\n"))
        #expect(text.contains("# TYPE latchkey_accept_refused_total counter\nlatchkey_accept_refused_total 4\n"))
    }
}

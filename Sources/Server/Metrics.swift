import Cryptography
import Foundation
import OAuth
import Synchronization

extension SlowHashPool: SlowHashPoolGauge {}

/// Per-node metrics in the Prometheus text format (issue 11: operating
/// several nodes), written directly: a few counters and histograms do not
/// earn swift-metrics' and swift-prometheus' build time. Shared by every
/// worker thread of the process; route labels are the route table's
/// patterns (`/api/v1/clients/{id}`), never raw paths, so the label set
/// stays bounded whatever callers send.
public final class Metrics: Sendable {
    /// Latency buckets in milliseconds.
    static let buckets: [Int64] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500]

    struct Histogram {
        var counts = [Int](repeating: 0, count: Metrics.buckets.count)
        var count = 0
        var sumMillis: Int64 = 0
    }

    struct State {
        var requests: [String: [Int: Int]] = [:]
        var latency: [String: Histogram] = [:]
        var inFlight = 0
        var busiest = 0
        /// The database's clock minus this node's at the last measure (`ClockWatch`; PostgreSQL only).
        var clockOffsetMillis: Int64?
        /// Requests answered 503 because the database could not do their work, by cause.
        var storeRefusals: [String: Int] = [:]
    }

    private let state = Mutex(State())
    public let workers: Int
    /// The shared database's counters (PostgreSQL), read at each scrape.
    let store: (@Sendable () -> StoreCounters)?
    /// The worker pool's accepting: connections taken in batches, those another thread took over, and those
    /// refused for their peer address (`--allow-from`).
    let accepting: (@Sendable () -> (batched: Int, stolen: Int, refused: Int))?

    /// What this node listens on (`latchkey_node_info`), to tell nodes apart behind one balancer.
    public let node: String

    public init(workers: Int = 0, node: String = "", store: (@Sendable () -> StoreCounters)? = nil,
                accepting: (@Sendable () -> (batched: Int, stolen: Int, refused: Int))? = nil) {
        self.workers = workers
        self.node = node
        self.store = store
        self.accepting = accepting
    }

    public func started() {
        state.withLock { s in
            s.inFlight += 1
            s.busiest = max(s.busiest, s.inFlight)
        }
    }

    public func finished(route: String, status: Int, millis: Int64) {
        state.withLock { s in
            s.inFlight -= 1
            s.requests[route, default: [:]][status, default: 0] += 1
            var h = s.latency[route] ?? Histogram()
            for (i, bound) in Metrics.buckets.enumerated() where millis <= bound { h.counts[i] += 1 }
            h.count += 1
            h.sumMillis += millis
            s.latency[route] = h
        }
    }

    /// A request the database could not serve (`StoreError`'s transient cases): `busy` (locked past the wait),
    /// `unavailable` (not reached), `fault` (disk full, read-only, I/O).
    public func storeRefused(_ cause: String) {
        state.withLock { $0.storeRefusals[cause, default: 0] += 1 }
    }

    public func recordClockOffset(millis: Int64) {
        state.withLock { $0.clockOffsetMillis = millis }
    }

    /// The text exposition (version 0.0.4), with the slow-hash pool's state and, when the failure limiter shares
    /// its counts with other nodes, how that goes.
    public func render(pool: SlowHashPoolGauge? = nil, failures: FailureLimiter? = nil) -> String {
        let s = state.withLock { $0 }
        var out = ""
        out += "# HELP latchkey_requests_total Requests answered, by route pattern and status.\n# TYPE latchkey_requests_total counter\n"
        for route in s.requests.keys.sorted() {
            for (status, n) in s.requests[route]!.sorted(by: { $0.key < $1.key }) {
                out += "latchkey_requests_total{route=\"\(Metrics.escape(route))\",status=\"\(status)\"} \(n)\n"
            }
        }
        out += "# HELP latchkey_request_duration_seconds Time in the worker, by route pattern.\n# TYPE latchkey_request_duration_seconds histogram\n"
        for route in s.latency.keys.sorted() {
            let h = s.latency[route]!
            let label = Metrics.escape(route)
            for (i, bound) in Metrics.buckets.enumerated() {
                out += "latchkey_request_duration_seconds_bucket{route=\"\(label)\",le=\"\(Double(bound) / 1000)\"} \(h.counts[i])\n"
            }
            out += "latchkey_request_duration_seconds_bucket{route=\"\(label)\",le=\"+Inf\"} \(h.count)\n"
            out += "latchkey_request_duration_seconds_sum{route=\"\(label)\"} \(Double(h.sumMillis) / 1000)\n"
            out += "latchkey_request_duration_seconds_count{route=\"\(label)\"} \(h.count)\n"
        }
        out += "# HELP latchkey_requests_in_flight Requests being handled now.\n# TYPE latchkey_requests_in_flight gauge\n"
        out += "latchkey_requests_in_flight \(s.inFlight)\n"
        out += "# HELP latchkey_requests_in_flight_max The most requests handled at once since start (worker saturation).\n# TYPE latchkey_requests_in_flight_max gauge\n"
        out += "latchkey_requests_in_flight_max \(s.busiest)\n"
        if !node.isEmpty {
            out += "# HELP latchkey_node_info The node: what it listens on.\n# TYPE latchkey_node_info gauge\n"
            out += "latchkey_node_info{listen=\"\(Metrics.escape(node))\"} 1\n"
        }
        out += "# HELP latchkey_storage_refusals_total Requests answered 503 because the database could not do their work: busy (locked past "
            + "the wait), unavailable (not reached), fault (disk full, read-only, an I/O error), abandoned (a write that waited rolled back: "
            + "nginx had given the request up).\n# TYPE latchkey_storage_refusals_total counter\n"
        for cause in ["busy", "unavailable", "fault", "abandoned"] {
            out += "latchkey_storage_refusals_total{cause=\"\(cause)\"} \(s.storeRefusals[cause] ?? 0)\n"
        }
        if let offset = s.clockOffsetMillis {
            out += "# HELP latchkey_clock_offset_milliseconds The shared database's clock minus this node's, at the last measure (every minute).\n"
            out += "# TYPE latchkey_clock_offset_milliseconds gauge\nlatchkey_clock_offset_milliseconds \(offset)\n"
        }
        if workers > 0 {
            out += "# HELP latchkey_worker_threads Worker threads of this node.\n# TYPE latchkey_worker_threads gauge\nlatchkey_worker_threads \(workers)\n"
        }
        if let pool {
            out += "# HELP latchkey_slow_hash_in_use Slow password hashes running now.\n# TYPE latchkey_slow_hash_in_use gauge\n"
            out += "latchkey_slow_hash_in_use \(pool.inUse)\n"
            out += "# HELP latchkey_slow_hash_queued Callers waiting for a slow-hash permit.\n# TYPE latchkey_slow_hash_queued gauge\n"
            out += "latchkey_slow_hash_queued \(pool.queued)\n"
        }
        if let failures, failures.shared {
            out += "# HELP latchkey_failure_counts_unsent Keys of failed attempts counted on this node and not yet added to the shared counts.\n"
            out += "# TYPE latchkey_failure_counts_unsent gauge\nlatchkey_failure_counts_unsent \(failures.unsentAccountKeys)\n"
            out += "# HELP latchkey_failure_count_flushes_failed_total Flushes of failure counts the database could not take (kept for the next).\n"
            out += "# TYPE latchkey_failure_count_flushes_failed_total counter\nlatchkey_failure_count_flushes_failed_total \(failures.failedFlushes)\n"
        }
        out += "# HELP latchkey_es256_presigned_total ES256 signatures made from nonces prepared ahead (LATCHKEY_ES256_PRESIGN=on).\n"
        out += "# TYPE latchkey_es256_presigned_total counter\nlatchkey_es256_presigned_total \(PreparedKey.presignedSignatures)\n"
        out += "# HELP latchkey_logout_deliveries_dropped_total Back-channel logout tokens not queued: their client's or share's queue was full.\n"
        out += "# TYPE latchkey_logout_deliveries_dropped_total counter\nlatchkey_logout_deliveries_dropped_total \(BackchannelLogout.droppedDeliveries)\n"
        if let (batched, stolen, refused) = accepting?() {
            out += "# HELP latchkey_accept_batched_total Connections a worker thread took together with others, all arrived before any was handled.\n"
            out += "# TYPE latchkey_accept_batched_total counter\nlatchkey_accept_batched_total \(batched)\n"
            out += "# HELP latchkey_accept_stolen_total Batched connections another thread served after they had waited 2 ms.\n"
            out += "# TYPE latchkey_accept_stolen_total counter\nlatchkey_accept_stolen_total \(stolen)\n"
            out += "# HELP latchkey_accept_refused_total Connections closed unread: their peer is not in --allow-from.\n"
            out += "# TYPE latchkey_accept_refused_total counter\nlatchkey_accept_refused_total \(refused)\n"
        }
        if let counters = store?() {
            for (name, help, value) in [
                ("latchkey_store_round_trips_total", "Statements sent to the database by this node's connections.", counters.roundTrips),
                ("latchkey_store_connects_total", "Database connections established (first connects and reconnects).", counters.connects),
                ("latchkey_store_connections_lost_total", "Database connections dropped after a failure or a missed deadline.", counters.connectionsLost),
                ("latchkey_store_connect_failures_total", "Attempts to connect to the database that failed.", counters.connectFailures),
                ("latchkey_store_retries_total", "Write transactions run again after a serialization failure or deadlock.", counters.retries),
                ("latchkey_store_cancels_total",
                 "Statements the database was asked to cancel when they outlasted this node's deadline (their outcome then read, not guessed).",
                 counters.cancels),
                ("latchkey_store_generation_reads_shared_total",
                 "Requests (or batches) ordered by a generation read another worker thread of this node began after they arrived.",
                 counters.generationReadsShared),
            ] {
                out += "# HELP \(name) \(help)\n# TYPE \(name) counter\n\(name) \(value)\n"
            }
        }
        return out
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}

/// What the metrics read of a shared database's connections (process-wide totals).
public struct StoreCounters: Sendable {
    public var roundTrips = 0, connects = 0, connectionsLost = 0, connectFailures = 0, retries = 0, generationReadsShared = 0, cancels = 0

    public init(roundTrips: Int, connects: Int, connectionsLost: Int, connectFailures: Int, retries: Int, generationReadsShared: Int = 0,
                cancels: Int = 0) {
        self.generationReadsShared = generationReadsShared
        self.cancels = cancels
        self.roundTrips = roundTrips
        self.connects = connects
        self.connectionsLost = connectionsLost
        self.connectFailures = connectFailures
        self.retries = retries
    }
}

/// What the metrics read of the slow-hash pool.
public protocol SlowHashPoolGauge {
    var inUse: Int { get }
    var queued: Int { get }
}

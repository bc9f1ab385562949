import Common
import HTTPCore
import Server
import Synchronization
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
        worker.handle(Request(method: method, path: path, query: "", headers: Headers(headers), body: Array(body.utf8), requestID: "req-log"))
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

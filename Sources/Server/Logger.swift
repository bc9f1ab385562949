import Common
import Foundation
import HTTPCore

/// One JSON line per event on stderr. Only the method, the path, the status
/// and error causes are logged: never the query string, a header or a body,
/// which is where secrets, tokens and codes travel.
///
/// Requests are logged by outcome: a 5xx at `error`, a 4xx at `info`
/// (refused credentials, a reused refresh token, unknown ids: what an
/// operator looks for), each with its cause (an error's log-only detail and
/// where it was thrown; public text otherwise, never a secret), a success
/// at `debug`. nginx's access log already has every request with
/// its request id, and at thousands of requests a second a line per success
/// would cost the worker a write each and swamp journald (which drops lines
/// past its rate limit anyway).
public struct Logger: Sendable {
    public enum Level: Int, Sendable, Comparable, CaseIterable {
        case debug, info, warn, error, off

        public init?(name: String) {
            switch name.lowercased() {
            case "debug": self = .debug
            case "info": self = .info
            case "warn", "warning": self = .warn
            case "error": self = .error
            case "off", "none": self = .off
            default: return nil
            }
        }

        public var name: String { ["debug", "info", "warn", "error", "off"][rawValue] }

        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
    }

    public typealias Sink = @Sendable ([UInt8]) -> Void

    public let level: Level
    let sink: Sink

    /// Writes each line with one `write(2)` on fd 2 (whole lines: several
    /// threads share the descriptor).
    public static let standardError: Sink = { bytes in
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    public init(level: Level = .info, sink: @escaping Sink = Logger.standardError) {
        self.level = level
        self.sink = sink
    }

    /// The level a request's line is logged at.
    public static func level(forStatus status: Int) -> Level {
        status >= 500 ? .error : status >= 400 ? .info : .debug
    }

    public func logs(_ level: Level) -> Bool { level != .off && level >= self.level }

    public func request(_ request: Request, status: Int, millis: Int64, failure: String?) {
        let lineLevel = Logger.level(forStatus: status)
        guard logs(lineLevel) else { return }
        var line: JSON = [
            "level": .string(lineLevel.name), "request_id": .string(request.requestID), "method": .string(request.method.rawValue),
            "path": .string(String(Logger.loggedPath(request.path).prefix(200))), "status": .int(Int64(status)), "ms": .int(millis),
        ]
        if let failure { line.set("error", .string(String(Logger.redacted(failure).prefix(500)))) }
        emit(line)
    }

    static let pendingRequests = "/api/v1/authorization-requests/"

    /// A request's path as logged: `redacted`, and a pending authorization
    /// request's id left out (the database holds only its hash; nginx's log
    /// does the same).
    public static func loggedPath(_ path: String) -> String {
        guard path.hasPrefix(pendingRequests) else { return redacted(path) }
        let rest = path.utf8.dropFirst(pendingRequests.utf8.count)
        let tail = rest.firstIndex(of: UInt8(ascii: "/")).map { String(decoding: rest[$0...], as: UTF8.self) } ?? ""
        return pendingRequests + "[redacted]" + redacted(tail)
    }

    /// The text with anything shaped like a Latchkey credential (`lks_`
    /// secrets, `lkr_` refresh tokens, `lkc_` codes and the like) or a JWT
    /// replaced: a path or an error's text may echo what a caller sent, and
    /// a caller may send a credential where it does not belong.
    public static func redacted(_ text: String) -> String {
        func isTokenByte(_ b: UInt8) -> Bool {
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F || b == 0x2E
        }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        var changed = false
        var i = 0
        while i < bytes.count {
            guard isTokenByte(bytes[i]) else {
                out.append(bytes[i])
                i += 1
                continue
            }
            // A whole word of token characters.
            var end = i
            while end < bytes.count, isTokenByte(bytes[end]) { end += 1 }
            let word = Array(bytes[i..<end])
            i = end
            if word.count >= 12, word.starts(with: Array("lk".utf8)), word[2] >= 0x61, word[2] <= 0x7A, word[3] == 0x5F {
                // "[redacted lks]": the kind of credential, without the prefix secret scanners look for.
                out += Array("[redacted ".utf8) + word.prefix(3) + [0x5D]
            } else if word.count >= 16, word.starts(with: Array("eyJ".utf8)), word.contains(0x2E) {
                out += Array("[redacted JWT]".utf8)
            } else {
                out += word
                continue
            }
            changed = true
        }
        return changed ? String(decoding: out, as: UTF8.self) : text
    }

    public func info(_ message: String, _ fields: [(String, JSON)] = []) {
        guard logs(.info) else { return }
        emit(.object([("level", "info"), ("message", .string(message))] + fields))
    }

    public func warn(_ message: String, _ fields: [(String, JSON)] = []) {
        guard logs(.warn) else { return }
        emit(.object([("level", "warn"), ("message", .string(message))] + fields))
    }

    func emit(_ line: JSON) {
        var bytes = line.serialized()
        bytes.append(10)
        sink(bytes)
    }
}

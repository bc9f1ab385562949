/// Maps a method and a path to a handler. Patterns are literal segments and
/// `{name}` captures of one whole segment; literal segments win over
/// captures, so `/clients/current` is never taken for `/clients/{id}`.
public struct Router<Handler: Sendable>: Sendable {
    struct Route: Sendable {
        let method: String
        let segments: [Segment]
        let handler: Handler
    }

    enum Segment: Sendable, Equatable {
        case literal(String)
        case capture(String)
    }

    public enum Match {
        case found(Handler, [String: String])
        case methodNotAllowed([String])
        case notFound
    }

    private var routes: [Route] = []
    /// Routes without captures, by path then method: the hot paths skip the scan.
    private var exact: [String: [String: Handler]] = [:]

    public init() {}

    public mutating func add(_ method: String, _ pattern: String, _ handler: Handler) {
        let segments = Router.split(pattern).map { s -> Segment in
            s.hasPrefix("{") && s.hasSuffix("}") ? .capture(String(s.dropFirst().dropLast())) : .literal(s)
        }
        routes.append(Route(method: method, segments: segments, handler: handler))
        if !segments.contains(where: { if case .capture = $0 { return true } else { return false } }) {
            exact[pattern, default: [:]][method] = handler
        }
    }

    static func split(_ path: String) -> [String] {
        path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
    }

    public func match(method: String, path: String) -> Match {
        if let byMethod = exact[path] {
            if let handler = byMethod[method] ?? (method == "HEAD" ? byMethod["GET"] : nil) { return .found(handler, [:]) }
        }
        let parts = Router.split(path)
        // A trailing slash is a different resource, except for the root.
        if path.count > 1 && path.hasSuffix("/") { return .notFound }
        var best: (Route, [String: String], Int)?
        var allowed: [String] = []
        for route in routes where route.segments.count == parts.count {
            var captures: [String: String] = [:]
            var literals = 0
            var ok = true
            for (segment, part) in zip(route.segments, parts) {
                switch segment {
                case let .literal(l):
                    if l != part { ok = false } else { literals += 1 }
                case let .capture(name):
                    captures[name] = part
                }
                if !ok { break }
            }
            guard ok else { continue }
            if route.method != method && !(method == "HEAD" && route.method == "GET") {
                if !allowed.contains(route.method) { allowed.append(route.method) }
                continue
            }
            if best == nil || literals > best!.2 { best = (route, captures, literals) }
        }
        if let best { return .found(best.0.handler, best.1) }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed)
    }
}

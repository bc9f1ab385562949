/// Maps a method and a path to a handler. Patterns are literal segments and
/// `{name}` captures of one whole segment; literal segments win over
/// captures, so `/clients/current` is never taken for `/clients/{id}`.
///
/// The patterns form a tree of segments walked once per request: its cost
/// grows with the depth of the path, not with the number of routes.
public struct Router<Handler: Sendable>: Sendable {
    /// One method's handler at a node, with the capture names of its pattern.
    struct Target: Sendable {
        let handler: Int
        let captureNames: [String]
    }

    struct Node: Sendable {
        var literals: [String: Int] = [:]
        var capture: Int?
        var methods: [HTTPRequest.Method: Target] = [:]
        /// Methods in the order they were added (for `Allow`).
        var methodOrder: [HTTPRequest.Method] = []
    }

    public enum Match {
        case found(Handler, [String: String])
        case methodNotAllowed([HTTPRequest.Method])
        case notFound
    }

    private var handlers: [Handler] = []
    private var nodes: [Node] = [Node()]
    /// Patterns without captures, by exact path: the hot paths skip the walk.
    private var exact: [String: Int] = [:]

    public init() {}

    public mutating func add(_ method: HTTPRequest.Method, _ pattern: String, _ handler: Handler) {
        var node = 0
        var names: [String] = []
        for segment in Router.segments(pattern).map(String.init) {
            if segment.hasPrefix("{") && segment.hasSuffix("}") {
                names.append(String(segment.dropFirst().dropLast()))
                if let next = nodes[node].capture {
                    node = next
                } else {
                    nodes.append(Node())
                    nodes[node].capture = nodes.count - 1
                    node = nodes.count - 1
                }
            } else if let next = nodes[node].literals[segment] {
                node = next
            } else {
                nodes.append(Node())
                nodes[node].literals[segment] = nodes.count - 1
                node = nodes.count - 1
            }
        }
        handlers.append(handler)
        if names.isEmpty { exact[pattern] = node }
        if nodes[node].methods[method] == nil { nodes[node].methodOrder.append(method) }
        nodes[node].methods[method] = Target(handler: handlers.count - 1, captureNames: names)
    }

    /// Every route added: its method and handler (tests walk the whole table).
    public var routes: [(method: HTTPRequest.Method, handler: Handler)] {
        nodes.flatMap { node in node.methodOrder.compactMap { method in node.methods[method].map { (method, handlers[$0.handler]) } } }
    }

    /// The path's non-empty segments between slashes, found by byte:
    /// `String.split` would walk grapheme clusters, on every request.
    static func segments(_ path: String) -> [Substring] {
        var parts: [Substring] = []
        let bytes = path.utf8
        var start = bytes.startIndex
        var i = start
        while i != bytes.endIndex {
            if bytes[i] == UInt8(ascii: "/") {
                if start != i { parts.append(Substring(bytes[start..<i])) }
                start = bytes.index(after: i)
            }
            i = bytes.index(after: i)
        }
        if start != bytes.endIndex { parts.append(Substring(bytes[start...])) }
        return parts
    }


    public func match(method: HTTPRequest.Method, path: String) -> Match {
        // A trailing slash is a different resource, except for the root.
        if path.utf8.count > 1 && path.utf8.last == UInt8(ascii: "/") { return .notFound }
        if let node = exact[path], let target = nodes[node].methods[method] ?? (method == .head ? nodes[node].methods[.get] : nil) {
            return .found(handlers[target.handler], [:])
        }
        let parts = Router.segments(path)
        var best: (target: Target, values: [Substring], literals: Int)?
        var allowed: [HTTPRequest.Method] = []
        // Depth first, literal before capture, with an explicit stack: on
        // equal literal counts the literal-first route wins.
        var stack: [(node: Int, depth: Int, literals: Int, values: [Substring])] = [(0, 0, 0, [])]
        while let (node, depth, literals, values) = stack.popLast() {
            if depth == parts.count {
                let methods = nodes[node].methods
                guard !methods.isEmpty else { continue }
                if let target = methods[method] ?? (method == .head ? methods[.get] : nil) {
                    if best == nil || literals > best!.literals { best = (target, values, literals) }
                } else {
                    for m in nodes[node].methodOrder where !allowed.contains(m) { allowed.append(m) }
                }
                continue
            }
            // Pushed capture first so the literal branch is explored first.
            if let next = nodes[node].capture { stack.append((next, depth + 1, literals, values + [parts[depth]])) }
            if !nodes[node].literals.isEmpty, let next = nodes[node].literals[String(parts[depth])] {
                stack.append((next, depth + 1, literals + 1, values))
            }
        }
        guard let best else { return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed) }
        var captures: [String: String] = [:]
        for (name, value) in zip(best.target.captureNames, best.values) { captures[name] = String(value) }
        return .found(handlers[best.target.handler], captures)
    }
}

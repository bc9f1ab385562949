/// JSON Merge Patch (RFC 7396 §2): objects merge member by member, `null`
/// removes a member, anything else replaces the target.
extension JSON {
    ///
    /// Linear in the sizes of both documents (SPEC 7.1): members are found
    /// through an index, not by scanning the object once per patched key.
    public func mergePatched(with patch: JSON) -> JSON {
        guard case let .object(patchMembers) = patch else { return patch }
        var members = objectValue ?? []
        var positions: [String: [Int]] = [:]
        for (i, member) in members.enumerated() { positions[member.0, default: []].append(i) }
        var removed = Set<Int>()
        for (key, value) in patchMembers {
            if value.isNull {
                for i in positions[key] ?? [] { removed.insert(i) }
                positions[key] = nil
            } else if let i = positions[key]?.first {
                members[i].1 = members[i].1.mergePatched(with: value)
            } else {
                positions[key] = [members.count]
                members.append((key, JSON.null.mergePatched(with: value)))
            }
        }
        if removed.isEmpty { return .object(members) }
        return .object(members.enumerated().filter { !removed.contains($0.offset) }.map(\.element))
    }
}

/// JSON Patch (RFC 6902): add, remove, replace, move, copy and test, applied
/// in order to a copy; any failing operation fails the whole patch.
public struct JSONPatchError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

public struct JSONPatchOperation: Sendable, Equatable {
    public var op: String
    public var path: [String]
    public var from: [String]?
    public var value: JSON?

    /// Parses one operation object; pointers per RFC 6901 (`~1` is `/`, `~0` is `~`).
    public init(_ json: JSON) throws {
        guard let members = json.objectValue else { throw JSONPatchError("each operation must be an object") }
        guard let op = json["op"]?.stringValue, ["add", "remove", "replace", "move", "copy", "test"].contains(op) else {
            throw JSONPatchError("op must be add, remove, replace, move, copy or test")
        }
        guard let path = json["path"]?.stringValue, let pointer = JSONPatchOperation.pointer(path) else {
            throw JSONPatchError("path must be a JSON pointer")
        }
        self.op = op
        self.path = pointer
        if op == "move" || op == "copy" {
            guard let from = json["from"]?.stringValue, let pointer = JSONPatchOperation.pointer(from) else {
                throw JSONPatchError("from must be a JSON pointer")
            }
            self.from = pointer
        }
        if ["add", "replace", "test"].contains(op) {
            guard let value = json["value"] else { throw JSONPatchError("value is required for \(op)") }
            self.value = value
        }
        for (key, _) in members where !["op", "path", "from", "value"].contains(key) {
            throw JSONPatchError("unknown member \(Echo.name(key))")
        }
    }

    static func pointer(_ text: String) -> [String]? {
        if text.isEmpty { return [] }
        guard text.hasPrefix("/") else { return nil }
        return text.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            String($0).replacingAll("~1", with: "/").replacingAll("~0", with: "~")
        }
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = Substring(self)
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

extension JSON {
    /// The operations applied in order, each in place: linear in the
    /// operations and the paths they walk, however large an array grows
    /// (a copy of the array for each `add` made 8,000 of them cost most of
    /// a second, review session 20). On a failing operation the partly
    /// patched copy is dropped.
    public func patched(with operations: [JSONPatchOperation]) throws -> JSON {
        var doc = self
        for op in operations {
            switch op.op {
            case "add": try doc.add(op.value!, at: op.path[...])
            case "remove": _ = try doc.remove(at: op.path[...])
            case "replace":
                _ = try doc.remove(at: op.path[...])
                try doc.add(op.value!, at: op.path[...])
            case "move":
                if op.path.starts(with: op.from!) && op.path != op.from! { throw JSONPatchError("cannot move a value into itself") }
                let value = try doc.remove(at: op.from![...])
                try doc.add(value, at: op.path[...])
            case "copy": try doc.add(try doc.value(at: op.from![...]), at: op.path[...])
            case "test":
                guard try doc.value(at: op.path[...]) == op.value! else { throw JSONPatchError("test failed at \(Echo.name("/" + op.path.joined(separator: "/")))") }
            default: throw JSONPatchError("unsupported op")
            }
        }
        return doc
    }

    func value(at path: ArraySlice<String>) throws -> JSON {
        guard let head = path.first else { return self }
        switch self {
        case .object:
            guard let child = self[head] else { throw JSONPatchError("no member \(Echo.name(head))") }
            return try child.value(at: path.dropFirst())
        case let .array(items):
            guard let i = JSON.index(head, in: items.count) else { throw JSONPatchError("no index \(Echo.name(head))") }
            return try items[i].value(at: path.dropFirst())
        default: throw JSONPatchError("path goes through a scalar")
        }
    }

    /// An array index as RFC 6901 spells it (no sign, no leading zero), below `count`.
    static func index(_ token: String, in count: Int) -> Int? {
        guard let i = Int(token), i >= 0, i < count, String(i) == token else { return nil }
        return i
    }

    /// RFC 6902 §4.1 in place.
    mutating func add(_ value: JSON, at path: ArraySlice<String>) throws {
        guard let head = path.first else { self = value; return }
        if var members = takeObject() {
            defer { self = .object(members) }
            if path.count == 1 {
                if let i = members.firstIndex(where: { $0.0 == head }) { members[i].1 = value } else { members.append((head, value)) }
                return
            }
            guard let i = members.firstIndex(where: { $0.0 == head }) else { throw JSONPatchError("no member \(Echo.name(head))") }
            try members[i].1.add(value, at: path.dropFirst())
        } else if var items = takeArray() {
            defer { self = .array(items) }
            if path.count == 1 {
                if head == "-" { items.append(value); return }
                guard let i = JSON.index(head, in: items.count + 1) else { throw JSONPatchError("bad index \(Echo.name(head))") }
                items.insert(value, at: i)
                return
            }
            guard let i = JSON.index(head, in: items.count) else { throw JSONPatchError("no index \(Echo.name(head))") }
            try items[i].add(value, at: path.dropFirst())
        } else {
            throw JSONPatchError("path goes through a scalar")
        }
    }

    /// RFC 6902 §4.2 in place; the value removed.
    mutating func remove(at path: ArraySlice<String>) throws -> JSON {
        guard let head = path.first else { throw JSONPatchError("cannot remove the whole document") }
        if var members = takeObject() {
            defer { self = .object(members) }
            guard let i = members.firstIndex(where: { $0.0 == head }) else { throw JSONPatchError("no member \(Echo.name(head))") }
            if path.count == 1 { return members.remove(at: i).1 }
            return try members[i].1.remove(at: path.dropFirst())
        } else if var items = takeArray() {
            defer { self = .array(items) }
            guard let i = JSON.index(head, in: items.count) else { throw JSONPatchError("no index \(Echo.name(head))") }
            if path.count == 1 { return items.remove(at: i) }
            return try items[i].remove(at: path.dropFirst())
        } else {
            throw JSONPatchError("path goes through a scalar")
        }
    }

    /// The members moved out of an object, leaving `null` until they are put
    /// back: with `self` no longer holding them they are the only reference,
    /// and change without a copy (a `case var` binding shares them with
    /// `self` while it lives). Nil, and `self` unchanged, for anything else.
    private mutating func takeObject() -> [(String, JSON)]? {
        var taken: [(String, JSON)]?
        if case let .object(members) = self { taken = members }
        if taken != nil { self = .null }
        return taken
    }

    /// As `takeObject`, for an array's items.
    private mutating func takeArray() -> [JSON]? {
        var taken: [JSON]?
        if case let .array(items) = self { taken = items }
        if taken != nil { self = .null }
        return taken
    }
}

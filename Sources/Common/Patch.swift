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
            throw JSONPatchError("unknown member \(key)")
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
    public func patched(with operations: [JSONPatchOperation]) throws -> JSON {
        var doc = self
        for op in operations {
            switch op.op {
            case "add": doc = try doc.adding(op.value!, at: op.path[...])
            case "remove": doc = try doc.removing(at: op.path[...])
            case "replace":
                _ = try doc.value(at: op.path[...])
                doc = try doc.removing(at: op.path[...]).adding(op.value!, at: op.path[...])
            case "move":
                let value = try doc.value(at: op.from![...])
                if op.path.starts(with: op.from!) && op.path != op.from! { throw JSONPatchError("cannot move a value into itself") }
                doc = try doc.removing(at: op.from![...]).adding(value, at: op.path[...])
            case "copy": doc = try doc.adding(try doc.value(at: op.from![...]), at: op.path[...])
            case "test":
                guard try doc.value(at: op.path[...]) == op.value! else { throw JSONPatchError("test failed at /\(op.path.joined(separator: "/"))") }
            default: throw JSONPatchError("unsupported op")
            }
        }
        return doc
    }

    func value(at path: ArraySlice<String>) throws -> JSON {
        guard let head = path.first else { return self }
        switch self {
        case .object:
            guard let child = self[head] else { throw JSONPatchError("no member \(head)") }
            return try child.value(at: path.dropFirst())
        case let .array(items):
            guard let i = Int(head), i >= 0, i < items.count, String(i) == head else { throw JSONPatchError("no index \(head)") }
            return try items[i].value(at: path.dropFirst())
        default: throw JSONPatchError("path goes through a scalar")
        }
    }

    func adding(_ value: JSON, at path: ArraySlice<String>) throws -> JSON {
        guard let head = path.first else { return value }
        switch self {
        case var .object(members):
            if path.count == 1 {
                var object = JSON.object(members)
                object.set(head, value)
                return object
            }
            guard let i = members.firstIndex(where: { $0.0 == head }) else { throw JSONPatchError("no member \(head)") }
            members[i].1 = try members[i].1.adding(value, at: path.dropFirst())
            return .object(members)
        case var .array(items):
            if path.count == 1 {
                if head == "-" { items.append(value); return .array(items) }
                guard let i = Int(head), i >= 0, i <= items.count, String(i) == head else { throw JSONPatchError("bad index \(head)") }
                items.insert(value, at: i)
                return .array(items)
            }
            guard let i = Int(head), i >= 0, i < items.count, String(i) == head else { throw JSONPatchError("no index \(head)") }
            items[i] = try items[i].adding(value, at: path.dropFirst())
            return .array(items)
        default: throw JSONPatchError("path goes through a scalar")
        }
    }

    func removing(at path: ArraySlice<String>) throws -> JSON {
        guard let head = path.first else { throw JSONPatchError("cannot remove the whole document") }
        switch self {
        case var .object(members):
            guard let i = members.firstIndex(where: { $0.0 == head }) else { throw JSONPatchError("no member \(head)") }
            if path.count == 1 { members.remove(at: i) } else { members[i].1 = try members[i].1.removing(at: path.dropFirst()) }
            return .object(members)
        case var .array(items):
            guard let i = Int(head), i >= 0, i < items.count, String(i) == head else { throw JSONPatchError("no index \(head)") }
            if path.count == 1 { items.remove(at: i) } else { items[i] = try items[i].removing(at: path.dropFirst()) }
            return .array(items)
        default: throw JSONPatchError("path goes through a scalar")
        }
    }
}

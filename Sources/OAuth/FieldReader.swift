import Common

/// Typed reads of a JSON object's fields, shared by every surface that takes
/// a JSON body (native, identity platform, integration platform, upstream
/// records, dynamic registration). `null` reads as absent. A wrong type is a
/// `FieldError` (with its message in one wording everywhere), either
/// collected (the native API lists them all) or turned at once into the
/// surface's own error.
public struct FieldReader {
    public let body: JSON
    /// Put before each field name in errors (`address.` for a nested object).
    let prefix: String
    private let refuse: ((FieldError) -> any Error)?
    /// What was wrong so far, in reading order (collecting readers only).
    public private(set) var errors: [FieldError] = []

    /// A reader that collects every problem in `errors`.
    public init(collecting body: JSON, prefix: String = "") {
        self.body = body
        self.prefix = prefix
        refuse = nil
    }

    /// A reader that throws the surface's error for the first problem.
    public init(_ body: JSON, refuse: @escaping (FieldError) -> any Error) {
        self.body = body
        prefix = ""
        self.refuse = refuse
    }

    public mutating func fail(_ field: String, _ message: String) throws {
        let error = FieldError(prefix + field, message)
        if let refuse { throw refuse(error) }
        errors.append(error)
    }

    /// The value when present and not null; a missing required one is a problem.
    mutating func present(_ key: String, required: Bool) throws -> JSON? {
        guard let value = body[key], !value.isNull else {
            if required { try fail(key, "is required") }
            return nil
        }
        return value
    }

    public mutating func string(_ key: String, required: Bool = false) throws -> String? {
        guard let value = try present(key, required: required) else { return nil }
        guard case let .string(s) = value else { try fail(key, "must be a string, not \(value.typeName)"); return nil }
        return s
    }

    public mutating func strings(_ key: String, required: Bool = false) throws -> [String]? {
        guard let value = try present(key, required: required) else { return nil }
        guard let items = value.arrayValue else { try fail(key, "must be an array of strings"); return nil }
        var out: [String] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard let s = item.stringValue else { try fail("\(key)[\(i)]", "must be a string"); return nil }
            out.append(s)
        }
        return out
    }

    public mutating func int(_ key: String, required: Bool = false) throws -> Int? {
        guard let value = try present(key, required: required) else { return nil }
        guard case let .int(i) = value, let v = Int(exactly: i) else { try fail(key, "must be an integer"); return nil }
        return v
    }

    public mutating func bool(_ key: String, required: Bool = false) throws -> Bool? {
        guard let value = try present(key, required: required) else { return nil }
        guard case let .bool(b) = value else { try fail(key, "must be a boolean"); return nil }
        return b
    }
}

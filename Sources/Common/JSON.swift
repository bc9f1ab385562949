/// A JSON value with object keys kept in order, so responses come out in the
/// order the code builds them and request bodies can be checked for unknown
/// or read-only fields exactly as sent (RFC 8259).
public enum JSON: Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])
}

extension JSON: Equatable {
    public static func == (lhs: JSON, rhs: JSON) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.int(a), .int(b)): return a == b
        case let (.double(a), .double(b)): return a == b
        case let (.int(a), .double(b)), let (.double(b), .int(a)): return Double(a) == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            guard a.count == b.count else { return false }
            // Members in any order, each found in the other: by a scan among a few, past that through an index
            // (a scan each made a JSON Patch `test` of 40,000 members cost seconds; review, session 20).
            if a.count <= 16 {
                for (key, value) in a {
                    guard let other = b.first(where: { $0.0 == key }), other.1 == value else { return false }
                }
                return true
            }
            var index: [String: JSON] = [:]
            index.reserveCapacity(b.count)
            for (key, value) in b where index[key] == nil { index[key] = value }
            for (key, value) in a {
                guard let other = index[key], other == value else { return false }
            }
            return true
        default: return false
        }
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSON)...) { self = .object(elements) }
    public init(nilLiteral: ()) { self = .null }
}

extension JSON {
    public init(_ value: String?) { self = value.map { .string($0) } ?? .null }
    public init(_ value: Int) { self = .int(Int64(value)) }
    public init(_ value: Int64) { self = .int(value) }
    public init(_ strings: [String]) { self = .array(strings.map { .string($0) }) }

    public subscript(key: String) -> JSON? {
        guard case let .object(members) = self else { return nil }
        return members.first(where: { $0.0 == key })?.1
    }

    public var stringValue: String? { if case let .string(s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case let .bool(b) = self { return b } else { return nil } }
    public var intValue: Int64? {
        switch self {
        case let .int(i): return i
        case let .double(d) where d.rounded() == d && abs(d) < 9.0e15: return Int64(d)
        default: return nil
        }
    }

    /// A JWT NumericDate (RFC 7519 §2): seconds, fractions allowed, read
    /// down to a whole second. nil for anything else or out of range.
    public var numericDateValue: Int64? {
        switch self {
        case let .int(i): return i
        case let .double(d) where d.isFinite && abs(d) < 9.0e15: return Int64(d.rounded(.down))
        default: return nil
        }
    }

    public var arrayValue: [JSON]? { if case let .array(a) = self { return a } else { return nil } }
    public var objectValue: [(String, JSON)]? { if case let .object(o) = self { return o } else { return nil } }
    public var isNull: Bool { if case .null = self { return true } else { return false } }

    /// The JSON type name used in error messages ("string", "object", ...).
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// Sets or replaces a member of an object (appends when absent).
    public mutating func set(_ key: String, _ value: JSON) {
        guard case var .object(members) = self else { return }
        if let i = members.firstIndex(where: { $0.0 == key }) { members[i].1 = value } else { members.append((key, value)) }
        self = .object(members)
    }

    public mutating func remove(_ key: String) {
        guard case var .object(members) = self else { return }
        members.removeAll { $0.0 == key }
        self = .object(members)
    }
}

// MARK: - Serialization

extension JSON {
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out)
        return out
    }

    public var text: String { String(decoding: serialized(), as: UTF8.self) }

    func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case let .bool(b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case let .int(i): JSON.writeInt(i, into: &out)
        case let .double(d):
            if d.isFinite && d.rounded() == d && abs(d) < 1e15 {
                out.append(contentsOf: Array(String(Int64(d)).utf8))
            } else if d.isFinite {
                out.append(contentsOf: Array(String(d).utf8))
            } else {
                out.append(contentsOf: Array("null".utf8))
            }
        case let .string(s): JSON.writeString(s, into: &out)
        case let .array(items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case let .object(members):
            out.append(UInt8(ascii: "{"))
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSON.writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                value.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Decimal digits without an intermediate string (times and lifetimes in every token).
    static func writeInt(_ value: Int64, into out: inout [UInt8]) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        let start = out.count
        repeat {
            out.append(UInt8(ascii: "0") + UInt8(magnitude % 10))
            magnitude /= 10
        } while magnitude > 0
        out[start...].reverse()
    }

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var text = s
        // Runs of bytes that need no escaping (most strings are one run) are copied whole.
        text.withUTF8 { bytes in
            escaped.withUnsafeBufferPointer { escaped in
                var run = 0
                for i in 0..<bytes.count where escaped[Int(bytes[i])] {
                    if run < i { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<i])) }
                    writeEscape(bytes[i], into: &out)
                    run = i + 1
                }
                if run < bytes.count { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run...])) }
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    static func writeEscape(_ byte: UInt8, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\\"))
        switch byte {
        case 0x0A: out.append(UInt8(ascii: "n"))
        case 0x0D: out.append(UInt8(ascii: "r"))
        case 0x09: out.append(UInt8(ascii: "t"))
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(byte)
        default:
            out.append(contentsOf: "u00".utf8)
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0xF)])
        }
    }

    /// `needsEscape` for every byte, looked up instead of compared four times a byte.
    static let escaped: [Bool] = (0...255).map { needsEscape(UInt8($0)) }

    @inline(__always)
    static func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte == 0x7F
    }
}

/// A JSON object written straight to bytes, for the objects every token
/// request builds (access-token claims, JWS headers, token responses): no
/// `JSON` tree, no arrays of members, no key strings. Keys are literals
/// written as they are (plain ASCII names, checked in debug builds); values
/// are escaped exactly as `JSON` escapes them, so the bytes are what
/// `JSON.object(...).serialized()` gives for the same members.
public struct JSONObjectWriter {
    private var out: [UInt8]
    private var first = true

    public init(capacity: Int = 256) {
        out = []
        out.reserveCapacity(capacity)
        out.append(UInt8(ascii: "{"))
    }

    private mutating func key(_ name: StaticString) {
        assert(!JSONObjectWriter.anyEscaped(name), "a JSON key literal needs no escaping")
        if !first { out.append(UInt8(ascii: ",")) }
        first = false
        out.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { out.append(contentsOf: $0) }
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
    }

    private static func anyEscaped(_ name: StaticString) -> Bool {
        name.withUTF8Buffer { $0.contains { JSON.escaped[Int($0)] } }
    }

    public mutating func string(_ name: StaticString, _ value: String) {
        key(name)
        JSON.writeString(value, into: &out)
    }

    public mutating func int(_ name: StaticString, _ value: Int64) {
        key(name)
        JSON.writeInt(value, into: &out)
    }

    /// A member whose value is any JSON (a nested object, an array).
    public mutating func value(_ name: StaticString, _ value: JSON) {
        key(name)
        value.write(into: &out)
    }

    /// The object's bytes, closed.
    public consuming func finish() -> [UInt8] {
        out.append(UInt8(ascii: "}"))
        return out
    }
}

// MARK: - Parsing

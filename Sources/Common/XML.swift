/// A small, strict XML reader and writer for the XML surface (SPEC 6.5).
/// It knows elements, attributes, text, CDATA, comments, the XML
/// declaration, the five predefined entities and character references.
/// A DOCTYPE is refused outright, so no entity, internal or external, is
/// ever defined or resolved (no XXE, no entity expansion).
public struct XMLElement: Sendable, Equatable {
    public var name: String
    public var attributes: [(String, String)]
    public var children: [XMLElement]
    public var text: String

    public init(name: String, attributes: [(String, String)] = [], children: [XMLElement] = [], text: String = "") {
        self.name = name
        self.attributes = attributes
        self.children = children
        self.text = text
    }

    public static func == (a: XMLElement, b: XMLElement) -> Bool {
        a.name == b.name && a.children == b.children && a.text == b.text
            && a.attributes.map { "\($0.0)=\($0.1)" } == b.attributes.map { "\($0.0)=\($0.1)" }
    }

    public func attribute(_ name: String) -> String? { attributes.first(where: { $0.0 == name })?.1 }
    public func child(_ name: String) -> XMLElement? { children.first(where: { $0.name == name }) }
    public func all(_ name: String) -> [XMLElement] { children.filter { $0.name == name } }

    public func serialized(declaration: Bool = true) -> String {
        var out = declaration ? "<?xml version=\"1.0\" encoding=\"UTF-8\"?>" : ""
        write(into: &out)
        return out
    }

    func write(into out: inout String) {
        out += "<\(name)"
        for (k, v) in attributes { out += " \(k)=\"\(XMLElement.escape(v))\"" }
        if children.isEmpty && text.isEmpty {
            out += "/>"
            return
        }
        out += ">"
        out += XMLElement.escape(text)
        for child in children { child.write(into: &out) }
        out += "</\(name)>"
    }

    /// Escapes text for XML or HTML content and attribute values; drops control characters.
    public static func escape(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                if scalar.value < 0x20 && scalar != "\n" && scalar != "\t" && scalar != "\r" { continue }
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

public struct XMLParseError: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

extension XMLElement {
    public static func parse(_ bytes: [UInt8], maxDepth: Int = 16) throws -> XMLElement {
        var work = 0
        return try parse(bytes, maxDepth: maxDepth, work: &work)
    }

    /// Elements and attributes a document may hold in all: a record is a few
    /// dozen, and each costs far more parsed than its text (250,000 `<a/>` in
    /// 1 MiB took a worker from 43 to 83 MiB; review, session 20).
    public static let maxNodes = 10_000

    /// Parses and reports the work done: every character read and every
    /// comparison the reader makes (SPEC 7.1: linear in the input, so a test
    /// can bound the work by the input's size instead of timing it).
    public static func parse(_ bytes: [UInt8], maxDepth: Int = 16, work: inout Int) throws -> XMLElement {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw XMLParseError("the document is not valid UTF-8") }
        var p = XMLReader(chars: Array(text.unicodeScalars), maxDepth: maxDepth)
        defer { work = p.work }
        return try p.document()
    }
}

private struct XMLReader {
    let chars: [Unicode.Scalar]
    let maxDepth: Int
    var i = 0
    /// Characters read and comparisons made (see `parse(_:maxDepth:work:)`).
    var work = 0
    /// Elements and attributes read so far (at most `XMLElement.maxNodes`).
    var nodes = 0

    mutating func countNode() throws {
        nodes += 1
        guard nodes <= XMLElement.maxNodes else { throw XMLParseError("the document has more than \(XMLElement.maxNodes) elements and attributes") }
    }

    init(chars: [Unicode.Scalar], maxDepth: Int) {
        self.chars = chars
        self.maxDepth = maxDepth
    }

    mutating func peek(_ s: StaticString) -> Bool {
        let target = s.utf8Start
        let n = s.utf8CodeUnitCount
        guard i + n <= chars.count else { return false }
        for k in 0..<n {
            work += 1
            if chars[i + k].value != UInt32(target[k]) { return false }
        }
        return true
    }

    mutating func skipSpace() {
        while i < chars.count, chars[i] == " " || chars[i] == "\n" || chars[i] == "\r" || chars[i] == "\t" {
            i += 1
            work += 1
        }
    }

    mutating func skipMisc() throws {
        while true {
            skipSpace()
            if peek("<!--") { try skip(until: "-->") } else if peek("<?") { try skip(until: "?>") } else { return }
        }
    }

    mutating func skip(until end: StaticString) throws {
        let n = end.utf8CodeUnitCount
        while i + n <= chars.count {
            if peek(end) { i += n; return }
            i += 1
        }
        throw XMLParseError("unterminated \(end)")
    }

    mutating func document() throws -> XMLElement {
        if chars.first == "\u{FEFF}" { i = 1 }
        try skipMisc()
        if peek("<!DOCTYPE") || peek("<!doctype") || peek("<!ENTITY") {
            throw XMLParseError("DOCTYPE and entity declarations are not allowed")
        }
        guard peek("<") else { throw XMLParseError("expected a root element") }
        let root = try element(depth: 0)
        try skipMisc()
        guard i == chars.count else { throw XMLParseError("unexpected content after the root element") }
        return root
    }

    mutating func name() throws -> String {
        var s = ""
        while i < chars.count {
            let c = chars[i]
            work += 1
            if c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "_" || c == "-" || c == "." || c == ":" { s.unicodeScalars.append(c); i += 1 } else { break }
        }
        guard !s.isEmpty, !(s.unicodeScalars.first.map { ("0"..."9").contains($0) || $0 == "-" || $0 == "." } ?? true) else {
            throw XMLParseError("invalid name")
        }
        return s
    }

    mutating func element(depth: Int) throws -> XMLElement {
        guard depth <= maxDepth else { throw XMLParseError("the document is nested too deeply") }
        try countNode()
        i += 1
        var node = XMLElement(name: try name())
        // Attribute names seen so far: a duplicate is found in constant time
        // (a scan of the list made a tag with many attributes quadratic).
        var attributeNames = Set<String>()
        while true {
            skipSpace()
            guard i < chars.count else { throw XMLParseError("unterminated start tag") }
            if peek("/>") { i += 2; return node }
            if chars[i] == ">" { i += 1; break }
            try countNode()
            let attr = try name()
            skipSpace()
            guard i < chars.count, chars[i] == "=" else { throw XMLParseError("expected '=' after attribute \(Echo.name(attr))") }
            i += 1
            skipSpace()
            guard i < chars.count, chars[i] == "\"" || chars[i] == "'" else { throw XMLParseError("attribute values must be quoted") }
            let quote = chars[i]
            i += 1
            var raw = ""
            while i < chars.count, chars[i] != quote {
                if chars[i] == "<" { throw XMLParseError("'<' in an attribute value") }
                raw.unicodeScalars.append(chars[i])
                i += 1
                work += 1
            }
            guard i < chars.count else { throw XMLParseError("unterminated attribute value") }
            i += 1
            work += 1
            guard attributeNames.insert(attr).inserted else { throw XMLParseError("duplicate attribute \(Echo.name(attr))") }
            node.attributes.append((attr, try decode(raw)))
        }
        var text = ""
        while true {
            guard i < chars.count else { throw XMLParseError("unterminated element \(Echo.name(node.name))") }
            if peek("</") {
                i += 2
                let closing = try name()
                skipSpace()
                guard closing == node.name, i < chars.count, chars[i] == ">" else { throw XMLParseError("mismatched end tag \(Echo.name(closing))") }
                i += 1
                node.text = node.children.isEmpty ? text : text.trimmingXMLSpace()
                return node
            } else if peek("<!--") {
                try skip(until: "-->")
            } else if peek("<![CDATA[") {
                i += 9
                let start = i
                try skip(until: "]]>")
                text.unicodeScalars.append(contentsOf: chars[start..<i - 3])
            } else if peek("<!") {
                throw XMLParseError("declarations are not allowed")
            } else if peek("<?") {
                try skip(until: "?>")
            } else if chars[i] == "<" {
                node.children.append(try element(depth: depth + 1))
            } else {
                var raw = ""
                while i < chars.count, chars[i] != "<" { raw.unicodeScalars.append(chars[i]); i += 1; work += 1 }
                text += try decode(raw)
            }
        }
    }

    mutating func decode(_ raw: String) throws -> String {
        work += raw.utf8.count
        guard raw.contains("&") else { return raw }
        var out = ""
        var rest = Substring(raw)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semi = rest[amp...].firstIndex(of: ";") else { throw XMLParseError("unterminated entity reference") }
            let entity = rest[rest.index(after: amp)..<semi]
            switch entity {
            case "lt": out += "<"
            case "gt": out += ">"
            case "amp": out += "&"
            case "quot": out += "\""
            case "apos": out += "'"
            default:
                var value: UInt32?
                if entity.hasPrefix("#x") { value = UInt32(entity.dropFirst(2), radix: 16) } else if entity.hasPrefix("#") { value = UInt32(entity.dropFirst()) }
                guard let v = value, let scalar = Unicode.Scalar(v), v >= 0x20 || v == 0x9 || v == 0xA || v == 0xD else {
                    // Not echoed: the text may be a secret with an ampersand in it (secret hygiene review, session 29).
                    throw XMLParseError("an unknown entity (entities are never resolved; write & as &amp;)")
                }
                out.unicodeScalars.append(scalar)
            }
            rest = rest[rest.index(after: semi)...]
        }
        return out + rest
    }
}

extension String {
    public func trimmingXMLSpacePublic() -> String { trimmingXMLSpace() }

    func trimmingXMLSpace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\n" || f == "\t" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\n" || l == "\t" || l == "\r" { s.removeLast() }
        return String(s)
    }
}

/// A strict `multipart/form-data` reader (RFC 7578) for small uploads: the
/// boundary from the Content-Type, parts with their Content-Disposition
/// name and filename and their own Content-Type. Anything malformed is nil.
public enum Multipart {
    public struct Part: Sendable {
        public var name: String
        public var filename: String?
        public var contentType: String?
        public var body: [UInt8]
    }

    public static func boundary(fromContentType value: String) -> String? {
        for param in value.split(separator: ";").dropFirst() {
            let kv = param.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, kv[0].trimmingSpaces().lowercased() == "boundary" else { continue }
            var b = kv[1].trimmingSpaces()
            if b.hasPrefix("\""), b.hasSuffix("\""), b.count >= 2 { b = String(b.dropFirst().dropLast()) }
            return (1...70).contains(b.utf8.count) ? b : nil
        }
        return nil
    }

    public static func parse(_ body: [UInt8], boundary: String, maxParts: Int = 16) -> [Part]? {
        let delimiter = Array("--\(boundary)".utf8)
        guard var cursor = find(delimiter, in: body, from: 0) else { return nil }
        var parts: [Part] = []
        while true {
            cursor += delimiter.count
            if cursor + 2 <= body.count, body[cursor] == UInt8(ascii: "-"), body[cursor + 1] == UInt8(ascii: "-") { return parts }
            guard cursor + 2 <= body.count, body[cursor] == 13, body[cursor + 1] == 10 else { return nil }
            cursor += 2
            guard let headerEnd = find([13, 10, 13, 10], in: body, from: cursor) else { return nil }
            guard let headerText = String(validating: body[cursor..<headerEnd], as: UTF8.self) else { return nil }
            let contentStart = headerEnd + 4
            guard let next = find([13, 10] + delimiter, in: body, from: contentStart) else { return nil }
            var name: String?
            var filename: String?
            var contentType: String?
            for line in headerText.split(separator: "\r\n") {
                guard let colon = line.firstIndex(of: ":") else { return nil }
                let field = line[..<colon].trimmingSpaces().lowercased()
                let value = line[line.index(after: colon)...].trimmingSpaces()
                if field == "content-disposition" {
                    let items = value.split(separator: ";").map { $0.trimmingSpaces() }
                    guard items.first?.lowercased() == "form-data" else { return nil }
                    for item in items.dropFirst() {
                        let kv = item.split(separator: "=", maxSplits: 1)
                        guard kv.count == 2 else { continue }
                        var v = String(kv[1])
                        if v.hasPrefix("\""), v.hasSuffix("\""), v.count >= 2 { v = String(v.dropFirst().dropLast()) }
                        switch kv[0].lowercased() {
                        case "name": name = v
                        case "filename": filename = v
                        default: break
                        }
                    }
                } else if field == "content-type" {
                    contentType = value
                }
            }
            guard let name else { return nil }
            parts.append(Part(name: name, filename: filename, contentType: contentType, body: Array(body[contentStart..<next])))
            guard parts.count <= maxParts else { return nil }
            cursor = next + 2
        }
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        let first = needle[0]
        var i = start
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == first {
                var j = 1
                while j < needle.count && haystack[i + j] == needle[j] { j += 1 }
                if j == needle.count { return i }
            }
            i += 1
        }
        return nil
    }
}

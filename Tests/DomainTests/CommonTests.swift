@testable import Common
import TestSupport
import Testing

@Suite struct JSONTests {
    @Test func parsesAndSerializesInOrder() throws {
        let value = try JSON.parse(#"{"b":1,"a":[true,false,null,"x\u00e9\ud83d\ude00",-2.5e1]}"#)
        #expect(value.text == #"{"b":1,"a":[true,false,null,"xé😀",-25]}"#)
        #expect(value["a"]?.arrayValue?.count == 5)
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "tru", "\"\\x\"", "\"a", "{\"a\" 1}", "[1] 2", "{\"a\":1,\"a\":2}",
        "\"\\ud800\"", "\"\\udc00x\"", "NaN", "1e999", "\"tab\there\"",
    ])
    func refusesMalformedJSON(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSON.parse(text) }
    }

    @Test func refusesInvalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSON.parse([0x22, 0xC3, 0x28, 0x22]) }
        #expect(throws: JSONParseError.self) { try JSON.parse([0x22, 0xFF, 0x22]) }
    }

    @Test func limitsNesting() throws {
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        #expect(throws: JSONParseError.self) { try JSON.parse(deep) }
        let ok = String(repeating: "[", count: 10) + String(repeating: "]", count: 10)
        _ = try JSON.parse(ok)
    }

    /// The hot-path writer gives the bytes the tree gives for the same members, escapes included.
    @Test func anObjectWrittenDirectlyIsTheObjectSerialized() {
        let text = "a\"b\\c\n\u{0}\u{7f} é 😀"
        var writer = JSONObjectWriter(capacity: 4)
        writer.string("s", text)
        writer.int("n", -42)
        writer.int("big", Int64.max)
        writer.value("cnf", ["jkt": "x"])
        writer.string("empty", "")
        let tree: JSON = ["s": .string(text), "n": -42, "big": .int(Int64.max), "cnf": ["jkt": "x"], "empty": ""]
        #expect(writer.finish() == tree.serialized())
        #expect(JSONObjectWriter().finish() == Array("{}".utf8))
    }

    @Test func escapesControlCharactersAndQuotes() {
        #expect(JSON.string("plain é ok").text == "\"plain é ok\"")
        #expect(JSON.string("\u{7f}ab\"\"cd\te").text == #""\u007fab\"\"cd\te""#)
        #expect(JSON.array([.int(0), .int(-7), .int(1_700_000_000_123), .int(Int64.min), .int(Int64.max)]).text
                == "[0,-7,1700000000123,-9223372036854775808,9223372036854775807]")
        #expect(JSON.string("a\"b\\c\n\u{0}\u{1f}").text == #""a\"b\\c\n\u0000\u001f""#)
    }

    /// The run-copying writer escapes exactly what the byte rule says, wherever the byte that needs it falls,
    /// next to multi-byte UTF-8 and at every length.
    @Test func escapesLikeTheByteRuleAtEveryPosition() throws {
        func reference(_ s: String) -> [UInt8] {
            var out: [UInt8] = [0x22]
            for b in s.utf8 {
                if JSON.needsEscape(b) { JSON.writeEscape(b, into: &out) } else { out.append(b) }
            }
            return out + [0x22]
        }
        let specials: [Character] = ["\u{0}", "\u{1F}", "\"", "\\", "\u{7F}", "\n", "é", "🔑", " ", "~", "!", "#", "[", "]", "\u{20}", "\u{21}", "\u{5B}", "\u{5D}", "\u{7E}", "\u{80}"]
        for length in 0...24 {
            for special in specials {
                for position in 0..<max(1, length) {
                    var chars = Array(repeating: Character("a"), count: length)
                    if length > 0 { chars[position] = special }
                    let text = String(chars)
                    var out: [UInt8] = []
                    JSON.writeString(text, into: &out)
                    #expect(out == reference(text), "\(length) \(position) \(special.unicodeScalars.first!.value)")
                    if out != reference(text) { return }
                }
            }
        }
        // Every byte value once, in one string, and round trips through the parser.
        let all = String(decoding: (0..<128).map(UInt8.init), as: UTF8.self) + "ünï🔑"
        #expect(try JSON.parse(JSON.string(all).serialized()) == .string(all))
    }

    @Test func keepsLargeIntegersExact() throws {
        #expect(try JSON.parse("9007199254740993") == .int(9_007_199_254_740_993))
        // Up to 18 digits are read directly, longer ones through text; past Int64, a double.
        #expect(try JSON.parse("[-0, -12, 0, 999999999999999999, -999999999999999999, 9223372036854775807, -9223372036854775808]")
            == [.int(0), .int(-12), .int(0), .int(999_999_999_999_999_999), .int(-999_999_999_999_999_999), .int(.max), .int(.min)])
        #expect(try JSON.parse("9223372036854775808") == .double(9_223_372_036_854_775_808))
    }

    /// Strings without escapes are taken as they are; an escape anywhere falls back to decoding.
    @Test func readsStringsWithAndWithoutEscapes() throws {
        #expect(try JSON.parse(#"["plain", "ünïcode 😀", "tail\n", "a\"b", "\u0041BC", ""]"#)
            == ["plain", "ünïcode 😀", "tail\n", "a\"b", "ABC", ""])
        #expect(throws: JSONParseError.self) { try JSON.parse([0x22, 0x61, 0xC3, 0x22]) }
    }

    /// Objects are equal whatever their members' order, at every size; a large one compares in linear work.
    @Test(arguments: [1, 16, 17, 60_000])
    func objectsCompareByMembers(_ size: Int) {
        let members = (0..<size).map { ("k\($0)", JSON.int(Int64($0))) }
        #expect(JSON.object(members) == JSON.object(members.reversed()))
        var changed = members
        changed[size / 2].1 = .int(-1)
        #expect(JSON.object(members) != JSON.object(changed.reversed()))
        var renamed = members
        renamed[size - 1].0 = "other"
        #expect(JSON.object(members) != JSON.object(renamed))
    }

    /// Duplicate keys are refused in small objects and in large ones (which switch to a set: linear, not quadratic).
    @Test func refusesDuplicateKeysAtEverySize() throws {
        for size in [2, 15, 16, 17, 40] {
            var members = (0..<size).map { "\"k\($0)\": \($0)" }
            _ = try JSON.parse("{" + members.joined(separator: ",") + "}")
            members.append("\"k\(size - 1)\": 0")
            #expect(throws: JSONParseError.self, "\(size) members") { try JSON.parse("{" + members.joined(separator: ",") + "}") }
        }
        // A large object (20,000 keys) parses: the set keeps the duplicate check linear.
        let big = "{" + (0..<20_000).map { "\"key\($0)\": true" }.joined(separator: ",") + "}"
        #expect(try JSON.parse(big).objectValue?.count == 20_000)
    }
}

@Suite struct EncodingTests {
    @Test func base64urlRoundTripsWithoutPadding() {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(($0 * 37 + 11) & 0xFF) }
            let text = Base64.urlEncode(bytes)
            #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
            #expect(Base64.urlDecode(text) == bytes)
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
    }

    @Test func base64MatchesRFC4648Vectors() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.urlEncode(Array(plain.utf8)) == encoded.replacingOccurrences(of: "=", with: ""))
            #expect(Base64.decode(encoded) == Array(plain.utf8))
        }
        let every = (0...255).map { UInt8($0) }
        #expect(Base64.encode(every).hasPrefix("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BB"))
        #expect(Base64.urlDecode(Base64.urlEncode(every)) == every && Base64.decode(Base64.encode(every)) == every)
        var appended: [UInt8] = Array("x.".utf8)
        Base64.urlEncode(Array("foob".utf8), into: &appended)
        #expect(appended == Array("x.Zm9vYg".utf8))
        // Bytes outside the alphabet anywhere (high bytes, '=' inside, the other alphabet's letters) are refused.
        #expect(Base64.urlDecode("Zm\u{e9}9v") == nil && Base64.decode("Zm=9v") == nil && Base64.decode("Zm9v-_") == nil && Base64.urlDecode("Zm9v+/") == nil)
    }

    @Test func base64urlRefusesNonCanonicalInput() {
        #expect(Base64.urlDecode("a") == nil)
        #expect(Base64.urlDecode("ab=") == nil)
        #expect(Base64.urlDecode("a+b/") == nil)
        #expect(Base64.urlDecode("AB") == nil)  // trailing bits set
        #expect(Base64.decode("QQ===") == nil)
        #expect(Base64.decode("QQ==") == [0x41])
    }

    /// `UTF8Text.string` (its ASCII path skips the validator) answers as `String(validating:)` does: the same text,
    /// and nil for the same invalid bytes (a high byte anywhere, even after a long ASCII run, takes the validator).
    @Test func utf8TextAgreesWithTheStandardLibrarysValidation() {
        let cases: [[UInt8]] = [
            [], Array("client_credentials".utf8), Array("caf\u{e9} \u{1F600}".utf8), [0x7F, 0x00, 0x41],
            [0x80], [0xC3], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xFF],
            Array(repeating: 0x61, count: 300) + [0xC3], Array(repeating: 0x61, count: 300) + [0xC3, 0xA9],
        ]
        var generator = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = [0x41, 0x80, 0xC3, 0xA9, 0xE2, 0xF0, 0x9F, 0xFF]
        let random: [[UInt8]] = (0..<2_000).map { _ in (0..<Int.random(in: 0...12, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! } }
        for bytes in cases + random {
            let expected = String(validating: bytes, as: UTF8.self)
            #expect(UTF8Text.string(bytes) == expected, "\(bytes)")
            let padded: [UInt8] = [0xC3] + bytes + [0xA9]
            #expect(UTF8Text.string(padded[1..<padded.count - 1]) == expected, "\(bytes), as a slice of a longer array")
        }
    }

    @Test func timestampsAreRFC3339WithMilliseconds() {
        #expect(Timestamp.rfc3339(millis: 0) == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp.rfc3339(millis: 1_796_025_600_123) == "2026-11-30T08:00:00.123Z")
        #expect(Timestamp.rfc3339(millis: -1) == "1969-12-31T23:59:59.999Z")
        #expect(Timestamp.rfc3339(millis: 253_402_300_799_999) == "9999-12-31T23:59:59.999Z")
        for millis: Int64 in [951_782_400_000, 4_107_542_399_001, 1_234_567_890_123] {
            #expect(Timestamp.parse(Timestamp.rfc3339(millis: millis)) == millis)
        }
        #expect(Timestamp.parse("2026-11-30T08:00:00.123Z") == 1_796_025_600_123)
        #expect(Timestamp.parse("2026-11-30T09:00:00+01:00") == 1_796_025_600_000)
        #expect(Timestamp.parse("2026-11-30") == nil)
        #expect(Timestamp.parse("2026-13-30T08:00:00Z") == nil)
    }
}

/// RFC 6902 JSON Patch, with the examples of its appendix A, applied in place.
@Suite struct JSONPatchTests {
    func apply(_ doc: String, _ ops: String) throws -> JSON {
        try JSON.parse(doc).patched(with: try #require(JSON.parse(ops).arrayValue).map(JSONPatchOperation.init))
    }

    @Test(arguments: [
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz","value":"qux"}]"#, #"{"foo":"bar","baz":"qux"}"#),         // A.1
        (#"{"foo":["bar","baz"]}"#, #"[{"op":"add","path":"/foo/1","value":"qux"}]"#, #"{"foo":["bar","qux","baz"]}"#), // A.2
        (#"{"baz":"qux","foo":"bar"}"#, #"[{"op":"remove","path":"/baz"}]"#, #"{"foo":"bar"}"#),                        // A.3
        (#"{"foo":["bar","qux","baz"]}"#, #"[{"op":"remove","path":"/foo/1"}]"#, #"{"foo":["bar","baz"]}"#),             // A.4
        (#"{"baz":"qux","foo":"bar"}"#, #"[{"op":"replace","path":"/baz","value":"boo"}]"#, #"{"foo":"bar","baz":"boo"}"#), // A.5
        (#"{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}"#, #"[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]"#,
         #"{"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}"#),                                                // A.6
        (#"{"foo":["all","grass","cows","eat"]}"#, #"[{"op":"move","from":"/foo/1","path":"/foo/3"}]"#,
         #"{"foo":["all","cows","eat","grass"]}"#),                                                                         // A.7
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/child","value":{"grandchild":{}}}]"#, #"{"foo":"bar","child":{"grandchild":{}}}"#), // A.10
        (#"{"foo":["bar"]}"#, #"[{"op":"add","path":"/foo/-","value":["abc","def"]}]"#, #"{"foo":["bar",["abc","def"]]}"#),  // A.16
        (#"{"a":{"b":[1,2]}}"#, #"[{"op":"copy","from":"/a/b","path":"/c"},{"op":"add","path":"/a/b/-","value":3}]"#,
         #"{"a":{"b":[1,2,3]},"c":[1,2]}"#),
    ])
    func appendixExamples(_ doc: String, _ ops: String, _ expected: String) throws {
        #expect(try apply(doc, ops) == JSON.parse(expected))
    }

    @Test(arguments: [
        (#"{"foo":"bar"}"#, #"[{"op":"add","path":"/baz/bat","value":"qux"}]"#),       // A.12: no parent
        (#"{"foo":["bar"]}"#, #"[{"op":"add","path":"/foo/2","value":1}]"#),            // past the end
        (#"{"foo":["bar"]}"#, #"[{"op":"remove","path":"/foo/01"}]"#),                  // a leading zero
        (#"{"baz":"qux"}"#, #"[{"op":"test","path":"/baz","value":"bar"}]"#),           // A.9
        (#"{"a":{"b":1}}"#, #"[{"op":"move","from":"/a","path":"/a/c"}]"#),             // into itself
        (#"{"a":1}"#, #"[{"op":"replace","path":"/b","value":2}]"#),                    // nothing to replace
        (#"{"a":1}"#, #"[{"op":"remove","path":""}]"#),
    ])
    func aFailingOperationFailsThePatch(_ doc: String, _ ops: String) throws {
        #expect(throws: JSONPatchError.self) { try apply(doc, ops) }
    }

    /// The document patched is a copy: the original stays as it was, also when an operation fails midway.
    @Test func theOriginalIsLeftAlone() throws {
        let original = try JSON.parse(#"{"list":[1,2],"o":{"k":"v"}}"#)
        let ops = try #require(JSON.parse(#"[{"op":"add","path":"/list/-","value":3},{"op":"remove","path":"/o/k"},{"op":"remove","path":"/nope"}]"#)
            .arrayValue).map(JSONPatchOperation.init)
        #expect(throws: JSONPatchError.self) { try original.patched(with: Array(ops.prefix(3))) }
        let patched = try original.patched(with: Array(ops.prefix(2)))
        #expect(try patched == JSON.parse(#"{"list":[1,2,3],"o":{}}"#))
        #expect(try original == JSON.parse(#"{"list":[1,2],"o":{"k":"v"}}"#))
    }

    /// 100,000 appends to one array: with a copy of the array for each, 5 x 10^9 elements copied.
    /// No `.timeLimit`: it counts from when the test is scheduled, and in the PostgreSQL pass the store tests'
    /// blocking calls hold the run's few threads, so this test once waited past a minute before it ran
    /// (fresh-clone run, session 20). On quadratic code it runs for many minutes instead.
    @Test func manyAppendsGrowTheArrayInPlace() throws {
        let ops = try (0..<100_000).map { try JSONPatchOperation(["op": "add", "path": "/a/-", "value": .int(Int64($0))]) }
        let patched = try JSON.parse(#"{"a":[]}"#).patched(with: ops)
        #expect(patched["a"]?.arrayValue?.count == 100_000)
        #expect(patched["a"]?.arrayValue?.last == .int(99_999))
    }
}

import Common
import OAuth
import Testing

/// The typed field reads every JSON surface shares (issue 12).
@Suite struct FieldReaderTests {
    static let body: JSON = [
        "name": "App", "nothing": .null, "count": 3, "flag": true, "uris": ["a", "b"], "mixed": ["a", 1], "wrong": .double(1.5),
    ]

    @Test func readsTypedValuesAndNullAsAbsent() throws {
        var r = FieldReader(collecting: Self.body)
        #expect(try r.string("name") == "App")
        #expect(try r.string("nothing") == nil && r.string("absent") == nil)
        #expect(try r.int("count") == 3)
        #expect(try r.bool("flag") == true)
        #expect(try r.strings("uris") == ["a", "b"])
        #expect(r.errors.isEmpty)
    }

    @Test func aCollectingReaderListsEveryProblemInReadingOrder() throws {
        var r = FieldReader(collecting: Self.body)
        _ = try r.string("count")
        _ = try r.int("wrong")
        _ = try r.bool("name")
        _ = try r.strings("mixed")
        _ = try r.strings("name")
        _ = try r.string("nothing", required: true)
        #expect(r.errors == [
            FieldError("count", "must be a string, not number"), FieldError("wrong", "must be an integer"),
            FieldError("name", "must be a boolean"), FieldError("mixed[1]", "must be a string"),
            FieldError("name", "must be an array of strings"), FieldError("nothing", "is required"),
        ])
        var nested = FieldReader(collecting: ["street": 1], prefix: "address.")
        _ = try nested.string("street")
        #expect(nested.errors == [FieldError("address.street", "must be a string, not number")])
    }

    struct SurfaceError: Error, Equatable { let text: String }

    @Test func aRefusingReaderThrowsTheSurfacesErrorAtTheFirstProblem() throws {
        var r = FieldReader(Self.body) { SurfaceError(text: "\($0.field) \($0.message)") }
        #expect(try r.string("name") == "App")
        #expect(throws: SurfaceError(text: "count must be a string, not number")) { try r.string("count") }
        #expect(throws: SurfaceError(text: "absent is required")) { try r.int("absent", required: true) }
        #expect(r.errors.isEmpty, "nothing is collected")
    }
}

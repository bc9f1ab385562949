import HTTPCore
import TestSupport
import Testing

/// RFC 7578 form data as the logo upload reads it.
@Suite struct MultipartTests {
    @Test func aFilePartIsReadWithItsNameFilenameAndType() throws {
        let body = Fixtures.multipart(contentType: "image/png", body: [0, 13, 10, 45, 45, 255])
        let parts = try #require(Multipart.parse(body, boundary: "XyZ-boundary-42"))
        #expect(parts.count == 1)
        #expect(parts[0].name == "image" && parts[0].filename == "logo.png" && parts[0].contentType == "image/png")
        #expect(parts[0].body == [0, 13, 10, 45, 45, 255], "CR LF and dashes inside the body are data")
    }

    @Test(arguments: [
        ("multipart/form-data; boundary=XyZ-boundary-42", "XyZ-boundary-42"),
        ("multipart/form-data; boundary=\"quoted boundary\"", "quoted boundary"),
        ("Multipart/Form-Data; charset=utf-8; BOUNDARY=abc", "abc"),
        ("multipart/form-data", nil),
    ] as [(String, String?)])
    func theBoundaryComesFromTheContentType(_ value: String, _ boundary: String?) {
        #expect(Multipart.boundary(fromContentType: value) == boundary, "\(value)")
    }

    @Test(arguments: [
        ("no closing delimiter", Array("--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx".utf8)),
        ("no headers end", Array("--b\r\nContent-Disposition: form-data; name=\"a\"".utf8)),
        ("no delimiter at all", Array("hello".utf8)),
        ("a part without a name", Array("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n".utf8)),
    ] as [(String, [UInt8])])
    func malformedBodiesAreRefused(_ name: String, _ body: [UInt8]) {
        #expect(Multipart.parse(body, boundary: "b") == nil, "\(name)")
    }

    @Test func thePartCountIsBounded() {
        var body: [UInt8] = []
        for i in 0..<17 { body += Array("--b\r\nContent-Disposition: form-data; name=\"p\(i)\"\r\n\r\nx\r\n".utf8) }
        body += Array("--b--\r\n".utf8)
        #expect(Multipart.parse(body, boundary: "b") == nil)
        #expect(Multipart.parse(body, boundary: "b", maxParts: 17)?.count == 17)
    }
}

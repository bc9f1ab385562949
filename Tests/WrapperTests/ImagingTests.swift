import Imaging
import TestSupport
import Testing

/// The libgd wrapper alone: headers read without decoding, the size limits,
/// and a re-encode that yields a PNG of the asked size with nothing else kept.
@Suite struct ImagingTests {
    static let images: [String: [UInt8]] = ["png300x120": Fixtures.png300x120, "jpeg64x48": Fixtures.jpeg64x48, "gif20x10": Fixtures.gif20x10]

    @Test(arguments: [
        ("png300x120", ImageFormat.png, 300, 120),
        ("jpeg64x48", .jpeg, 64, 48),
        ("gif20x10", .gif, 20, 10),
    ] as [(String, ImageFormat, Int, Int)])
    func headersAreReadWithoutDecoding(_ name: String, _ format: ImageFormat, _ width: Int, _ height: Int) throws {
        let bytes = try #require(Self.images[name])
        #expect(Imaging.sniff(bytes) == format)
        let header = try #require(Imaging.header(bytes))
        #expect(header.format == format && header.width == width && header.height == height)
        #expect(Imaging.acceptable(header))
    }

    @Test func aBombIsRefusedFromItsHeader() throws {
        let header = try #require(Imaging.header(Fixtures.pngBomb))
        #expect(header.width == 100_000 && !Imaging.acceptable(header))
        #expect(throws: ImagingError.self) { try Imaging.reencodePNG(Fixtures.pngBomb, format: .png, maxSide: 256) }
        #expect(Imaging.header(Array(Fixtures.png300x120.prefix(10))) == nil, "a truncated header")
    }

    @Test func aReencodeFitsEachSideAndNeverEnlarges() throws {
        let sizes = try Imaging.reencodePNG(Fixtures.png300x120, format: .png, sides: [256, 64])
        let big = try #require(Imaging.header(sizes[0])), small = try #require(Imaging.header(sizes[1]))
        #expect(big.format == .png && big.width == 256 && big.height <= 120)
        #expect(small.width == 64)
        let gif = try #require(Imaging.header(try Imaging.reencodePNG(Fixtures.gif20x10, format: .gif, maxSide: 256)))
        #expect(gif.format == .png && gif.width == 20 && gif.height == 10)
    }

    @Test func aFormatThatDoesNotMatchTheBytesIsRefused() {
        #expect(throws: ImagingError.self) { try Imaging.reencodePNG(Fixtures.jpeg64x48, format: .png, maxSide: 64) }
    }
}

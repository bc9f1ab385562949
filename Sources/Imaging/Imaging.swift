internal import CGD
import Synchronization

/// Image formats accepted for logos, recognised by their magic bytes.
public enum ImageFormat: String, Sendable, Equatable {
    case png = "image/png"
    case jpeg = "image/jpeg"
    case gif = "image/gif"
}

/// What the header of an image says, read without decoding anything.
public struct ImageHeader: Sendable, Equatable {
    public var format: ImageFormat
    public var width: Int
    public var height: Int
    /// JPEG scans (a progressive JPEG decodes once per scan); 1 otherwise.
    public var scans: Int = 1
}

public struct ImagingError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// Reads formats and dimensions from headers (so a decompression bomb is
/// refused before a byte is decoded) and re-encodes images with libgd.
public enum Imaging {
    /// The format from the magic bytes; nil for anything else (SVG, HTML, ...).
    public static func sniff(_ bytes: [UInt8]) -> ImageFormat? {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if bytes.starts(with: Array("GIF87a".utf8)) || bytes.starts(with: Array("GIF89a".utf8)) { return .gif }
        return nil
    }

    /// Format and dimensions from the header; nil when the header is missing or truncated.
    public static func header(_ b: [UInt8]) -> ImageHeader? {
        guard let format = sniff(b) else { return nil }
        switch format {
        case .png:
            // Signature (8), IHDR length (4) and type (4), then width and height, big-endian.
            guard b.count >= 24, Array(b[12..<16]) == Array("IHDR".utf8) else { return nil }
            return ImageHeader(format: .png, width: be32(b, 16), height: be32(b, 20))
        case .gif:
            // The logical screen, and the first frame's own size (the decoder
            // allocates by the frame): the larger of each counts.
            guard b.count >= 13 else { return nil }
            var width = Int(b[6]) | Int(b[7]) << 8, height = Int(b[8]) | Int(b[9]) << 8
            var i = 13
            if b[10] & 0x80 != 0 { i += 3 << (Int(b[10] & 0x07) + 1) }
            while i < b.count {
                switch b[i] {
                case 0x2C:
                    guard i + 9 <= b.count else { return nil }
                    width = max(width, Int(b[i + 5]) | Int(b[i + 6]) << 8)
                    height = max(height, Int(b[i + 7]) | Int(b[i + 8]) << 8)
                    return ImageHeader(format: .gif, width: width, height: height)
                case 0x21:
                    // Extension: label, then sub-blocks until a zero length.
                    i += 2
                    while i < b.count, b[i] != 0 { i += Int(b[i]) + 1 }
                    i += 1
                default:
                    return nil
                }
            }
            return nil
        case .jpeg:
            var i = 2
            while i + 9 < b.count {
                guard b[i] == 0xFF else { return nil }
                let marker = b[i + 1]
                if marker == 0xFF { i += 1; continue }
                if marker == 0xD8 || (0xD0...0xD7).contains(marker) || marker == 0x01 { i += 2; continue }
                let length = Int(b[i + 2]) << 8 | Int(b[i + 3])
                guard length >= 2 else { return nil }
                if (0xC0...0xCF).contains(marker) && marker != 0xC4 && marker != 0xC8 && marker != 0xCC {
                    return ImageHeader(format: .jpeg, width: Int(b[i + 7]) << 8 | Int(b[i + 8]), height: Int(b[i + 5]) << 8 | Int(b[i + 6]),
                                       scans: jpegScans(b, from: i))
                }
                if marker == 0xDA || marker == 0xD9 { return nil }
                i += 2 + length
            }
            return nil
        }
    }

    /// Start-of-scan markers from `start` on. Inside entropy-coded data a 0xFF
    /// byte is always followed by 0x00 (stuffing) or a restart marker, so
    /// every FF DA is a real scan: one linear pass, nothing decoded.
    static func jpegScans(_ b: [UInt8], from start: Int) -> Int {
        var scans = 0
        var i = start
        while i + 1 < b.count {
            if b[i] == 0xFF && b[i + 1] == 0xDA { scans += 1 }
            i += 1
        }
        return scans
    }

    static func be32(_ b: [UInt8], _ i: Int) -> Int {
        Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3])
    }

    /// The most pixels a logo may have (SPEC 7.1), checked from the header
    /// before anything is decoded: 2048x2048 decodes to 16 MiB.
    public static let maxPixels = 4_194_304
    public static let maxSide = 4096
    /// The most scans a JPEG may have: a progressive JPEG has about ten; each
    /// scan is a pass over the whole image, and thousands make a CPU bomb.
    public static let maxScans = 64

    /// Whether a header's dimensions (and a JPEG's scans) are within the limits.
    public static func acceptable(_ header: ImageHeader) -> Bool {
        (1...maxSide).contains(header.width) && (1...maxSide).contains(header.height) && header.width * header.height <= maxPixels
            && header.scans <= maxScans
    }

    /// One decode at a time in the process: each may need up to 16 MiB, and a
    /// burst of parallel uploads must not multiply that (the 64 MiB target).
    private static let decodeGate = Mutex<Void>(())

    /// Decodes the image once and re-encodes it as PNG scaled to fit within
    /// each of `sides` (never enlarged): the logo and its small preview.
    /// Metadata, extra chunks and anything appended to the image are
    /// dropped. Refuses images whose header is over the limits.
    public static func reencodePNG(_ bytes: [UInt8], format: ImageFormat, sides: [Int]) throws -> [[UInt8]] {
        guard let header = header(bytes), header.format == format, acceptable(header) else {
            throw ImagingError(description: "the image header is missing or over the size limits")
        }
        return try decodeGate.withLock { _ in
            defer { lk_release_freed_memory() }
            return try reencodePNGUngated(bytes, format: format, sides: sides)
        }
    }

    /// As above, one size.
    public static func reencodePNG(_ bytes: [UInt8], format: ImageFormat, maxSide: Int) throws -> [UInt8] {
        try reencodePNG(bytes, format: format, sides: [maxSide])[0]
    }

    static func reencodePNGUngated(_ bytes: [UInt8], format: ImageFormat, sides: [Int]) throws -> [[UInt8]] {
        lk_gd_quiet()
        let decoded: gdImagePtr? = bytes.withUnsafeBytes { raw in
            let ptr = UnsafeMutableRawPointer(mutating: raw.baseAddress)
            switch format {
            case .png: return gdImageCreateFromPngPtr(Int32(raw.count), ptr)
            case .jpeg: return gdImageCreateFromJpegPtr(Int32(raw.count), ptr)
            case .gif: return gdImageCreateFromGifPtr(Int32(raw.count), ptr)
            }
        }
        guard let source = decoded else { throw ImagingError(description: "the image could not be decoded") }
        defer { gdImageDestroy(source) }
        let w = Int(lk_gd_width(source)), h = Int(lk_gd_height(source))
        guard w > 0, h > 0 else { throw ImagingError(description: "the image is empty") }
        return try sides.map { maxSide in
            let scale = min(1.0, Double(maxSide) / Double(max(w, h)))
            let tw = max(1, Int((Double(w) * scale).rounded())), th = max(1, Int((Double(h) * scale).rounded()))
            guard let target = gdImageCreateTrueColor(Int32(tw), Int32(th)) else { throw ImagingError(description: "out of memory") }
            defer { gdImageDestroy(target) }
            gdImageAlphaBlending(target, 0)
            gdImageSaveAlpha(target, 1)
            let transparent = gdImageColorAllocateAlpha(target, 0, 0, 0, 127)
            gdImageFilledRectangle(target, 0, 0, Int32(tw - 1), Int32(th - 1), transparent)
            gdImageCopyResampled(target, source, 0, 0, 0, 0, Int32(tw), Int32(th), Int32(w), Int32(h))
            var size: Int32 = 0
            guard let png = gdImagePngPtr(target, &size), size > 0 else { throw ImagingError(description: "PNG encoding failed") }
            defer { gdFree(png) }
            return Array(UnsafeRawBufferPointer(start: png, count: Int(size)))
        }
    }
}

/// How logos are decoded and re-encoded: in this process (tests, the CLI),
/// or in a short-lived child process (`latchkey serve`), so that the
/// decoder's memory (up to 32 MiB for a 2048x2048 RGBA PNG) never counts
/// against the serving process (SPEC 8: 64 MiB), and a fault in the image
/// library, the classic attack surface of an upload, stays outside it.
public struct ImageReencoder: Sendable {
    public let reencode: @Sendable (_ bytes: [UInt8], _ format: ImageFormat, _ sides: [Int]) throws -> [[UInt8]]

    public init(_ reencode: @escaping @Sendable ([UInt8], ImageFormat, [Int]) throws -> [[UInt8]]) { self.reencode = reencode }

    public static let inProcess = ImageReencoder { try Imaging.reencodePNG($0, format: $1, sides: $2) }

    /// The child's answer: for each side, a 4-byte big-endian length and the PNG.
    public static func frame(_ images: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for image in images {
            let n = UInt32(image.count)
            out += [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + image
        }
        return out
    }

    /// The reverse of `frame`; nil unless exactly `count` images fill `bytes`.
    public static func unframe(_ bytes: [UInt8], count: Int) -> [[UInt8]]? {
        var images: [[UInt8]] = []
        var i = 0
        while i + 4 <= bytes.count {
            let n = Int(bytes[i]) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            i += 4
            guard n <= bytes.count - i else { return nil }
            images.append(Array(bytes[i..<i + n]))
            i += n
        }
        return i == bytes.count && images.count == count ? images : nil
    }
}


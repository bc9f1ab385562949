/// Base64 and base64url (RFC 4648 §4, §5) and hex, over byte arrays.
public enum Base64 {
    static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    static let urlAlphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    public static func encode(_ data: [UInt8]) -> String { encode(data, alphabet: alphabet, pad: true) }
    /// Base64url without padding, as JOSE uses it (RFC 7515 §2).
    public static func urlEncode(_ data: [UInt8]) -> String { encode(data, alphabet: urlAlphabet, pad: false) }
    public static func urlEncode(_ text: String) -> String { urlEncode(Array(text.utf8)) }
    /// Whether `b` is a character of the base64url alphabet (RFC 4648 §5).
    public static func isURLSafeByte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F
    }

    static func encode(_ data: [UInt8], alphabet: [UInt8], pad: Bool) -> String {
        var out: [UInt8] = []
        encode(data, alphabet: alphabet, pad: pad, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends base64url without padding to `out` (JWS building, no intermediate strings).
    public static func urlEncode(_ data: [UInt8], into out: inout [UInt8]) { encode(data, alphabet: urlAlphabet, pad: false, into: &out) }

    static func encode(_ data: [UInt8], alphabet: [UInt8], pad: Bool, into out: inout [UInt8]) {
        let rest = data.count % 3
        let length = data.count / 3 * 4 + (rest == 0 ? 0 : pad ? 4 : rest + 1)
        guard length > 0 else { return }
        // Written into a buffer of the exact size, then appended whole: no per-byte growth checks.
        let encoded = [UInt8](unsafeUninitializedCapacity: length) { buffer, initialized in
            data.withUnsafeBufferPointer { input in
                alphabet.withUnsafeBufferPointer { letters in
                    var i = 0, o = 0
                    while i + 3 <= input.count {
                        let n = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
                        buffer[o] = letters[Int(n >> 18 & 63)]; buffer[o + 1] = letters[Int(n >> 12 & 63)]
                        buffer[o + 2] = letters[Int(n >> 6 & 63)]; buffer[o + 3] = letters[Int(n & 63)]
                        i += 3; o += 4
                    }
                    if rest > 0 {
                        let n = UInt32(input[i]) << 16 | (rest == 2 ? UInt32(input[i + 1]) << 8 : 0)
                        buffer[o] = letters[Int(n >> 18 & 63)]; buffer[o + 1] = letters[Int(n >> 12 & 63)]
                        o += 2
                        if rest == 2 { buffer[o] = letters[Int(n >> 6 & 63)]; o += 1 }
                        while pad && o < length { buffer[o] = 61; o += 1 }
                    }
                    initialized = o
                }
            }
        }
        out.append(contentsOf: encoded)
    }

    /// Standard base64; padding optional, no whitespace.
    public static func decode(_ text: String) -> [UInt8]? { decode(text, url: false) }
    /// Standard base64 from bytes (a header value already split up).
    public static func decode(bytes: [UInt8]) -> [UInt8]? { decode(chars: bytes, url: false) }
    /// Base64url without padding; refuses '=', '+', '/' and non-canonical trailing bits.
    public static func urlDecode(_ text: String) -> [UInt8]? { decode(text, url: true) }
    /// Base64url from bytes (a part of a compact JWS already split up).
    public static func urlDecode(bytes: ArraySlice<UInt8>) -> [UInt8]? { decode(chars: Array(bytes), url: true) }

    static func decode(_ text: String, url: Bool) -> [UInt8]? { decode(chars: Array(text.utf8), url: url) }

    /// Each byte's 6-bit value in one alphabet, 0xFF for a byte outside it.
    static func values(_ alphabet: [UInt8]) -> [UInt8] {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, letter) in alphabet.enumerated() { table[Int(letter)] = UInt8(value) }
        return table
    }

    static let standardValues = values(alphabet)
    static let urlValues = values(urlAlphabet)

    static func decode(chars input: [UInt8], url: Bool) -> [UInt8]? {
        var count = input.count
        if !url {
            var pads = 0
            while count > 0 && input[count - 1] == 61 { count -= 1; pads += 1 }
            if pads > 2 || (pads > 0 && input.count % 4 != 0) { return nil }
        }
        if count % 4 == 1 { return nil }
        let table = url ? urlValues : standardValues
        var valid = true
        let decoded = [UInt8](unsafeUninitializedCapacity: count * 3 / 4) { buffer, initialized in
            input.withUnsafeBufferPointer { chars in
                table.withUnsafeBufferPointer { values in
                    var acc: UInt32 = 0, bits: UInt32 = 0, o = 0
                    for i in 0..<count {
                        let v = values[Int(chars[i])]
                        if v == 0xFF { valid = false; break }
                        acc = acc << 6 | UInt32(v)
                        bits += 6
                        if bits >= 8 {
                            bits -= 8
                            buffer[o] = UInt8(truncatingIfNeeded: acc >> bits)
                            o += 1
                        }
                    }
                    // Canonical encodings only: the bits past the last whole byte are zero.
                    if valid && bits > 0 && acc & ((1 << bits) - 1) != 0 { valid = false }
                    initialized = o
                }
            }
        }
        return valid ? decoded : nil
    }
}

public enum Hex {
    public static func encode(_ data: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(data.count * 2)
        for b in data {
            out.append(JSON.hexDigits[Int(b >> 4)])
            out.append(JSON.hexDigits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    public static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - 48
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - 87
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - 55
        default: return nil
        }
    }
}

/// Percent-encoding of a URI component: everything but RFC 3986's
/// unreserved characters is escaped.
public enum PercentEncoding {
    static let upperHex: [UInt8] = Array("0123456789ABCDEF".utf8)

    public static func encode(_ text: String) -> String { encode(text, keeping: isUnreserved) }

    /// `text` with every byte but those `keeping` accepts escaped, in uppercase hex.
    public static func encode(_ text: String, keeping: (UInt8) -> Bool) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for b in text.utf8 {
            if keeping(b) {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(upperHex[Int(b >> 4)])
                out.append(upperHex[Int(b & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// RFC 3986 §2.3: ALPHA, DIGIT, "-", ".", "_", "~".
    public static func isUnreserved(_ b: UInt8) -> Bool {
        switch b {
        case 48...57, 65...90, 97...122, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"): true
        default: false
        }
    }
}

/// What an error message repeats of a caller's own text (a field or member
/// name, a path): at most 64 bytes, cut at a character, marked with "…"
/// when cut. An error answer stays small whatever was sent (SPEC 7.1;
/// review, session 20: a 1 MiB field name came back three times over,
/// escaped, 18 MB for 1 MB).
public enum Echo {
    public static let maxBytes = 64

    public static func name<S: StringProtocol>(_ text: S) -> String {
        guard text.utf8.count > maxBytes else { return String(text) }
        var cut = ""
        for c in text {
            guard cut.utf8.count + c.utf8.count <= maxBytes else { break }
            cut.append(c)
        }
        return cut + "…"
    }
}

/// UTF-8 text from bytes, refusing invalid UTF-8: `String(validating:as:)`,
/// with pure ASCII (nearly every protocol value: ids, tokens, grant types)
/// copied without the standard library's generic validator, whose metadata
/// lookups cost more than the copy (about 1k instructions a value).
public enum UTF8Text {
    public static func string(_ bytes: ArraySlice<UInt8>) -> String? {
        bytes.withUnsafeBufferPointer(string)
    }

    public static func string(_ bytes: [UInt8]) -> String? {
        bytes.withUnsafeBufferPointer(string)
    }

    public static func string(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
        var high: UInt8 = 0
        for b in bytes { high |= b }
        if high < 0x80 { return String(decoding: bytes, as: UTF8.self) }
        return String(validating: bytes, as: UTF8.self)
    }
}

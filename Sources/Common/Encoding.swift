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
        out.reserveCapacity(out.count + (data.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= data.count {
            let n = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2])
            out.append(alphabet[Int(n >> 18 & 63)]); out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)]); out.append(alphabet[Int(n & 63)])
            i += 3
        }
        let rest = data.count - i
        if rest == 1 {
            let n = UInt32(data[i]) << 16
            out.append(alphabet[Int(n >> 18 & 63)]); out.append(alphabet[Int(n >> 12 & 63)])
            if pad { out.append(contentsOf: [61, 61]) }
        } else if rest == 2 {
            let n = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8
            out.append(alphabet[Int(n >> 18 & 63)]); out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            if pad { out.append(61) }
        }
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

    static func decode(chars input: [UInt8], url: Bool) -> [UInt8]? {
        var chars = input
        if !url {
            let total = chars.count
            var pads = 0
            while chars.last == 61 { chars.removeLast(); pads += 1 }
            if pads > 2 || (pads > 0 && total % 4 != 0) { return nil }
        }
        if chars.count % 4 == 1 { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count * 3 / 4)
        var acc: UInt32 = 0
        var bits = 0
        for c in chars {
            let v: UInt32
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - 65)
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - 97 + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - 48 + 52)
            case UInt8(ascii: "-") where url, UInt8(ascii: "+") where !url: v = 62
            case UInt8(ascii: "_") where url, UInt8(ascii: "/") where !url: v = 63
            default: return nil
            }
            acc = acc << 6 | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(acc >> UInt32(bits) & 0xFF))
            }
        }
        if bits > 0 && acc & ((1 << UInt32(bits)) - 1) != 0 { return nil }
        return out
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

    public static func encode(_ text: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for b in text.utf8 {
            switch b {
            case 48...57, 65...90, 97...122, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(b)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(upperHex[Int(b >> 4)])
                out.append(upperHex[Int(b & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

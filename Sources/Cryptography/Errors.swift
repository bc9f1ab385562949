internal import COpenSSL

/// A failure inside OpenSSL or a key that does not fit its algorithm. The
/// message comes from OpenSSL's error queue (read and cleared here) and never
/// contains key material.
public struct CryptoError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public var description: String { message }

    init(_ what: String) {
        var parts: [String] = []
        var code = ERR_get_error()
        while code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            parts.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            code = ERR_get_error()
        }
        message = parts.isEmpty ? what : "\(what): \(parts.joined(separator: "; "))"
    }

    init(plain: String) { message = plain }
}

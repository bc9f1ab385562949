internal import CCurl
import Synchronization

/// Outgoing form POSTs (Back-Channel Logout tokens), over libcurl: every
/// request of a batch at once, http and https only, no redirect followed,
/// no proxy taken from the environment, no cookies, the answer's body
/// discarded, one timeout for connecting and answering. `admits` is asked
/// for every address libcurl is about to connect to, after its own name
/// resolution: a refused address is never dialled (libcurl tries the
/// name's next address, if any), so what is checked is what is reached.
public enum FormPoster {
    public struct Outcome: Sendable, Equatable {
        /// The answer's HTTP status; nil when none came (refused, unreachable, timed out).
        public let status: Int?
        /// Whether `admits` refused an address the name resolved to.
        public let refusedAddress: Bool

        public init(status: Int?, refusedAddress: Bool) {
            self.status = status
            self.refusedAddress = refusedAddress
        }
    }

    /// What the C callback reaches through its context pointer.
    final class Gate: Sendable {
        let admits: @Sendable ([UInt8], Int) -> Bool
        init(_ admits: @escaping @Sendable ([UInt8], Int) -> Bool) { self.admits = admits }
    }

    /// libcurl's global set-up, done once (Swift runs a static's initializer once, thread-safely).
    static let ready: Bool = lk_curl_global_init() == 0

    /// `admits(address, i)`: whether the `i`th POST of the batch may connect to `address`.
    public static func post(_ batch: [(url: String, form: [UInt8])], timeoutSeconds: Int,
                            admits: @escaping @Sendable (_ address: [UInt8], _ index: Int) -> Bool) -> [Outcome] {
        guard !batch.isEmpty else { return [] }
        guard ready else { return batch.map { _ in Outcome(status: nil, refusedAddress: false) } }
        // NUL-terminated copies that outlive the call (libcurl keeps the pointers until the transfers end).
        let urls = batch.map { Array($0.url.utf8CString) }
        let bodies = batch.map { $0.form.map { CChar(bitPattern: $0) } + [0] }
        let gate = Unmanaged.passRetained(Gate(admits))
        defer { gate.release() }
        var posts = [lk_curl_post](repeating: lk_curl_post(), count: batch.count)
        let admit: lk_curl_admit = { address, length, index, context in
            guard let address, let context, length == 4 || length == 16 else { return 0 }
            let bytes = Array(UnsafeBufferPointer(start: address, count: Int(length)))
            return Unmanaged<Gate>.fromOpaque(context).takeUnretainedValue().admits(bytes, Int(index)) ? 1 : 0
        }
        let result: Int32 = withPointers(urls) { urlPointers in
            withPointers(bodies) { bodyPointers in
                for i in posts.indices {
                    posts[i].url = urlPointers[i]
                    posts[i].body = bodyPointers[i]
                    posts[i].body_length = batch[i].form.count
                }
                return lk_curl_post_all(&posts, Int32(posts.count), timeoutSeconds * 1000, admit, gate.toOpaque())
            }
        }
        guard result == 0 else { return batch.map { _ in Outcome(status: nil, refusedAddress: false) } }
        return posts.map { Outcome(status: $0.status > 0 ? $0.status : nil, refusedAddress: $0.refused != 0) }
    }

    /// Base addresses of each buffer, valid inside `body`.
    static func withPointers<R>(_ buffers: [[CChar]], _ body: ([UnsafePointer<CChar>]) -> R) -> R {
        func go(_ i: Int, _ acc: [UnsafePointer<CChar>]) -> R {
            guard i < buffers.count else { return body(acc) }
            return buffers[i].withUnsafeBufferPointer { go(i + 1, acc + [$0.baseAddress!]) }
        }
        return go(0, [])
    }
}

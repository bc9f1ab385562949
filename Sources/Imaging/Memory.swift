internal import CGD

/// Process memory settings for the worker pool (SPEC 8: one serving process
/// stays within 64 MiB while logos are decoded and passwords hashed). Here
/// because the image decoder is what needed them first, and this target
/// already wraps the C header that declares them.
public enum ProcessMemory {
    /// Allocations of 1 MiB or more get their own mapping and go back to the
    /// system when freed: a burst of 16 MiB scrypt hashes or image decodes
    /// leaves no lasting RSS behind (glibc would otherwise keep them).
    @discardableResult
    public static func returnLargeAllocationsAtOnce(threshold: Int = 1 << 20) -> Bool {
        lk_fixed_mmap_threshold(Int32(threshold)) == 1
    }
}

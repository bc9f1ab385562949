import ArgumentParser
import Common
import Cryptography
import FastCGI
import Foundation
import HTTPCore
import Imaging
import OAuth
import Postgres
import PostgresStore
import SQLiteStore
import Server

/// The child side of logo decoding (`ImageReencoder`): reads one image on
/// stdin, writes the re-encoded PNGs framed on stdout, exits. `serve` runs
/// one per upload, so the decoder's memory and any fault in libgd stay out
/// of the serving process.
struct ReencodeImage: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "reencode-image", abstract: "Decode and re-encode one logo (used by serve).",
                                                    shouldDisplay: false)
    @Option(help: "image/png, image/jpeg or image/gif") var format: String
    @Option(help: "Comma-separated maximum sides, e.g. 256,64.") var sides: String
    static let maxInput = 2 * 1024 * 1024

    /// CPU seconds a decode may take: a 2048x2048 progressive JPEG decodes in
    /// well under one; a crafted one with thousands of scans would take minutes.
    static let cpuSeconds: rlim_t = 3

    func run() throws {
        // Hard ceilings for the decoder, set before it reads a byte: CPU time
        // (SIGXCPU, then SIGKILL, past it) and address space (far above what a
        // 4-megapixel image needs). The parent blocked SIGTERM and friends in
        // its threads and we inherit that mask: the parent's watchdog kills
        // with SIGKILL.
        var cpu = rlimit(rlim_cur: ReencodeImage.cpuSeconds, rlim_max: ReencodeImage.cpuSeconds + 1)
        var memory = rlimit(rlim_cur: 512 << 20, rlim_max: 512 << 20)
        guard setrlimit(__rlimit_resource_t(RLIMIT_CPU.rawValue), &cpu) == 0,
              setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &memory) == 0 else {
            throw CLIError("cannot limit the decoder's resources")
        }
        guard let format = ImageFormat(rawValue: format) else { throw ValidationError("unknown format") }
        let sides = sides.split(separator: ",").compactMap { Int($0) }
        guard !sides.isEmpty, sides.allSatisfy({ (1...1024).contains($0) }) else { throw ValidationError("bad sides") }
        let input = FileHandle.standardInput.readData(ofLength: ReencodeImage.maxInput + 1)
        guard input.count <= ReencodeImage.maxInput else { throw CLIError("image too large") }
        let images = try Imaging.reencodePNG(Array(input), format: format, sides: sides)
        FileHandle.standardOutput.write(Data(ImageReencoder.frame(images)))
    }

    /// The parent side: runs this binary as `reencode-image` with no
    /// environment (no setting or secret reaches the child), feeds it the
    /// image, and kills it (SIGKILL) if it takes longer than `timeoutSeconds`.
    /// One child at a time per process, one more caller waiting up to two
    /// seconds; anyone beyond gets `SlowHashesBusy` (503): a decode costs a
    /// core, and uploads must never take every core from token traffic.
    static func childProcess(executable: String = "/proc/self/exe", timeoutSeconds: Double = 5,
                             gate: SlowHashPool = SlowHashPool(permits: 1, maxWaiters: 1, maxWaitMillis: 2_000)) -> ImageReencoder {
        ImageReencoder { bytes, format, sides in try gate.run { try decodeInChild(executable, timeoutSeconds, bytes, format, sides) } }
    }

    static func decodeInChild(_ executable: String, _ timeoutSeconds: Double, _ bytes: [UInt8], _ format: ImageFormat, _ sides: [Int]) throws -> [[UInt8]] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["reencode-image", "--format", format.rawValue, "--sides", sides.map(String.init).joined(separator: ",")]
        process.environment = [:]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let pid = process.processIdentifier
        let watchdog = DispatchWorkItem { if process.isRunning { _ = kill(pid, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeoutSeconds, execute: watchdog)
        defer { watchdog.cancel() }
        // The child reads all of its input before it writes, so writing first cannot deadlock.
        try? input.fileHandleForWriting.write(contentsOf: Data(bytes))
        try? input.fileHandleForWriting.close()
        let answer = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationReason == .exit, process.terminationStatus == 0,
              let images = ImageReencoder.unframe(Array(answer), count: sides.count) else {
            throw ImagingError(description: "the image could not be decoded")
        }
        return images
    }
}

import Common
import Foundation
import OAuth
import SQLite
import Synchronization

/// Checkpoints the WAL from its own thread and connection every
/// `intervalMillis`, so the copy into the database file and its fsync
/// (`synchronous=NORMAL` syncs at checkpoints) stay off the request path,
/// where they would hold the writer lock.
///
/// A PASSIVE checkpoint never waits, but under a steady stream of writes it
/// never finishes either, and the WAL only starts over after one that did.
/// So when the WAL has grown past `restartFrames`, the round takes the
/// in-process writer lock (writers wait, readers do not) and runs a RESTART
/// checkpoint, which has little left to copy after the PASSIVE one.
public final class Checkpointer: Sendable {
    private let path: String
    private let intervalMillis: Int
    private let writerLock: WriterLock?
    private let restartFrames: Int
    private let state = Mutex<(started: Bool, stop: Bool, done: Bool)>((false, false, false))

    public init(path: String, intervalMillis: Int = 200, writerLock: WriterLock? = nil, restartFrames: Int = 4096) {
        self.path = path
        self.intervalMillis = intervalMillis
        self.writerLock = writerLock
        self.restartFrames = restartFrames
    }

    /// Starts the thread; it runs until `stop()`.
    public func start() {
        state.withLock { $0.started = true }
        let thread = Thread { [self] in self.loop() }
        thread.name = "latchkey-checkpoint"
        thread.start()
    }

    private func loop() {
        defer { state.withLock { $0.done = true } }
        // RESTART waits for readers through the busy handler while writers
        // wait on the lock: 10 ms at most, and after a reader outlasts it
        // (a backup, a long list) no RESTART for the next 25 rounds.
        guard let store = try? SQLiteStore(path: path, migrate: false, busyTimeoutMillis: 10) else { return }
        var pause = 0
        while !state.withLock({ $0.stop }) {
            Thread.sleep(forTimeInterval: Double(intervalMillis) / 1000)
            // Busy or failed: the next round tries again; the backstop is SQLite's own.
            guard let passive = try? store.checkpoint(), passive.walFrames > restartFrames, let writerLock else { continue }
            if pause > 0 { pause -= 1; continue }
            writerLock.lock.lock()
            let restarted = try? store.checkpoint(restart: true)
            writerLock.lock.unlock()
            if restarted?.busy != false { pause = 25 }
        }
        _ = try? store.checkpoint()
    }

    /// Stops the thread after its current round and waits for it (one interval at most).
    public func stop() {
        let started = state.withLock { $0.stop = true; return $0.started }
        guard started else { return }
        while !state.withLock({ $0.done }) { Thread.sleep(forTimeInterval: 0.01) }
    }
}

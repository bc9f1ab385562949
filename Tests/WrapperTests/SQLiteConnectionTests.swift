import Foundation
import SQLite
import TestSupport
import Testing

/// The SQLite wrapper alone: values bound and read back in every storage
/// class, and the error kinds the stores rely on (busy, constraint).
@Suite struct SQLiteConnectionTests {
    func temporaryPath() -> String { NSTemporaryDirectory() + "latchkey-sqlite-" + UUID().uuidString + ".db" }

    @Test func valuesRoundTripInEveryStorageClass() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try Connection(path: path)
        try c.execute("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, n TEXT)")
        let bytes: [UInt8] = [0, 1, 2, 255, 0, 128]
        #expect(try c.run("INSERT INTO t VALUES (?, ?, ?, ?)", [.integer(-9_007_199_254_740_993), "Grüße, 名前 ✓", .blob(bytes), nil]) == 1)
        let row = try #require(try c.query("SELECT i, s, b, n FROM t").first)
        #expect(row.int(0) == -9_007_199_254_740_993)
        #expect(row.string(1) == "Grüße, 名前 ✓")
        #expect(row.blob(2) == bytes)
        #expect(row.optionalString(3) == nil)
        #expect(try c.integer("SELECT count(*) FROM t") == 1)
    }

    /// Text is bound as its bytes and their count, never as a C string: a
    /// value with a NUL is compared whole ("a\0b" is not "a"), and the empty
    /// string stays text, not NULL.
    @Test func textIsBoundWholeNULsIncluded() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try Connection(path: path)
        try c.execute("CREATE TABLE t (s TEXT)")
        #expect(try c.run("INSERT INTO t VALUES (?)", ["a"]) == 1)
        #expect(try c.query("SELECT s FROM t WHERE s = ?", ["a\u{0}b"]).isEmpty)
        #expect(try c.query("SELECT length(CAST(? AS BLOB))", ["a\u{0}b"]).first?.int(0) == 3)
        #expect(try c.query("SELECT ? IS NULL", [""]).first?.int(0) == 0)
        #expect(try c.query("SELECT s FROM t WHERE s = ?", ["a"]).count == 1)
    }

    @Test func aUniquenessViolationIsAConstraintError() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try Connection(path: path)
        try c.execute("CREATE TABLE u (k TEXT PRIMARY KEY)")
        _ = try c.run("INSERT INTO u VALUES (?)", ["a"])
        #expect { _ = try c.run("INSERT INTO u VALUES (?)", ["a"]) } throws: { ($0 as? SQLiteError)?.isConstraint == true }
    }

    @Test func aLockHeldPastTheTimeoutIsBusy() throws {
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let holder = try Connection(path: path)
        try holder.execute("CREATE TABLE w (k INTEGER)")
        try holder.execute("BEGIN IMMEDIATE")
        defer { try? holder.execute("ROLLBACK") }
        let waiter = try Connection(path: path, busyTimeoutMillis: 10)
        #expect { try waiter.execute("BEGIN IMMEDIATE") } throws: { ($0 as? SQLiteError)?.isBusy == true }
    }

    @Test func aSyntaxErrorSaysWhichStatement() throws {
        let c = try Connection(path: ":memory:")
        #expect { try c.execute("SELEC 1") } throws: { "\($0)".contains("SELEC 1") }
    }
}

"""What recording one single-use jti costs SQLite (a DPoP proof, a client
assertion) once the table holds what a busy server keeps: ROWS records (the
default, 900,000, is 5,000 proofs a second for their three minutes), then
INSERTS more, each in its own `BEGIN IMMEDIATE` transaction as the token
endpoint writes it, WAL mode, `synchronous=NORMAL`, SQLite's default cache.

    python3 bench/single_use_records.py [--rows N] [--inserts N] [--rounds N]

Two layouts in interleaved rounds: `before`, a rowid table with its
(key, jti) primary key and an expiry index (three B-trees, one written at a
random place), and `now`, the table as migration 16 keys it, (expiry, key,
jti) WITHOUT ROWID (one B-tree, written at its right edge). Prints CPU and
wall microseconds per insert transaction (this process's own, Python's
overhead in both) and the database's size."""
import argparse
import os
import secrets
import sqlite3
import tempfile
import time

LAYOUTS = {
    "before": (["CREATE TABLE dpop_proofs (jkt TEXT NOT NULL, jti TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (jkt, jti)) STRICT",
                "CREATE INDEX dpop_proofs_by_expiry ON dpop_proofs(expires_at)"],
               "INSERT INTO dpop_proofs(jkt, jti, expires_at) VALUES(?, ?, ?) "
               "ON CONFLICT(jkt, jti) DO UPDATE SET expires_at = excluded.expires_at WHERE dpop_proofs.expires_at < ?",
               lambda jkt, jti, expires: (jkt, jti, expires, 0)),
    "now": (["CREATE TABLE dpop_proofs (expires_at INTEGER NOT NULL, jkt TEXT NOT NULL, jti TEXT NOT NULL, "
             "PRIMARY KEY (expires_at, jkt, jti)) STRICT, WITHOUT ROWID"],
            "INSERT INTO dpop_proofs(expires_at, jkt, jti) VALUES(?, ?, ?) ON CONFLICT DO NOTHING",
            lambda jkt, jti, expires: (expires, jkt, jti)),
}
JKT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"  # a thumbprint's length
PER_SECOND = 5000


def run(directory: str, layout: str, rows: int, inserts: int) -> tuple[float, float, int]:
    ddl, insert, arguments = LAYOUTS[layout]
    path = os.path.join(directory, f"{layout}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for statement in ddl:
        db.execute(statement)
    start = 1_000_000_000
    db.execute("BEGIN")
    for i in range(rows):
        db.execute(insert, arguments(JKT, secrets.token_urlsafe(16), start + i * 1000 // PER_SECOND))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=NORMAL")
    jtis = [secrets.token_urlsafe(16) for _ in range(inserts)]
    cpu, wall = time.process_time(), time.perf_counter()
    for i, jti in enumerate(jtis):
        db.execute("BEGIN IMMEDIATE")
        db.execute(insert, arguments(JKT, jti, start + (rows + i) * 1000 // PER_SECOND))
        db.execute("COMMIT")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    db.close()
    return cpu / inserts * 1e6, wall / inserts * 1e6, os.path.getsize(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=900_000)
    ap.add_argument("--inserts", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"SQLite {sqlite3.sqlite_version}: {args.rows:,} records, then {args.inserts:,} insert transactions; per insert")
    with tempfile.TemporaryDirectory() as directory:
        for round_ in range(args.rounds):
            for layout in LAYOUTS:
                cpu, wall, size = run(directory, layout, args.rows, args.inserts)
                print(f"  round {round_ + 1} {layout:6s} {cpu:6.1f} µs CPU {wall:6.1f} µs wall   database {size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()

"""CPU time per request, by process, for bench/run's ratio scenarios: the
worker (its threads, the checkpointer included), nginx and wrk, from /proc
and getrusage around each wrk run, on one SQLite stack, or on both stores
in interleaved rounds (`--stores sqlite,postgres`: PostgreSQL one node, its
processes split into the node's backends and the rest: autovacuum, WAL
writer, checkpointer). Where the instruction counts of bench/callgrind.py
leave out the kernel and the effects of load (WAL writes, checkpoints,
caches evicted), this shows them.

    LATCHKEY_BIN=.build/release/latchkey python3 bench/worker_cpu.py [--rounds N] [--duration S] [--stores sqlite,postgres]
"""
import argparse
import os
import re
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import run_scenario, setup_store  # noqa: E402


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                    found.append(int(entry))
            except (FileNotFoundError, IndexError):
                pass
    return found


def postgres_processes() -> tuple[list[int], list[int]]:
    """This machine's PostgreSQL processes: client backends, and every other one (background workers)."""
    backends, others = [], []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() != "postgres":
                    continue
                title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (FileNotFoundError, ProcessLookupError):
                continue
            (backends if re.search(r"\[local\]|\d+\.\d+\.\d+\.\d+\(", title) else others).append(int(entry))
    return backends, others


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=max(3, (os.cpu_count() or 1) + 1))
    ap.add_argument("--stores", default="sqlite", help="comma-separated: sqlite, postgres (interleaved rounds)")
    args = ap.parse_args()
    args.pg_nodes = 1
    with tempfile.TemporaryDirectory(prefix="latchkey-cpu-") as tmp:
        runs = [setup_store(Path(tmp), store, args) for store in args.stores.split(",")]
        try:
            print("| store | scenario | requests/s | worker µs | nginx µs | wrk µs | pg backends µs | pg others µs | all µs |")
            print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for _ in range(args.rounds):
                for run in runs:
                    stack = run["stack"]
                    workers = [p.pid for p in stack.workers_procs]
                    nginx = [stack.nginx.pid] + children(stack.nginx.pid)
                    for scenario in run["scenarios"]:
                        backends, others = postgres_processes()
                        before = [sum(cpu_seconds(p) for p in group) for group in (workers, nginx, backends, others)]
                        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                        result = run_scenario(scenario, args.duration, args.connections)
                        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                        # Backends that ended during the run are not counted: the node keeps its connections open.
                        after = [sum(cpu_seconds(p) for p in group) for group in (workers, nginx, backends, others)]
                        count = result["rps"] * args.duration
                        wrk_cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
                        per = [1e6 * (b - a) / count for a, b in zip(before, after)] + [1e6 * wrk_cpu / count]
                        w, n, pb, po, k = per
                        print(f"| {run['store']} | {scenario[0]} | {result['rps']:.0f} | {w:.1f} | {n:.1f} | {k:.1f} | {pb:.1f} | {po:.1f} | "
                              f"{sum(per):.1f} |", flush=True)
        finally:
            for run in runs:
                run["stack"].stop()
            import conftest
            if conftest._cluster is not None:
                conftest._cluster.stop()

if __name__ == "__main__":
    main()

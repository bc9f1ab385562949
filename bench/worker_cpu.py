"""CPU time per request, by process, for bench/run's ratio scenarios: the
worker (its threads, the checkpointer included), nginx and wrk, from /proc
and getrusage around each wrk run, on one SQLite stack. Where the
instruction counts of bench/callgrind.py leave out the kernel and the
effects of load (WAL writes, checkpoints, caches evicted), this shows them.

    LATCHKEY_BIN=.build/release/latchkey python3 bench/worker_cpu.py [--rounds N] [--duration S]
"""
import argparse
import os
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=max(3, (os.cpu_count() or 1) + 1))
    args = ap.parse_args()
    args.pg_nodes = 1
    with tempfile.TemporaryDirectory(prefix="latchkey-cpu-") as tmp:
        run = setup_store(Path(tmp), "sqlite", args)
        stack = run["stack"]
        worker = stack.workers_procs[0].pid
        nginx = [stack.nginx.pid] + children(stack.nginx.pid)
        try:
            print("| scenario | requests/s | worker µs | nginx µs | wrk µs |")
            print("| --- | ---: | ---: | ---: | ---: |")
            for _ in range(args.rounds):
                for scenario in run["scenarios"]:
                    w0, n0 = cpu_seconds(worker), sum(cpu_seconds(p) for p in nginx)
                    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    result = run_scenario(scenario, args.duration, args.connections)
                    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    w1, n1 = cpu_seconds(worker), sum(cpu_seconds(p) for p in nginx)
                    count = result["rps"] * args.duration
                    wrk_cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
                    print(f"| {scenario[0]} | {result['rps']:.0f} | {1e6 * (w1 - w0) / count:.1f} | {1e6 * (n1 - n0) / count:.1f} | "
                          f"{1e6 * wrk_cpu / count:.1f} |", flush=True)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()

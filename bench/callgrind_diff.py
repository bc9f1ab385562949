"""Where a request's instructions go, by function: the inclusive cost of
each function in a large run of `bench/callgrind.py --keep DIR` minus the
same in the small run, divided by the requests between them (start-up,
key loading and shutdown cancel out, which a single profile would mix in).

    python3 bench/callgrind.py --scenarios token --requests 2000 --keep /tmp/cg
    python3 bench/callgrind_diff.py /tmp/cg/token-sqlite-200-*.out /tmp/cg/token-sqlite-2200-*.out 2000 [REGEX]

Prints functions costing at least 1k instructions a request, largest first,
optionally only those whose name matches REGEX."""
import re
import subprocess
import sys


def inclusive(path: str) -> dict[str, int]:
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path], capture_output=True, text=True,
                         check=True).stdout
    costs: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)$", line)
        if m and not m.group(2).startswith("=>"):
            costs[m.group(2)] = costs.get(m.group(2), 0) + int(m.group(1).replace(",", ""))
    return costs


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    small, large, requests = inclusive(sys.argv[1]), inclusive(sys.argv[2]), int(sys.argv[3])
    pattern = re.compile(sys.argv[4]) if len(sys.argv) > 4 else None
    rows = sorted(((cost - small.get(name, 0)) / requests, name) for name, cost in large.items())
    for per, name in reversed(rows):
        if per >= 1000 and (pattern is None or pattern.search(name)):
            print(f"{per / 1000:8.1f}k  {name[:160]}")


if __name__ == "__main__":
    main()

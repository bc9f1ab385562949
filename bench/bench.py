"""wrk scenarios against a real stack (nginx + workers), rate limits off."""
import argparse
import base64
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from conftest import Stack, run_cli  # noqa: E402


def lua(path: Path, method: str, body: str = "", headers: dict | None = None) -> Path:
    lines = [f'wrk.method = "{method}"']
    if body:
        lines.append(f"wrk.body = {json.dumps(body)}")
    for k, v in (headers or {}).items():
        lines.append(f'wrk.headers["{k}"] = {json.dumps(v)}')
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_latency(text: str, label: str) -> float:
    m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(url: str, script: Path | None, duration: int, connections: int) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "p50": parse_latency(out, "50%"), "p99": parse_latency(out, "99%"),
            "errors": int(non2xx.group(1)) if non2xx else 0}


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="latchkey-bench-") as tmp:
        tmp = Path(tmp)
        stack = Stack(tmp / "state", rate_limits="off", workers=args.workers).start()
        try:
            basic = "Basic " + base64.b64encode(f"{stack.client_id}:{stack.client_secret}".encode()).decode()
            token = stack.token(scope="clients:read")
            form = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": basic}
            bench_org = json.loads(run_cli(stack.db, "org", "create", "Bench", "--client-limit", "100000").stdout)
            writer = stack.token(bench_org["client_id"], bench_org["client_secret"])
            read_id = requests.post(stack.url("/api/v1/clients"), headers={"Authorization": f"Bearer {writer}"},
                                    json={"client_name": "bench read"}).json()["client_id"]
            scenarios = [
                ("GET /healthz", stack.url("/healthz"), None),
                ("POST /oauth2/token (client_credentials)", stack.url("/oauth2/token"),
                 lua(tmp / "token.lua", "POST", "grant_type=client_credentials&scope=clients:read", form)),
                ("POST /oauth2/introspect (JWT)", stack.url("/oauth2/introspect"),
                 lua(tmp / "introspect.lua", "POST", f"token={token}", form)),
                ("GET /api/v1/clients/{id} (read)", stack.url(f"/api/v1/clients/{read_id}"),
                 lua(tmp / "read.lua", "GET", "", {"Authorization": f"Bearer {writer}"})),
                ("POST /api/v1/clients (create)", stack.url("/api/v1/clients"),
                 lua(tmp / "create.lua", "POST", '{"client_name":"bench client","scope":"openid"}',
                     {"Authorization": f"Bearer {writer}", "Content-Type": "application/json"})),
            ]
            results = []
            for name, url, script in scenarios:
                r = wrk(url, script, args.duration, args.connections)
                results.append((name, r))
            rss = peak_rss_mib(stack.worker.pid)
        finally:
            stack.stop()
    base = results[0][1]["rps"]
    print(f"\nwrk -t2 -c{args.connections} -d{args.duration}s, through nginx, {args.workers} worker threads, rate limits off\n")
    print(f"| scenario | requests/s | p50 ms | p99 ms | x /healthz | non-2xx |")
    print(f"| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results:
        print(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['rps'] / base:.2f} | {r['errors']} |")
    print(f"\nworker peak RSS: {rss:.1f} MiB")


if __name__ == "__main__":
    main()

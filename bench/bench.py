"""wrk scenarios against a real stack (nginx + workers), rate limits off."""
import argparse
import base64
import json
import os
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


FLOW_LUA = r"""
-- A complete authorization code flow per three requests, through a work
-- queue shared by this thread's connections: authorize (prompt=consent,
-- signed in) -> accept -> token. Counts tokens obtained.
local accepts, codes = {}, {}
flows = 0
function request()
  if #codes > 0 then
    return wrk.format("POST", "/oauth2/token", {["Content-Type"] = "application/x-www-form-urlencoded"},
      "grant_type=authorization_code&client_id=" .. CLIENT .. "&redirect_uri=" .. REDIRECT_ENC .. "&code_verifier=" .. VERIFIER .. "&code=" .. table.remove(codes))
  elseif #accepts > 0 then
    return wrk.format("POST", "/api/v1/authorization-requests/" .. table.remove(accepts) .. "/accept",
      {["Content-Type"] = "application/json", ["Cookie"] = COOKIE, ["X-CSRF-Token"] = CSRF}, '{"scope":["openid"],"remember":true}')
  end
  return wrk.format("GET", AUTHORIZE, {["Cookie"] = COOKIE})
end
function response(status, headers, body)
  if status == 303 then
    local id = (headers["Location"] or ""):match("request=([%w_%-]+)")
    if id then table.insert(accepts, id) end
  elseif status == 200 then
    local code = body:match("code=(lkc_[%w_%-]+)")
    if code then table.insert(codes, code) elseif body:find("access_token", 1, true) then flows = flows + 1 end
  end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("flows") end
  io.write(string.format("FLOWS %d\n", total))
end
threads = {}
function setup(thread) table.insert(threads, thread) end
"""

REFRESH_LUA = r"""
-- Refresh-token rotation: each response's new refresh token goes back in
-- the queue; the seed tokens are independent chains.
local queue = {}
rotations = 0
-- Each thread takes its own share of the chains (a token in two queues would be reuse).
function init(args)
  for i = 1, #args do
    if (i - 1) % nthreads == id - 1 then table.insert(queue, args[i]) end
  end
end
function request()
  local token = table.remove(queue, 1) or "none"
  return wrk.format("POST", "/oauth2/token", {["Content-Type"] = "application/x-www-form-urlencoded"},
    "grant_type=refresh_token&client_id=" .. CLIENT .. "&refresh_token=" .. token)
end
function response(status, headers, body)
  local token = body:match('"refresh_token":"(lkr_[%w_%-]+)"')
  if token then table.insert(queue, token); rotations = rotations + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("rotations") end
  io.write(string.format("ROTATIONS %d\n", total))
end
threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
  thread:set("nthreads", NTHREADS)
end
"""


def parse_latency(text: str, label: str) -> float:
    m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(url: str, script: Path | None, duration: int, connections: int, args: list[str] | None = None, threads: int = 2) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    out = subprocess.run(cmd + [url] + (["--"] + args if args else []), capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result = {"rps": rps, "p50": parse_latency(out, "50%"), "p99": parse_latency(out, "99%"),
              "errors": int(non2xx.group(1)) if non2xx else 0}
    for key in ("FLOWS", "ROTATIONS"):
        m = re.search(rf"^{key} (\d+)", out, re.M)
        if m:
            result[key.lower()] = int(m.group(1)) / duration
    return result


def user_flow_setup(stack, tmp: Path, chains: int):
    """A public app, a signed-in demo user, and `chains` refresh tokens."""
    import hashlib
    import secrets
    from urllib.parse import parse_qs, quote, urlencode, urlparse
    redirect = f"http://127.0.0.1:{stack.port}/demo/callback"
    admin = {"Authorization": f"Bearer {stack.token()}"}
    client = requests.post(stack.url("/api/v1/clients"), headers=admin, json={
        "client_name": "bench app", "redirect_uris": [redirect], "grant_types": ["authorization_code", "refresh_token"],
        "scope": "openid offline_access", "token_endpoint_auth_method": "none", "refresh_token_ttl": 86400}).json()["client_id"]
    http = requests.Session()
    assert http.post(stack.url("/api/v1/session"), json={"username": "demo", "password": stack.demo_password}).status_code == 204
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    def authorize(scope, prompt):
        return "/oauth2/authorize?" + urlencode({"response_type": "code", "client_id": client, "redirect_uri": redirect, "scope": scope,
                                                 "state": "bench", "code_challenge": challenge, "code_challenge_method": "S256",
                                                 "prompt": prompt})
    cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
    csrf = http.cookies.get("lk_csrf")
    refresh_tokens = []
    for _ in range(chains):
        r = http.get(stack.url(authorize("openid offline_access", "consent")), allow_redirects=False)
        request_id = parse_qs(urlparse(r.headers["Location"]).query)["request"][0]
        accepted = http.post(stack.url(f"/api/v1/authorization-requests/{request_id}/accept"), headers={"X-CSRF-Token": csrf},
                             json={"scope": ["openid", "offline_access"], "remember": True}).json()
        code = parse_qs(urlparse(accepted["redirect_to"]).query)["code"][0]
        tokens = requests.post(stack.url("/oauth2/token"), data={"grant_type": "authorization_code", "code": code, "client_id": client,
                                                                 "redirect_uri": redirect, "code_verifier": verifier}).json()
        refresh_tokens.append(tokens["refresh_token"])
    consts = (f'CLIENT = "{client}"\nREDIRECT_ENC = "{quote(redirect, safe="")}"\nVERIFIER = "{verifier}"\n'
              f'COOKIE = "{cookie}"\nCSRF = "{csrf}"\nAUTHORIZE = "{authorize("openid", "consent")}"\n')
    (tmp / "flow.lua").write_text(consts + FLOW_LUA)
    (tmp / "refresh.lua").write_text(consts + "NTHREADS = 2\n" + REFRESH_LUA)
    return tmp / "flow.lua", tmp / "refresh.lua", refresh_tokens


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the ratio scenarios")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=max(3, (os.cpu_count() or 1) + 1), help="default: as `latchkey serve`")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="latchkey-bench-") as tmp:
        tmp = Path(tmp)
        stack = Stack(tmp / "state", rate_limits="off", workers=args.workers, log_level=None).start()
        try:
            basic = "Basic " + base64.b64encode(f"{stack.client_id}:{stack.client_secret}".encode()).decode()
            token = stack.token(scope="clients:read")
            form = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": basic}
            bench_org = json.loads(run_cli(stack.db, "org", "create", "Bench", "--client-limit", "100000").stdout)
            writer = stack.token(bench_org["client_id"], bench_org["client_secret"])
            read_id = requests.post(stack.url("/api/v1/clients"), headers={"Authorization": f"Bearer {writer}"},
                                    json={"client_name": "bench read"}).json()["client_id"]
            ratio_scenarios = [
                ("GET /healthz", stack.url("/healthz"), None),
                ("POST /oauth2/token (client_credentials)", stack.url("/oauth2/token"),
                 lua(tmp / "token.lua", "POST", "grant_type=client_credentials&scope=clients:read", form)),
                ("POST /oauth2/introspect (JWT)", stack.url("/oauth2/introspect"),
                 lua(tmp / "introspect.lua", "POST", f"token={token}", form)),
                ("GET /api/v1/clients/{id} (read)", stack.url(f"/api/v1/clients/{read_id}"),
                 lua(tmp / "read.lua", "GET", "", {"Authorization": f"Bearer {writer}"})),
            ]
            # The machine's speed drifts by more than the differences measured:
            # the ratio scenarios run interleaved, round after round, and each
            # ratio is taken against the /healthz run of its own round.
            rounds = []
            for _ in range(args.rounds):
                rounds.append([wrk(url, script, args.duration, args.connections) for _, url, script in ratio_scenarios])
            create = wrk(stack.url("/api/v1/clients"), lua(tmp / "create.lua", "POST", '{"client_name":"bench client","scope":"openid"}',
                                                           {"Authorization": f"Bearer {writer}", "Content-Type": "application/json"}),
                         args.duration, args.connections)
            flow_script, refresh_script, chains = user_flow_setup(stack, tmp, chains=args.connections * 2)
            flows = wrk(stack.url("/"), flow_script, args.duration, args.connections)
            refreshes = wrk(stack.url("/"), refresh_script, args.duration, args.connections, args=chains, threads=2)
            rss = peak_rss_mib(stack.worker.pid)
        finally:
            stack.stop()
    print(f"\nwrk -t2 -c{args.connections} -d{args.duration}s, through nginx, {args.workers} worker threads, rate limits off; "
          f"medians of {args.rounds} interleaved rounds\n")
    print("| scenario | requests/s | p50 ms | p99 ms | x /healthz | non-2xx |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for i, (name, _, _) in enumerate(ratio_scenarios):
        runs = [r[i] for r in rounds]
        ratio = median([r[i]["rps"] / r[0]["rps"] for r in rounds])
        print(f"| {name} | {median([x['rps'] for x in runs]):.0f} | {median([x['p50'] for x in runs]):.2f} | "
              f"{median([x['p99'] for x in runs]):.2f} | {ratio:.2f} | {sum(x['errors'] for x in runs)} |")
    print(f"| POST /api/v1/clients (create) | {create['rps']:.0f} | {create['p50']:.2f} | {create['p99']:.2f} | "
          f"{create['rps'] / median([r[0]['rps'] for r in rounds]):.2f} | {create['errors']} |")
    print(f"\ncomplete code flows (authorize + accept + token): {flows.get('flows', 0):.0f}/s "
          f"({flows['rps']:.0f} requests/s, p99 {flows['p99']:.2f} ms, non-2xx/3xx {flows['errors']})")
    print(f"refresh-token rotations: {refreshes.get('rotations', 0):.0f}/s (p99 {refreshes['p99']:.2f} ms, non-2xx {refreshes['errors']})")
    print(f"\nworker peak RSS: {rss:.1f} MiB")
    signs = es256_signatures_per_second()
    if signs:
        # With both cores saturated, a /healthz request costs cores/rate of CPU in all (wrk, nginx, worker);
        # a token costs at least that plus one signature.
        cores = os.cpu_count() or 1
        healthz = median([r[0]["rps"] for r in rounds])
        per_request, per_signature = cores / healthz, 1 / signs
        print(f"ES256 signatures/s on one core (openssl speed): {signs:.0f}; the most a server that signs every token "
              f"could reach here is about {per_request / (per_request + per_signature):.2f}x /healthz")


def es256_signatures_per_second() -> float | None:
    """`openssl speed ecdsap256` on one core: what one token signature costs on this machine."""
    try:
        out = subprocess.run(["openssl", "speed", "-seconds", "2", "ecdsap256"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^\s*256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)", out, re.M)
    return float(m.group(1)) if m else None


if __name__ == "__main__":
    main()

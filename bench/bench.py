"""wrk scenarios against a real stack (nginx + workers), rate limits off."""
import argparse
import base64
import json
import os
import re
import secrets
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
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


# Each wrk thread learns its number and the thread count (to take its own share of the work).
THREADS_LUA = r"""
threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
  thread:set("nthreads", NTHREADS)
end
"""

POOL_LUA = THREADS_LUA + r"""
-- One single-use credential per request (a DPoP proof or a client
-- assertion, each with its own jti), from a file written just before the
-- run; each thread takes its own share of the lines. The requests are
-- formatted here, before the run, as wrk builds the plain scenarios' one
-- request before it: what is measured is the server's extra work, not Lua
-- formatting each request. Past the end of its share a thread repeats its
-- last request, which the server refuses as a replay: the non-2xx count
-- shows it, so a pool too small cannot pass for speed.
local function format(item)
  if HEADER ~= "" then
    return wrk.format("POST", PATH, {["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = AUTH, [HEADER] = item}, BODY)
  end
  return wrk.format("POST", PATH, {["Content-Type"] = "application/x-www-form-urlencoded"}, BODY .. item)
end
function init(args)
  prepared, n = {}, 0
  local i = 0
  for line in io.lines(POOL) do
    if i % nthreads == id - 1 then table.insert(prepared, format(line)) end
    i = i + 1
  end
end
function request()
  n = n + 1
  return prepared[n] or prepared[#prepared]
end
"""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class CredentialPool:
    """Single-use ES256 JWTs (DPoP proofs or private_key_jwt assertions) for
    one wrk run, written to `path` by `prepare()` just before the run (their
    `iat`/`exp` must be fresh, their `jti` new), signed with `cryptography`."""

    def __init__(self, path: Path, count: int, header: dict, claims):
        from cryptography.hazmat.primitives.asymmetric import ec
        self.path, self.count, self.claims = path, count, claims
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256", "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))}
        self.header = b64url(json.dumps(header(self.jwk), separators=(",", ":")).encode())

    def sign(self, claims: dict) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
        signing_input = f"{self.header}.{b64url(json.dumps(claims, separators=(',', ':')).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def prepare(self):
        now = int(time.time())
        self.path.write_text("\n".join(self.sign(self.claims(secrets.token_urlsafe(12), now)) for _ in range(self.count)) + "\n")


def pool_script(path: Path, pool: Path, request_path: str, body: str, header: str = "", auth: str = "") -> Path:
    consts = (f"POOL = {json.dumps(str(pool))}\nNTHREADS = 2\nPATH = {json.dumps(request_path)}\nBODY = {json.dumps(body)}\n"
              f"HEADER = {json.dumps(header)}\nAUTH = {json.dumps(auth)}\n")
    path.write_text(consts + POOL_LUA)
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

REFRESH_LUA = THREADS_LUA + r"""
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
"""


FLOOD_LUA = r"""
-- A wrong-password flood against one client whose secret is a caller-chosen
-- password (a slow hash to check): every request presents a new password
-- (thread id + counter), so the server's memo of failed secrets never
-- answers it; counts the answers by status.
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local function ch(k) return alphabet:sub(k + 1, k + 1) end
    out[#out + 1] = ch(math.floor(n / 262144) % 64) .. ch(math.floor(n / 4096) % 64)
      .. (b and ch(math.floor(n / 64) % 64) or "=") .. (c and ch(n % 64) or "=")
  end
  return table.concat(out)
end
local counter = 0
s200, s401, s429, s503, s500, sother = 0, 0, 0, 0, 0, 0
function request()
  counter = counter + 1
  local password = string.format("wrong-%s-%d-%d", SALT, id, counter)
  return wrk.format("POST", "/oauth2/token", {["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. b64(FLOOD_CLIENT .. ":" .. password)}, "grant_type=client_credentials")
end
function response(status, headers, body)
  if status == 200 then s200 = s200 + 1
  elseif status == 401 then s401 = s401 + 1
  elseif status == 429 then s429 = s429 + 1
  elseif status == 503 then s503 = s503 + 1
  elseif status == 500 then s500 = s500 + 1
  else sother = sother + 1 end
end
function done(summary, latency, requests)
  for _, key in ipairs({"200", "401", "429", "503", "500", "other"}) do
    local total = 0
    for _, t in ipairs(threads) do total = total + t:get("s" .. key) end
    io.write(string.format("COUNT %s %d\n", key, total))
  end
end
threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
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
    counts = {k: int(v) for k, v in re.findall(r"^COUNT (\w+) (\d+)$", out, re.M)}
    if counts:
        result["counts"] = counts
        result["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    return result


def user_flow_setup(stack, tmp: Path, chains: int, alg: str = "ES256"):
    """A public app (its ID tokens signed with `alg`), a signed-in demo user, and `chains` refresh tokens."""
    import hashlib
    import secrets
    from urllib.parse import parse_qs, quote, urlencode, urlparse
    redirect = f"http://127.0.0.1:{stack.port}/demo/callback"
    admin = {"Authorization": f"Bearer {stack.token()}"}
    client = requests.post(stack.url("/api/v1/clients"), headers=admin, json={
        "client_name": "bench app", "redirect_uris": [redirect], "grant_types": ["authorization_code", "refresh_token"],
        "scope": "openid offline_access", "token_endpoint_auth_method": "none", "refresh_token_ttl": 86400,
        "id_token_signed_response_alg": alg}).json()["client_id"]
    http = requests.Session()
    # Pending authorization requests belong to the browser that started them (the HttpOnly
    # lk_browser cookie /oauth2/authorize sets when none is sent, SPEC 7.1). wrk keeps no
    # cookies: one fixed value (43 base64url characters, which the server reuses) makes every
    # authorize, accept and token of the run one browser.
    browser = secrets.token_urlsafe(32)
    http.cookies.set("lk_browser", browser, domain="127.0.0.1", path="/")
    assert http.post(stack.url("/api/v1/session"), json={"username": "demo", "password": stack.demo_password}).status_code == 204
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    def authorize(scope, prompt):
        return "/oauth2/authorize?" + urlencode({"response_type": "code", "client_id": client, "redirect_uri": redirect, "scope": scope,
                                                 "state": "bench", "code_challenge": challenge, "code_challenge_method": "S256",
                                                 "prompt": prompt})
    cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
    csrf = http.cookies.get("lk_csrf")
    assert f"lk_browser={browser}" in cookie and "lk_session=" in cookie, cookie
    refresh_tokens = []
    for _ in range(chains):
        r = http.get(stack.url(authorize("openid offline_access", "consent")), allow_redirects=False)
        # 303 to the consent page, and the browser cookie sent is kept (no new one set).
        assert r.status_code == 303 and "lk_browser=" not in r.headers.get("Set-Cookie", ""), (r.status_code, r.headers)
        request_id = parse_qs(urlparse(r.headers["Location"]).query)["request"][0]
        accepted = http.post(stack.url(f"/api/v1/authorization-requests/{request_id}/accept"), headers={"X-CSRF-Token": csrf},
                             json={"scope": ["openid", "offline_access"], "remember": True}).json()
        code = parse_qs(urlparse(accepted["redirect_to"]).query)["code"][0]
        tokens = requests.post(stack.url("/oauth2/token"), data={"grant_type": "authorization_code", "code": code, "client_id": client,
                                                                 "redirect_uri": redirect, "code_verifier": verifier}).json()
        refresh_tokens.append(tokens["refresh_token"])
    assert "redirect_uri=" in authorize("openid", "consent")  # required at /oauth2/authorize
    consts = (f'CLIENT = "{client}"\nREDIRECT_ENC = "{quote(redirect, safe="")}"\nVERIFIER = "{verifier}"\n'
              f'COOKIE = "{cookie}"\nCSRF = "{csrf}"\nAUTHORIZE = "{authorize("openid", "consent")}"\n')
    (tmp / "flow.lua").write_text(consts + FLOW_LUA)
    (tmp / "refresh.lua").write_text(consts + "NTHREADS = 2\n" + REFRESH_LUA)
    return tmp / "flow.lua", tmp / "refresh.lua", refresh_tokens


def proc_status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib(pid: int) -> float:
    return proc_status_mib(pid, "VmHWM")


def flood_scenario(stack, tmp: Path, token_script: Path, duration: int, connections: int, flood_connections: int) -> dict:
    """SPEC 7.1: a normal client's tokens (server-generated lks_ secret) alone, then while a
    wrong-password flood (a new password per request) hits a client whose secret is a
    caller-chosen password (a slow hash)."""
    assert stack.client_secret.startswith("lks_"), "the normal client must have a server-generated secret"
    manager = {"Authorization": f"Bearer {stack.token(scope='manageExternalClients')}"}
    r = requests.post(stack.url("/external/v1/oauth/client"), headers=manager,
                      json={"password": "flood-target-" + secrets.token_hex(8), "application": "flood target"})
    assert r.status_code == 201, r.text
    target = r.json()["clientId"]
    script = tmp / "flood.lua"
    script.write_text(f'FLOOD_CLIENT = "{target}"\nSALT = "{secrets.token_hex(4)}"\n' + FLOOD_LUA)
    alone = wrk(stack.url("/oauth2/token"), token_script, duration, connections)
    # The flood starts first and ends after the measured run, so it covers all of it.
    flood: dict = {}
    def run_flood():
        flood.update(wrk(stack.url("/oauth2/token"), script, duration + 2, flood_connections, threads=1))
    flooder = threading.Thread(target=run_flood)
    flooder.start()
    time.sleep(1)
    flooded = wrk(stack.url("/oauth2/token"), token_script, duration, connections)
    flooder.join()
    return {"alone": alone, "flooded": flooded, "flood": flood, "flood_duration": duration + 2}


def png_rgba(width: int, height: int) -> bytes:
    """A valid 8-bit RGBA PNG, noisy but compressible: a few rows of noise repeated (within
    zlib's window), each row with a short stretch of its own."""
    import random
    rnd = random.Random(1)
    tile = [bytes(rnd.getrandbits(8) for _ in range(width * 4)) for _ in range(3)]
    rows = []
    for y in range(height):
        row = bytearray(tile[y % 3])
        start = (y * 97) % (width * 4 - 128)
        row[start:start + 128] = rnd.randbytes(128)
        rows.append(b"\x00" + bytes(row))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


def logo_rss_scenario(stack, writer: str, threads: int, uploads: int) -> dict:
    """The worker's RSS before, at peak during and after `threads` x `uploads` parallel logo
    uploads of an image at the server's limit (2048x2048, SPEC 7.1), against SPEC 8's 64 MiB."""
    pid = stack.worker.pid
    image = png_rgba(2048, 2048)
    assert len(image) < 1024 * 1024, len(image)
    auth = {"Authorization": f"Bearer {writer}"}
    ids = [requests.post(stack.url("/api/v1/clients"), headers=auth, json={"client_name": f"bench logo {i}"}).json()["client_id"]
           for i in range(threads)]
    time.sleep(0.5)
    before = proc_status_mib(pid, "VmRSS")
    lifetime_hwm = proc_status_mib(pid, "VmHWM")
    # Resets VmHWM to the current RSS (Linux >= 4.0), so that it is the peak of the uploads alone.
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        hwm_reset = True
    except OSError:
        hwm_reset = False
    sampled, stop = [before], threading.Event()
    def sample():
        while not stop.is_set():
            sampled.append(proc_status_mib(pid, "VmRSS"))
            time.sleep(0.002)
    sampler = threading.Thread(target=sample)
    sampler.start()
    def upload(cid):
        session = requests.Session()
        return [session.put(stack.url(f"/api/v1/clients/{cid}/logo"), headers={**auth, "Content-Type": "image/png"},
                            data=image).status_code for _ in range(uploads)]
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        statuses = [s for batch in pool.map(upload, ids) for s in batch]
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    peak = proc_status_mib(pid, "VmHWM")
    after = proc_status_mib(pid, "VmRSS")
    time.sleep(1)
    settled = proc_status_mib(pid, "VmRSS")
    return {"image_kib": len(image) / 1024, "statuses": statuses, "elapsed": elapsed, "before": before,
            "lifetime_hwm": lifetime_hwm, "peak": peak if hwm_reset else float("nan"), "sampled_peak": max(sampled),
            "after": after, "settled": settled, "threads": threads, "uploads": uploads}


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def setup_store(tmp: Path, store: str, args, binary: str | None = None, label: str | None = None, presign: str = "off") -> dict:
    """A stack on one store (SQLite: one node; PostgreSQL: `--pg-nodes` nodes on a local cluster) and its scenarios;
    with `binary`, that build of latchkey instead of this one (an A/B baseline); `presign`: LATCHKEY_ES256_PRESIGN."""
    import conftest
    current = conftest.BIN
    if binary:
        conftest.BIN = binary
    label = label or store
    if presign == "on":
        label += "-presign"
    try:
        stack = Stack(tmp / label, rate_limits="off", workers=args.workers, log_level=None, store=store,
                      nodes=args.pg_nodes if store == "postgres" else 1, env={"LATCHKEY_ES256_PRESIGN": presign}).start()
        return scenarios_for(stack, tmp, store, label, args.duration)
    finally:
        conftest.BIN = current


def scenarios_for(stack, tmp: Path, store: str, label: str, duration: int) -> dict:
    basic = "Basic " + base64.b64encode(f"{stack.client_id}:{stack.client_secret}".encode()).decode()
    token = stack.token(scope="clients:read")
    form = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": basic}
    bench_org = json.loads(run_cli(stack, "org", "create", "Bench", "--client-limit", "100000").stdout)
    writer = stack.token(bench_org["client_id"], bench_org["client_secret"])
    read_id = requests.post(stack.url("/api/v1/clients"), headers={"Authorization": f"Bearer {writer}"},
                            json={"client_name": "bench read"}).json()["client_id"]
    d = tmp / f"{label}-scripts"
    d.mkdir()
    # SPEC 10.2: the same client_credentials token bound to a DPoP key (a proof per request), and one for a
    # private_key_jwt client (an assertion per request), each credential single use, made before each run.
    token_url = stack.url("/oauth2/token")
    pool_size = duration * 8000
    dpop = CredentialPool(d / "dpop.pool", pool_size, lambda jwk: {"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk},
                          lambda jti, now: {"jti": jti, "htm": "POST", "htu": token_url, "iat": now})
    assertion = CredentialPool(d / "assertion.pool", pool_size, lambda jwk: {"alg": "ES256", "kid": "bench-1"}, None)
    assertion.jwk["kid"] = "bench-1"
    created = requests.post(stack.url("/api/v1/clients"), headers={"Authorization": f"Bearer {writer}"},
                            json={"client_name": "bench private_key_jwt", "grant_types": ["client_credentials"], "scope": "clients:read",
                                  "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [assertion.jwk]}})
    assert created.status_code == 201, created.text
    jwt_client = created.json()["client_id"]
    assertion.claims = lambda jti, now: {"iss": jwt_client, "sub": jwt_client, "aud": token_url, "jti": jti, "iat": now, "exp": now + 240}
    plain_body = "grant_type=client_credentials&scope=clients:read"
    scenarios = [
        ("GET /healthz", stack.url("/healthz"), None),
        ("POST /oauth2/token (client_credentials)", token_url, lua(d / "token.lua", "POST", plain_body, form)),
        ("POST /oauth2/introspect (JWT)", stack.url("/oauth2/introspect"), lua(d / "introspect.lua", "POST", f"token={token}", form)),
        ("GET /api/v1/clients/{id} (read)", stack.url(f"/api/v1/clients/{read_id}"),
         lua(d / "read.lua", "GET", "", {"Authorization": f"Bearer {writer}"})),
        ("POST /oauth2/token (client_credentials, DPoP-bound)", token_url,
         pool_script(d / "dpop.lua", dpop.path, "/oauth2/token", plain_body, header="DPoP", auth=basic), dpop.prepare),
        ("POST /oauth2/token (client_credentials, private_key_jwt)", token_url,
         pool_script(d / "assertion.lua", assertion.path, "/oauth2/token",
                     f"{plain_body}&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion="),
         assertion.prepare),
    ]
    return {"store": store, "label": label, "stack": stack, "writer": writer, "scenarios": scenarios, "dir": d, "rounds": []}


def run_scenario(scenario, duration: int, connections: int) -> dict:
    """One wrk run of a ratio scenario, after writing its fresh credentials when it has any."""
    _, url, script, *prepare = scenario
    for step in prepare:
        step()
    return wrk(url, script, duration, connections)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the ratio scenarios")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=max(3, (os.cpu_count() or 1) + 1), help="default: as `latchkey serve`")
    ap.add_argument("--flood-connections", type=int, default=12, help="connections of the wrong-password flood")
    ap.add_argument("--logo-threads", type=int, default=3, help="parallel logo uploaders")
    ap.add_argument("--logo-uploads", type=int, default=5, help="uploads per logo uploader")
    ap.add_argument("--stores", default="sqlite,postgres", help="stores to measure side by side (SPEC 9)")
    ap.add_argument("--pg-nodes", type=int, default=1, help="nodes on PostgreSQL (they share the machine's two cores with it)")
    ap.add_argument("--ratios-only", action="store_true", help="only the interleaved ratio scenarios (for quick comparisons)")
    ap.add_argument("--baseline", help="another latchkey binary, run in the same interleaved rounds (A/B; with --ratios-only)")
    ap.add_argument("--baseline-store", default="sqlite", choices=["sqlite", "postgres"], help="the store the baseline runs on")
    ap.add_argument("--presign", default="off", choices=["on", "off"], help="LATCHKEY_ES256_PRESIGN for this build's stacks")
    ap.add_argument("--baseline-presign", default="off", choices=["on", "off"], help="LATCHKEY_ES256_PRESIGN for the baseline's")
    args = ap.parse_args()
    if args.baseline and not args.ratios_only:
        ap.error("--baseline goes with --ratios-only")
    stores = [x for x in args.stores.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="latchkey-bench-") as tmp:
        tmp = Path(tmp)
        runs = [setup_store(tmp, store, args, presign=args.presign) for store in stores]
        if args.baseline:
            runs.append(setup_store(tmp, args.baseline_store, args, binary=args.baseline, label=f"{args.baseline_store}-baseline",
                                    presign=args.baseline_presign))
        try:
            # The machine's speed drifts by more than the differences measured:
            # the ratio scenarios run interleaved, scenario by scenario across
            # the stores (or builds), and each ratio is taken against the
            # /healthz run of its own round. Which one goes first alternates by
            # scenario and by round: in a fixed order the second was 10-20%
            # faster on the plain scenarios whichever build it was (session 33,
            # the same two builds in both orders).
            for r in range(args.rounds):
                results = {id(run): [] for run in runs}
                for i in range(len(runs[0]["scenarios"])):
                    for run in (runs if (r + i) % 2 == 0 else list(reversed(runs))):
                        results[id(run)].append(run_scenario(run["scenarios"][i], args.duration, args.connections))
                for run in runs:
                    run["rounds"].append(results[id(run)])
            for run in runs if not args.ratios_only else []:
                stack, d = run["stack"], run["dir"]
                run["create"] = wrk(stack.url("/api/v1/clients"), lua(d / "create.lua", "POST", '{"client_name":"bench client","scope":"openid"}',
                                                                       {"Authorization": f"Bearer {run['writer']}", "Content-Type": "application/json"}),
                                    args.duration, args.connections)
                flow_script, refresh_script, chains = user_flow_setup(stack, d, chains=args.connections * 2)
                run["flows"] = wrk(stack.url("/"), flow_script, args.duration, args.connections)
                # SPEC 10.1: an RS256 client's flows (an RSA signature per ID token) beside the ES256 ones.
                (d / "rs256").mkdir()
                rs256_script, _, _ = user_flow_setup(stack, d / "rs256", chains=1, alg="RS256")
                run["flows_rs256"] = wrk(stack.url("/"), rs256_script, args.duration, args.connections)
                run["refreshes"] = wrk(stack.url("/"), refresh_script, args.duration, args.connections, args=chains, threads=2)
                run["rss"] = max(peak_rss_mib(p.pid) for p in stack.workers_procs)
            first = runs[0]
            if args.ratios_only:
                return report_ratios(runs, args)
            first["flood"] = flood_scenario(first["stack"], first["dir"], first["scenarios"][1][2], args.duration, args.connections,
                                            args.flood_connections)
            first["logo"] = logo_rss_scenario(first["stack"], first["writer"], args.logo_threads, args.logo_uploads)
            pgbench = pgbench_simple_update(tmp) if "postgres" in stores else None
        finally:
            for run in runs:
                run["stack"].stop()
            import conftest
            if conftest._cluster is not None:
                conftest._cluster.stop()
    report_ratios(runs, args)
    for run in runs:
        create = run["create"]
        print(f"\nstore: {run['store']}: POST /api/v1/clients (create) {create['rps']:.0f}/s (p50 {create['p50']:.2f} ms, "
              f"p99 {create['p99']:.2f} ms, {create['rps'] / median([r[0]['rps'] for r in run['rounds']]):.2f}x /healthz, "
              f"non-2xx {create['errors']})")
        flows, refreshes = run["flows"], run["refreshes"]
        print(f"complete code flows (authorize + accept + token): {flows.get('flows', 0):.0f}/s "
              f"({flows['rps']:.0f} requests/s, p99 {flows['p99']:.2f} ms, non-2xx/3xx {flows['errors']})")
        rs256 = run["flows_rs256"]
        print(f"complete code flows, RS256 ID tokens: {rs256.get('flows', 0):.0f}/s "
              f"({rs256['rps']:.0f} requests/s, p99 {rs256['p99']:.2f} ms, non-2xx/3xx {rs256['errors']})")
        print(f"refresh-token rotations: {refreshes.get('rotations', 0):.0f}/s (p99 {refreshes['p99']:.2f} ms, non-2xx {refreshes['errors']})")
        print(f"worker peak RSS: {run['rss']:.1f} MiB")
    if pgbench:
        print(f"\npgbench simple-update (-N, 4 clients, 10 s, scale 10, same machine): {pgbench:.0f} tps (the database's own ceiling)")
    first = runs[0]
    flood, logo = first["flood"], first["logo"]
    alone, flooded, fl = flood["alone"], flood["flooded"], flood["flood"]
    print(f"\nPOST /oauth2/token (client_credentials, lks_ secret, -c{args.connections}) alone and during a wrong-password flood "
          f"(wrk -t1 -c{args.flood_connections}, a new password per request, one client with a caller-chosen (scrypt) password), {first['store']}\n")
    print("| normal client | tokens/s | p50 ms | p99 ms | non-2xx |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in (("alone", alone), ("with the flood", flooded)):
        print(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} |")
    counts = fl.get("counts", {})
    print(f"\nflood: {fl['rps']:.0f} requests/s (p50 {fl['p50']:.2f} ms, p99 {fl['p99']:.2f} ms), {fl.get('requests', 0)} answers in "
          f"{flood['flood_duration']}s: 401 {counts.get('401', 0)}, 429 {counts.get('429', 0)}, 503 {counts.get('503', 0)}, "
          f"500 {counts.get('500', 0)}, 200 {counts.get('200', 0)}, other {counts.get('other', 0)}")
    ok = sum(1 for x in logo["statuses"] if x == 204)
    others = sorted({x for x in logo["statuses"] if x != 204})
    print(f"logo RSS ({logo['threads']} threads x {logo['uploads']} PUT /api/v1/clients/{{id}}/logo of a 2048x2048 RGBA PNG, "
          f"{logo['image_kib']:.0f} KiB; {ok}/{len(logo['statuses'])} answered 204{f', others {others}' if others else ''}, "
          f"{logo['elapsed']:.1f} s): VmRSS before {logo['before']:.1f} MiB, peak during {logo['peak']:.1f} MiB (VmHWM; "
          f"sampled VmRSS {logo['sampled_peak']:.1f}), after {logo['after']:.1f} MiB ({logo['settled']:.1f} a second later); "
          f"SPEC 8: <= 64 MiB")


def report_ratios(runs, args) -> None:
    """The interleaved ratio scenarios per store, the stores against each other, and the signing ceiling (SPEC 8, 9)."""
    print(f"\nwrk -t2 -c{args.connections} -d{args.duration}s, through nginx, {args.workers} worker threads, rate limits off; "
          f"medians of {args.rounds} interleaved rounds")
    for run in runs:
        rounds = run["rounds"]
        nodes = args.pg_nodes if run["store"] == "postgres" else 1
        print(f"\nstore: {run['label']} ({nodes} node{'s' if nodes > 1 else ''})\n")
        print("| scenario | requests/s | p50 ms | p99 ms | x /healthz | non-2xx |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for i, (name, *_) in enumerate(run["scenarios"]):
            results = [r[i] for r in rounds]
            ratio = median([r[i]["rps"] / r[0]["rps"] for r in rounds])
            print(f"| {name} | {median([x['rps'] for x in results]):.0f} | {median([x['p50'] for x in results]):.2f} | "
                  f"{median([x['p99'] for x in results]):.2f} | {ratio:.2f} | {sum(x['errors'] for x in results)} |")
    a = runs[0]
    for b in runs[1:]:
        want = " (SPEC 9 wants >= 0.8 for tokens and introspection)" if b["store"] == "postgres" else ""
        print(f"\n{b['label']} / {a['label']} in the same rounds (medians of per-round ratios){want}:")
        for i, (name, *_) in enumerate(a["scenarios"]):
            ratios = [rb[i]["rps"] / ra[i]["rps"] for ra, rb in zip(a["rounds"], b["rounds"])]
            print(f"  {name}: {median(ratios):.2f} (rounds {min(ratios):.2f}-{max(ratios):.2f})")
    speed = es256_speed()
    cores = os.cpu_count() or 1
    for run in runs:
        # SPEC 10.2: what binding a token to a DPoP key, or authenticating with an assertion, costs against the plain
        # token; and that extra cost in ES256 verifications (openssl speed's, one core): with the cores saturated, a
        # request costs cores/rate of CPU in all (wrk, nginx, worker, database), so the extra is
        # cores * (1/rate - 1/plain rate). wrk's own share (its Lua formats each request with its proof) is in it.
        names = [name for name, *_ in run["scenarios"]]
        plain = names.index("POST /oauth2/token (client_credentials)")
        for i, name in enumerate(names):
            if name.startswith("POST /oauth2/token (client_credentials, "):
                ratio = median([r[i]["rps"] / r[plain]["rps"] for r in run["rounds"]])
                extra = ""
                if speed:
                    verifications = median([cores * (1 / r[i]["rps"] - 1 / r[plain]["rps"]) * speed[1] for r in run["rounds"]])
                    extra = f"; the extra CPU a token is {verifications:.1f} ES256 verifications (SPEC 10.2 wants <= 1)"
                print(f"{run['label']}: {name[len('POST /oauth2/token (client_credentials, '):-1]} / plain client_credentials "
                      f"tokens: {ratio:.2f}{extra}")
    first = runs[0]
    signs = speed[0] if speed else None
    if signs:
        # With both cores saturated, a /healthz request costs cores/rate of CPU in all (wrk, nginx, worker);
        # a token costs at least that plus one signature.
        healthz = median([r[0]["rps"] for r in first["rounds"]])
        per_request, per_signature = cores / healthz, 1 / signs
        print(f"ES256 signatures/s on one core (openssl speed): {signs:.0f}; the most a server that signs every token "
              f"could reach here is about {per_request / (per_request + per_signature):.2f}x /healthz")


def pgbench_simple_update(tmp: Path) -> float | None:
    """pgbench's simple-update rate on a cluster of its own, on the same machine: the database's own ceiling."""
    from conftest import PostgresCluster
    cluster = PostgresCluster(tmp / "pgbench")
    try:
        url = cluster.url
        subprocess.run(["pgbench", "-i", "-s", "10", "-q", url], check=True, capture_output=True)
        out = subprocess.run(["pgbench", "-N", "-M", "prepared", "-c", "4", "-j", "2", "-T", "10", url], check=True, capture_output=True,
                             text=True).stdout
        m = re.search(r"tps = ([0-9.]+)", out)
        return float(m.group(1)) if m else None
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    finally:
        cluster.stop()


def es256_speed() -> tuple[float, float] | None:
    """`openssl speed ecdsap256` on one core: ES256 signatures and verifications per second on this machine."""
    try:
        out = subprocess.run(["openssl", "speed", "-seconds", "2", "ecdsap256"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^\s*256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", out, re.M)
    return (float(m.group(1)), float(m.group(2))) if m else None


if __name__ == "__main__":
    main()

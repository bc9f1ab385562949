"""Instructions per request, without drift: `valgrind --tool=callgrind` on
the serving process (one worker thread) behind a real nginx, for one or two
builds of latchkey. A request's cost is the difference between a run of
SMALL+N requests and a run of SMALL (start-up and shutdown cancel out),
divided by N.

    python3 bench/callgrind.py [--baseline OLD_BINARY] [--requests N] [--store postgres] [--presign on] [--baseline-presign on]

Prints instructions per request by scenario (`healthz`: the transport
alone; client_credentials token,
JWT introspection, a client read; `code`: one whole code flow of a signed-in
user with remembered consent, authorize then token, counted as one; `dpop`:
a client_credentials token with a DPoP proof; `pkjwt`: one for a
`private_key_jwt` client, an assertion per request; `refresh`: a public
client's refresh-token rotation, each call rotating the token the last one
returned) for this build and the baseline."""
import argparse
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
import conftest  # noqa: E402
from conftest import Stack  # noqa: E402

SMALL = 200


def wrapper(directory: Path, binary: str, out: Path) -> str:
    """A latchkey that runs `serve` under callgrind and every other command as is."""
    path = directory / "latchkey-under-callgrind"
    path.write_text(f"""#!/bin/sh
if [ "$1" = serve ]; then
  # No logout-delivery polls: they would count by wall time, not by request.
  export LATCHKEY_BACKCHANNEL_INTERVAL_MS=0
  # Swift seeds its hashing per process: dictionaries then collide differently from run to run,
  # a few hundred instructions a request either way. A fixed seed makes two builds' counts comparable.
  export SWIFT_DETERMINISTIC_HASHING=1
  exec valgrind --tool=callgrind --callgrind-out-file={out} --dump-instr=no --collect-jumps=no "{binary}" "$@"
fi
exec "{binary}" "$@"
""")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def scenario_requests(stack: Stack, name: str):
    """A function that sends one request of the scenario."""
    session = requests.Session()
    auth = (stack.client_id, stack.client_secret)
    if name == "healthz":
        return lambda: session.get(stack.url("/healthz"))
    if name == "token":
        return lambda: session.post(stack.url("/oauth2/token"), data={"grant_type": "client_credentials"}, auth=auth)
    if name == "code":
        return code_flow(stack, session)
    if name == "refresh":
        return refresh_rotations(stack, session)
    if name == "dpop":
        return dpop_tokens(stack, session, auth)
    if name == "pkjwt":
        return assertion_tokens(stack, session)
    token = stack.token()
    if name == "introspect":
        return lambda: session.post(stack.url("/oauth2/introspect"), data={"token": token}, auth=auth)
    headers = {"Authorization": f"Bearer {token}"}
    return lambda: session.get(stack.url(f"/api/v1/clients/{stack.client_id}"), headers=headers)


def dpop_tokens(stack: Stack, session, auth):
    """client_credentials with a fresh DPoP proof each time (made here, outside the measured process)."""
    import uuid
    from joserfc import jwt
    from joserfc.jwk import ECKey
    key = ECKey.generate_key("P-256")
    url = stack.url("/oauth2/token")

    def token():
        proof = jwt.encode({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)},
                           {"jti": uuid.uuid4().hex, "htm": "POST", "htu": url, "iat": int(time.time())}, key)
        return session.post(url, data={"grant_type": "client_credentials"}, auth=auth, headers={"DPoP": proof})
    return token


def assertion_tokens(stack: Stack, session):
    """client_credentials for a private_key_jwt client, a fresh assertion each time (made here, outside the measured process)."""
    import uuid
    from joserfc import jwt
    from joserfc.jwk import ECKey
    key = ECKey.generate_key("P-256")
    jwk = {**key.as_dict(private=False), "kid": "cg-1"}
    created = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
        "client_name": "callgrind private_key_jwt", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [jwk]}})
    assert created.status_code == 201, created.text
    client_id, url = created.json()["client_id"], stack.url("/oauth2/token")

    def token():
        now = int(time.time())
        assertion = jwt.encode({"alg": "ES256", "kid": "cg-1"},
                               {"iss": client_id, "sub": client_id, "aud": url, "jti": uuid.uuid4().hex, "iat": now, "exp": now + 240}, key)
        return session.post(url, data={"grant_type": "client_credentials", "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                                       "client_assertion": assertion})
    return token


def code_flow(stack: Stack, session):
    """A confidential client and a signed-in user who approved it once: each call authorizes (303 with a code) and redeems."""
    from urllib.parse import parse_qs, urlparse
    redirect = "http://127.0.0.1:9/cb"
    created = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
        "client_name": "bench", "redirect_uris": [redirect], "grant_types": ["authorization_code"], "scope": "openid profile"}).json()
    auth = (created["client_id"], created["client_secret"])
    assert session.post(stack.url("/api/v1/session"), json={"username": "demo", "password": stack.demo_password}).status_code == 204
    params = {"response_type": "code", "client_id": auth[0], "redirect_uri": redirect, "scope": "openid profile", "state": "s", "nonce": "n"}
    first = session.get(stack.url("/oauth2/authorize"), params=params, allow_redirects=False).headers["Location"]
    request_id = parse_qs(urlparse(first).query)["request"][0]
    session.post(stack.url(f"/api/v1/authorization-requests/{request_id}/accept"), headers={"X-CSRF-Token": session.cookies["lk_csrf"]},
                 json={"scope": ["openid", "profile"], "remember": True})

    def flow():
        location = session.get(stack.url("/oauth2/authorize"), params=params, allow_redirects=False).headers["Location"]
        code = parse_qs(urlparse(location).query)["code"][0]
        return requests.post(stack.url("/oauth2/token"), data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect},
                             auth=auth)
    return flow


def refresh_rotations(stack: Stack, session):
    """A public client's refresh token (PKCE code flow of a signed-in user once, then each call rotates the current token)."""
    import base64
    import hashlib
    import secrets
    from urllib.parse import parse_qs, urlparse
    redirect = "http://127.0.0.1:9/cb"
    client = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
        "client_name": "bench", "redirect_uris": [redirect], "grant_types": ["authorization_code", "refresh_token"],
        "scope": "openid offline_access", "token_endpoint_auth_method": "none", "refresh_token_ttl": 86400}).json()["client_id"]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert session.post(stack.url("/api/v1/session"), json={"username": "demo", "password": stack.demo_password}).status_code == 204
    params = {"response_type": "code", "client_id": client, "redirect_uri": redirect, "scope": "openid offline_access", "state": "s",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    first = session.get(stack.url("/oauth2/authorize"), params=params, allow_redirects=False).headers["Location"]
    request_id = parse_qs(urlparse(first).query)["request"][0]
    accepted = session.post(stack.url(f"/api/v1/authorization-requests/{request_id}/accept"),
                            headers={"X-CSRF-Token": session.cookies["lk_csrf"]},
                            json={"scope": ["openid", "offline_access"], "remember": True}).json()
    code = parse_qs(urlparse(accepted["redirect_to"]).query)["code"][0]
    current = [requests.post(stack.url("/oauth2/token"), data={"grant_type": "authorization_code", "code": code, "client_id": client,
                                                              "redirect_uri": redirect, "code_verifier": verifier}).json()["refresh_token"]]

    def rotate():
        r = session.post(stack.url("/oauth2/token"), data={"grant_type": "refresh_token", "refresh_token": current[0], "client_id": client})
        if r.status_code == 200:
            current[0] = r.json()["refresh_token"]
        return r
    return rotate


def start(stack: Stack) -> Stack:
    """Stack.start with the patience a process under valgrind needs."""
    stack.log = open(stack.log_path, "ab")
    stack.workers_procs = [stack.start_node(1)]
    stack.worker = stack.workers_procs[0]
    stack.nginx = subprocess.Popen(["nginx", "-c", str(stack.state / "nginx" / "nginx.conf"), "-p", str(stack.state / "nginx"),
                                    "-g", "daemon off;"], stdout=stack.log, stderr=stack.log)
    for _ in range(600):
        try:
            if requests.get(stack.base + "/healthz", timeout=5).status_code == 200:
                return stack
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError("Latchkey did not become healthy under valgrind:\n" + stack.log_path.read_text(errors="replace"))


def total_instructions(out: Path) -> int:
    text = out.read_text(errors="replace")
    match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    assert match, f"no totals in {out}"
    return int(match.group(1))


def instructions(binary: str, name: str, count: int, tmp: Path, keep: Path | None = None, store: str = "sqlite",
                 presign: str = "off") -> int:
    run = Path(tempfile.mkdtemp(dir=tmp))
    out = run / "callgrind.out"
    previous = conftest.BIN
    conftest.BIN = wrapper(run, binary, out)
    try:
        stack = start(Stack(run / "stack", rate_limits="off", workers=1, log_level=None, store=store, nodes=1,
                            env={"LATCHKEY_ES256_PRESIGN": presign}))
        try:
            send = scenario_requests(stack, name)
            for _ in range(count):
                r = send()
                assert r.status_code == 200, r.text
        finally:
            stack.stop()
    finally:
        conftest.BIN = previous
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        (keep / f"{name}-{store}-{count}-{Path(binary).parent.parent.name}-{run.name}.out").write_bytes(out.read_bytes())
    return total_instructions(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", help="another latchkey binary, measured the same way")
    ap.add_argument("--requests", type=int, default=1000, help="requests measured per scenario (beyond the first 200)")
    ap.add_argument("--scenarios", default="token,introspect,read")
    ap.add_argument("--store", default="sqlite", help="sqlite, or postgres (one node on a throwaway local cluster)")
    ap.add_argument("--keep", type=Path, help="a directory to keep both runs' callgrind outputs in (for bench/callgrind_diff.py)")
    ap.add_argument("--presign", default="off", choices=["on", "off"], help="LATCHKEY_ES256_PRESIGN for this build")
    ap.add_argument("--baseline-presign", default="off", choices=["on", "off"], help="LATCHKEY_ES256_PRESIGN for the baseline")
    args = ap.parse_args()
    # The release build unless LATCHKEY_BIN names another (the end-to-end harness defaults to the debug
    # build, whose counts are several times a release build's and say nothing about speed).
    this = os.environ.get("LATCHKEY_BIN") or str(Path(__file__).resolve().parents[1] / ".build" / "release" / "latchkey")
    if not Path(this).exists():
        sys.exit(f"{this} is missing: swift build -c release --product latchkey, or set LATCHKEY_BIN")
    binaries = [("this build", this, args.presign)] + ([("baseline", args.baseline, args.baseline_presign)] if args.baseline else [])
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        print(f"callgrind instructions per request ({args.store}, one worker thread, ({SMALL}+{args.requests} - {SMALL}) / {args.requests})")
        for label, binary, presign in binaries:
            print(f"  {label}: {binary} (LATCHKEY_ES256_PRESIGN={presign})")
        for name in args.scenarios.split(","):
            row = []
            for label, binary, presign in binaries:
                small = instructions(binary, name, SMALL, tmp, args.keep, args.store, presign)
                large = instructions(binary, name, SMALL + args.requests, tmp, args.keep, args.store, presign)
                per = (large - small) / args.requests
                row.append(per)
                print(f"  {name:<11} {label:<11} {per / 1000:8.1f}k", flush=True)
            if len(row) == 2:
                print(f"  {name:<11} this build / baseline: {row[0] / row[1]:.3f}", flush=True)


if __name__ == "__main__":
    main()

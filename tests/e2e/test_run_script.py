"""scripts/run, as a newcomer uses it: it prints credentials and a curl
line that yields a token verifying against the JWKS; Ctrl-C stops both
processes; a second start reuses the state and prints no secret."""
import json
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import time

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from conftest import ROOT, free_port


def start(state, port, **extra):
    env = dict(os.environ, LATCHKEY_STATE_DIR=str(state), LATCHKEY_HTTP_PORT=str(port), LATCHKEY_SKIP_BUILD="1", **extra)
    env.pop("LATCHKEY_DATABASE_URL", None)
    proc = subprocess.Popen([str(ROOT / "scripts" / "run")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True, cwd=ROOT)
    lines = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops" in line:
            return proc, "".join(lines)
    proc.kill()
    raise AssertionError("scripts/run did not come up:\n" + "".join(lines))


def stop(proc, port):
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "nginx still listening after Ctrl-C"


def test_scripts_run_first_and_second_start(tmp_path):
    state = tmp_path / "var"
    port = free_port()
    # Every python3 the script starts records its command line, which any local user can read (/proc/PID/cmdline).
    shims = tmp_path / "shims"
    shims.mkdir()
    argv_log = tmp_path / "python3-argv.log"
    real = subprocess.run(["which", "python3"], capture_output=True, text=True, check=True).stdout.strip()
    (shims / "python3").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {argv_log}\nexec {real} "$@"\n')
    (shims / "python3").chmod(0o755)
    proc, out = start(state, port, PATH=f"{shims}:{os.environ['PATH']}")
    try:
        issuer = f"http://127.0.0.1:{port}"
        assert f"issuer:         {issuer}" in out
        bootstrap = json.loads((state / "bootstrap.json").read_text())
        assert stat.S_IMODE((state / "bootstrap.json").stat().st_mode) == 0o600
        assert set(bootstrap) == {"issuer", "organization_id", "client_id", "client_secret", "demo_user"}
        assert bootstrap["client_secret"] in out and bootstrap["demo_user"]["password"] in out
        argv = argv_log.read_text()
        assert "bootstrap.json" in argv, "the shim saw the bootstrap step"
        assert bootstrap["client_secret"] not in argv and bootstrap["demo_user"]["password"] not in argv
        curl = re.search(r"^\s+(curl .*)$", out, re.M).group(1)
        token = json.loads(subprocess.run(curl, shell=True, capture_output=True, text=True, check=True).stdout)["access_token"]
        keys = KeySet.import_key_set(requests.get(issuer + "/oauth2/jwks").json())
        claims = jwt.decode(token, keys).claims
        assert claims["iss"] == issuer and claims["client_id"] == bootstrap["client_id"]
        # The demo app: a public client whose redirect URI is the static /demo/callback page.
        demo = re.search(r"(http://127\.0\.0\.1:\d+/demo/\?client_id=([\w-]+))", out)
        assert demo, out
        assert requests.get(demo.group(1)).status_code == 200
        app = requests.get(f"{issuer}/api/oauth/app/id/{demo.group(2)}").json()
        assert app["redirect_uri"] == f"{issuer}/demo/callback"
        assert requests.get(f"{issuer}/demo/callback").status_code == 200
        # SPEC 7.1: a KEK (0600) in the state directory, and nothing that could mint or verify a
        # credential stored in clear: the pepper and the signing keys are sealed with it.
        assert stat.S_IMODE((state / "kek").stat().st_mode) == 0o600
        assert (state / "kek").stat().st_size >= 32
        db = sqlite3.connect(f"file:{state / 'latchkey.db'}?mode=ro", uri=True)
        try:
            meta = {k for (k,) in db.execute("SELECT key FROM meta")}
            assert "secret_pepper_sealed" in meta and "secret_pepper" not in meta
            assert [e for (e,) in db.execute("SELECT encrypted FROM signing_keys")] and all(
                e == 1 for (e,) in db.execute("SELECT encrypted FROM signing_keys"))
        finally:
            db.close()
    finally:
        stop(proc, port)
    # The state belongs to its issuer: with TLS switched on it is not reused (its credentials name another issuer).
    env = dict(os.environ, LATCHKEY_STATE_DIR=str(state), LATCHKEY_HTTP_PORT=str(port), LATCHKEY_SKIP_BUILD="1", LATCHKEY_TLS="on")
    refused = subprocess.run([str(ROOT / "scripts" / "run")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert refused.returncode == 2 and f"made for the issuer {issuer}" in refused.stderr, refused.stderr
    proc, out = start(state, port)
    try:
        assert "lks_" not in out
        assert bootstrap["demo_user"]["password"] not in out
        assert "/demo/?client_id=" in out
        assert requests.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    finally:
        stop(proc, port)


def test_scripts_run_with_postgres_two_nodes(tmp_path):
    """SPEC 9: LATCHKEY_STORE=postgres scripts/run makes a cluster under the state directory (unix socket in run/),
    runs two nodes on run/latchkey-1.sock and -2.sock behind one nginx; Ctrl-C stops PostgreSQL too."""
    state = tmp_path / "var"
    port = free_port()
    proc, out = start(state, port, LATCHKEY_STORE="postgres")
    try:
        issuer = f"http://127.0.0.1:{port}"
        assert "postgres (2 nodes)" in out, out
        assert (state / "run" / "latchkey-1.sock").exists() and (state / "run" / "latchkey-2.sock").exists()
        assert (state / "postgres" / "data" / "PG_VERSION").exists()
        assert (state / "run" / ".s.PGSQL.5432").exists()
        bootstrap = json.loads((state / "bootstrap.json").read_text())
        assert bootstrap["client_secret"] in out
        curl = re.search(r"^\s+(curl .*)$", out, re.M).group(1)
        token = json.loads(subprocess.run(curl, shell=True, capture_output=True, text=True, check=True).stdout)["access_token"]
        # Every request of a few lands on one node or the other; all of them know the token.
        for _ in range(6):
            r = requests.post(issuer + "/oauth2/introspect", data={"token": token}, auth=(bootstrap["client_id"], bootstrap["client_secret"]))
            assert r.json()["active"] is True
        assert not (state / "latchkey.db").exists(), "the SQLite file must not be used with PostgreSQL"
        # SPEC 9: one node killed, the other serves and the first comes back (attacker review, session 18: the
        # whole stack stopped with it); then both at once, and both come back.
        def node_pid(n):
            found = subprocess.run(["pgrep", "-f", f"unix:{state}/run/latchkey-{n}.sock"], capture_output=True, text=True).stdout.split()
            return int(found[0]) if found else None

        def listening(n):
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(str(state / "run" / f"latchkey-{n}.sock"))
                    return True
                except (ConnectionRefusedError, FileNotFoundError):
                    return False

        def kill_and_wait(*nodes):
            killed = {n: node_pid(n) for n in nodes}
            for pid in killed.values():
                os.kill(pid, signal.SIGKILL)
            # Until its last thread is gone a node's socket takes connections: a POST sent into it then is a 502
            # nginx must not replay (it may have reached a worker). Once the socket refuses them, nginx moves on.
            deadline = time.time() + 10
            while any(listening(n) and node_pid(n) == pid for n, pid in killed.items()):
                assert time.time() < deadline, "a killed node still listens"
                time.sleep(0.01)
            return killed

        def back(killed):
            deadline = time.time() + 20
            while time.time() < deadline and not all(node_pid(n) not in (None, pid) and listening(n) for n, pid in killed.items()):
                time.sleep(0.2)
            assert all(node_pid(n) not in (None, pid) and listening(n) for n, pid in killed.items()), f"not started again: {killed}"
            assert proc.poll() is None, "scripts/run ended with its nodes"

        killed = kill_and_wait(1)
        for _ in range(20):
            r = requests.post(issuer + "/oauth2/introspect", data={"token": token}, auth=(bootstrap["client_id"], bootstrap["client_secret"]))
            assert r.status_code == 200 and r.json()["active"] is True
        back(killed)
        back(kill_and_wait(1, 2))
        for _ in range(6):
            r = requests.post(issuer + "/oauth2/introspect", data={"token": token}, auth=(bootstrap["client_id"], bootstrap["client_secret"]))
            assert r.status_code == 200 and r.json()["active"] is True
    finally:
        stop(proc, port)
    assert not (state / "postgres" / "data" / "postmaster.pid").exists(), "PostgreSQL still running after Ctrl-C"
    proc, out = start(state, port, LATCHKEY_STORE="postgres")
    try:
        assert "lks_" not in out
        assert requests.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    finally:
        stop(proc, port)


def test_scripts_run_with_tls_serves_the_openid_flow_over_https(tmp_path):
    """SPEC 10.1: LATCHKEY_TLS=on makes a local CA and a certificate for localhost, serves https with the issuer
    https://localhost:PORT and prints the CA file to trust; discovery, a client_credentials token and a code flow
    with PKCE (the demo app) work over it with that CA as the only trust anchor."""
    import base64
    import hashlib
    import secrets
    from urllib.parse import parse_qs, urlencode, urlparse
    state = tmp_path / "var-tls"
    port = free_port()
    proc, out = start(state, port, LATCHKEY_TLS="on")
    try:
        issuer = f"https://localhost:{port}"
        assert f"issuer:         {issuer}" in out
        ca = re.search(r"CA to trust:\s+(\S+)", out).group(1)
        assert ca == str(state / "tls" / "ca.pem")
        http = requests.Session()
        http.trust_env = False  # REQUESTS_CA_BUNDLE would override verify: the local CA must be the only anchor
        http.verify = ca
        doc = http.get(issuer + "/.well-known/openid-configuration").json()
        assert doc["issuer"] == issuer and doc["token_endpoint"] == issuer + "/oauth2/token"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(issuer + "/healthz")  # the system's authorities do not know the local CA
        curl = re.search(r"^\s+(curl .*)$", out, re.M).group(1)
        assert f"--cacert {ca}" in curl
        token = json.loads(subprocess.run(curl, shell=True, capture_output=True, text=True, check=True).stdout)["access_token"]
        keys = KeySet.import_key_set(http.get(issuer + "/oauth2/jwks").json())
        assert jwt.decode(token, keys).claims["iss"] == issuer
        # The code flow with the demo app, as a browser would: sign in, authorize, approve, redeem.
        bootstrap = json.loads((state / "bootstrap.json").read_text())
        demo = json.loads((state / "demo.json").read_text())
        login = http.post(issuer + "/api/v1/session", json={"username": "demo", "password": bootstrap["demo_user"]["password"]})
        assert login.status_code == 204 and "secure" in login.headers["Set-Cookie"].lower()
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        r = http.get(issuer + "/oauth2/authorize?" + urlencode({
            "response_type": "code", "client_id": demo["client_id"], "redirect_uri": demo["redirect_uri"], "scope": "openid profile",
            "state": "tls", "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256"}), allow_redirects=False)
        request_id = parse_qs(urlparse(r.headers["Location"]).query)["request"][0]
        accepted = http.post(f"{issuer}/api/v1/authorization-requests/{request_id}/accept", headers={"X-CSRF-Token": http.cookies["__Host-lk_csrf"]},
                             json={"scope": ["openid", "profile"], "remember": False}).json()
        code = parse_qs(urlparse(accepted["redirect_to"]).query)["code"][0]
        tokens = http.post(issuer + "/oauth2/token", data={"grant_type": "authorization_code", "code": code, "client_id": demo["client_id"],
                                                           "redirect_uri": demo["redirect_uri"], "code_verifier": verifier}).json()
        claims = jwt.decode(tokens["id_token"], keys).claims
        assert claims["iss"] == issuer and claims["aud"] == demo["client_id"] and claims["nonce"] == "n"
    finally:
        stop(proc, port)

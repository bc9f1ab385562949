"""The platform end to end: discovery, JWKS, client_credentials through a
real OAuth client library, token verification with an independent JOSE
library, introspection, revocation, key rotation, rate limiting, bad input
and graceful shutdown, all through nginx."""
import base64
import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from conftest import BIN, ROOT, fastcgi_get, free_port, run_cli


def jwks(stack):
    return KeySet.import_key_set(requests.get(stack.url("/oauth2/jwks")).json())


def verify(stack, token, algorithms=("ES256", "RS256", "EdDSA")):
    decoded = jwt.decode(token, jwks(stack), algorithms=list(algorithms))
    registry = jwt.JWTClaimsRegistry(iss={"essential": True, "value": stack.base},
                                     aud={"essential": True, "value": stack.base},
                                     exp={"essential": True}, sub={"essential": True}, jti={"essential": True})
    registry.validate(decoded.claims)
    return decoded


def test_discovery_names_every_endpoint_under_the_issuer(stack):
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        r = requests.get(stack.url(path))
        assert r.status_code == 200
        doc = r.json()
        assert doc["issuer"] == stack.base
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "introspection_endpoint", "revocation_endpoint",
                    "userinfo_endpoint"):
            assert doc[key].startswith(stack.base + "/")
        assert doc["code_challenge_methods_supported"] == ["S256"]
        assert doc["response_types_supported"] == ["code"]
        assert set(doc["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}
        assert doc["authorization_response_iss_parameter_supported"] is True
    r = requests.get(stack.url("/oauth2/jwks"))
    assert r.headers["Cache-Control"].startswith("public, max-age=")
    assert all("d" not in k for k in r.json()["keys"]), "private key material in the JWKS"


def test_authlib_client_credentials_token_verifies_against_jwks(stack):
    client = OAuth2Session(stack.client_id, stack.client_secret, token_endpoint_auth_method="client_secret_basic",
                           scope="clients:read audit:read")
    token = client.fetch_token(stack.url("/oauth2/token"), grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "clients:read audit:read"
    decoded = verify(stack, token["access_token"])
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.claims["client_id"] == stack.client_id
    assert decoded.claims["sub"] == stack.client_id
    assert decoded.claims["exp"] - decoded.claims["iat"] == 900
    # The token works at the management API through the same client library.
    r = client.get(stack.url("/api/v1/organization"))
    assert r.status_code == 200
    assert r.json()["organization_id"] == stack.org_id


def presigned_total(stack):
    text = requests.get(stack.url("/metrics")).text
    return int(next(line for line in text.splitlines() if line.startswith("latchkey_es256_presigned_total ")).split()[1])


def test_es256_presigning_on_signs_tokens_that_verify_and_never_share_an_r(tmp_path):
    """With LATCHKEY_ES256_PRESIGN=on, a worker thread that signs quickly signs with nonces prepared
    ahead and inversions shared (PreparedKey) once it has signed 127: 400 tokens from one thread all
    verify with an independent JOSE library, no two share an r (a repeated nonce would give the key
    away), and /metrics counts the presigned ones."""
    from conftest import Stack
    s = Stack(tmp_path / "presign", rate_limits="off", workers=1, env={"LATCHKEY_ES256_PRESIGN": "on"}).start()
    try:
        auth = (s.client_id, s.client_secret)
        before = presigned_total(s)
        with requests.Session() as session:   # quickly: a thread prepares while it signs 64 tokens a second or more
            responses = [session.post(s.url("/oauth2/token"), data={"grant_type": "client_credentials"}, auth=auth) for _ in range(400)]
        assert [r.status_code for r in responses] == [200] * 400
        assert presigned_total(s) - before >= 200
        keys = jwks(s)
        rs = set()
        for r in responses:
            token = r.json()["access_token"]
            jwt.decode(token, keys, algorithms=["ES256"])
            signature = base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")
            assert len(signature) == 64
            rs.add(signature[:32])
        assert len(rs) == 400
    finally:
        s.stop()


def test_es256_presigning_is_off_by_default(stack):
    # Enough tokens, quickly enough, that each of the stack's worker threads would have presigned some were it on.
    with requests.Session() as session:
        for _ in range(1000):
            r = session.post(stack.url("/oauth2/token"), data={"grant_type": "client_credentials"}, auth=(stack.client_id, stack.client_secret))
            assert r.status_code == 200
    verify(stack, r.json()["access_token"])
    assert presigned_total(stack) == 0


def assert_serve_refuses(tmp_path, name, value, says):
    """`latchkey serve` with `name=value` in its environment exits saying `says`, before it listens."""
    db = tmp_path / "refused.db"
    run_cli(db, "init", "--issuer", "http://127.0.0.1:1")
    sock = tmp_path / "refused.sock"
    proc = subprocess.run([BIN, "serve", "--listen", f"unix:{sock}", "--db", str(db)], capture_output=True, text=True, timeout=20,
                          env=dict(os.environ, **{name: value}))
    assert proc.returncode != 0 and says in proc.stderr, proc.stderr
    assert not sock.exists()


def test_serve_refuses_a_presign_setting_other_than_on_or_off(tmp_path):
    assert_serve_refuses(tmp_path, "LATCHKEY_ES256_PRESIGN", "maybe", "LATCHKEY_ES256_PRESIGN must be on or off")


def test_token_responses_are_not_cacheable(stack):
    r = requests.post(stack.url("/oauth2/token"), data={"grant_type": "client_credentials"}, auth=(stack.client_id, stack.client_secret))
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers.get("X-Request-Id")


def test_introspection_and_revocation(stack):
    token = stack.token(scope="clients:read")
    auth = (stack.client_id, stack.client_secret)
    r = requests.post(stack.url("/oauth2/introspect"), data={"token": token}, auth=auth)
    assert r.status_code == 200 and r.json()["active"] is True
    assert r.json()["scope"] == "clients:read"
    assert requests.post(stack.url("/oauth2/revoke"), data={"token": token, "token_type_hint": "access_token"}, auth=auth).status_code == 200
    assert requests.post(stack.url("/oauth2/introspect"), data={"token": token}, auth=auth).json() == {"active": False}
    assert requests.get(stack.url("/api/v1/organization"), headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # Unknown tokens: 200 at revocation, inactive at introspection.
    assert requests.post(stack.url("/oauth2/revoke"), data={"token": "nope"}, auth=auth).status_code == 200
    assert requests.post(stack.url("/oauth2/introspect"), data={"token": "nope"}, auth=auth).json() == {"active": False}


def test_key_rotation_publishes_the_new_key_and_old_tokens_keep_verifying(fresh_stack):
    s = fresh_stack
    old = s.token()
    old_kid = jwt.decode(old, jwks(s)).header["kid"]
    for alg in ("RS256", "EdDSA", "ES256"):
        rotated = json.loads(run_cli(s, "keys", "rotate", "--alg", alg).stdout)
        new = s.token()
        decoded = verify(s, new)
        assert decoded.header["kid"] == rotated["kid"]
        assert decoded.header["alg"] == alg
        # The old token still verifies (its key is still published) and is still active.
        assert verify(s, old).header["kid"] == old_kid
        r = requests.post(s.url("/oauth2/introspect"), data={"token": old}, auth=(s.client_id, s.client_secret))
        assert r.json()["active"] is True
    # SPEC 10.1: without --alg, the access-token algorithm's key is rotated (EdDSA here, after rotating it last).
    run_cli(s, "keys", "rotate", "--alg", "EdDSA")
    plain = json.loads(run_cli(s, "keys", "rotate").stdout)
    assert plain["alg"] == "EdDSA", plain
    assert verify(s, s.token()).header["kid"] == plain["kid"]
    listed = json.loads(run_cli(s, "keys", "list").stdout)["keys"]
    # SPEC 10.1: one current key per algorithm (init made ES256 and RS256); each rotation retired its own algorithm's.
    assert sorted(k["alg"] for k in listed if k["status"] == "active") == ["ES256", "EdDSA", "RS256"]
    assert len(listed) == 7


def test_a_revoked_key_ends_its_tokens_at_once_and_leaves_the_jwks(fresh_stack):
    """`latchkey keys revoke` (a key that leaked): every worker thread that had verified and remembered a token
    signed by it refuses it within a second, and a new key of its algorithm signs from then on."""
    s = fresh_stack
    auth = (s.client_id, s.client_secret)
    token = s.token()
    leaked = verify(s, token).header["kid"]
    # Enough introspections for every worker thread to have verified the token and kept it.
    for _ in range(12):
        assert requests.post(s.url("/oauth2/introspect"), data={"token": token}, auth=auth).json()["active"] is True
    revoked = json.loads(run_cli(s, "keys", "revoke", leaked).stdout)
    assert revoked["revoked"] == leaked and revoked["alg"] == "ES256" and revoked["kid"] not in (None, leaked), revoked
    time.sleep(1.1)  # a thread answering from its cache alone reads whether the keys lost one once a second
    for _ in range(12):
        assert requests.post(s.url("/oauth2/introspect"), data={"token": token}, auth=auth).json() == {"active": False}
        assert requests.get(s.url("/api/v1/organization"), headers={"Authorization": f"Bearer {token}"}).status_code == 401
    published = [k["kid"] for k in requests.get(s.url("/oauth2/jwks")).json()["keys"]]
    assert leaked not in published and revoked["kid"] in published
    fresh = s.token()
    assert verify(s, fresh).header["kid"] == revoked["kid"]
    assert requests.get(s.url("/api/v1/organization"), headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    listed = json.loads(run_cli(s, "keys", "list").stdout)["keys"]
    assert leaked not in [k["kid"] for k in listed]
    # An unknown kid: exit 1, a message, nothing changed.
    missing = run_cli(s, "keys", "revoke", leaked, check=False)
    assert missing.returncode == 1 and "no signing key" in missing.stderr
    assert json.loads(run_cli(s, "keys", "list").stdout)["keys"] == listed


def test_rate_limit_answers_429_with_retry_after_and_json(limited_stack):
    stack = limited_stack
    # A burst of concurrent sign-in attempts: nginx's limit for /api/v1/session is 5/s with a burst of 10.
    import concurrent.futures
    def attempt(_):
        return requests.post(stack.url("/api/v1/session"), json={"username": "x", "password": "y"})
    with concurrent.futures.ThreadPoolExecutor(max_workers=30) as pool:
        responses = list(pool.map(attempt, range(30)))
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    r = limited[0]
    assert r.headers["Retry-After"] == "1"
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"] == "rate_limited"
    assert r.headers.get("X-Request-Id")
    # 503 (with Retry-After): the slow-hash pool was full (SPEC 7.1), refused at once rather than queued.
    assert all(x.status_code in (401, 429, 503) for x in responses)
    assert all(x.headers.get("Retry-After") for x in responses if x.status_code == 503)
    time.sleep(2.5)  # let the bucket refill for the tests that follow


@pytest.mark.parametrize("data,headers,status,error", [
    ("grant_type=client_credentials&grant_type=client_credentials", {}, 400, "invalid_request"),
    ("grant_type=password&username=a&password=b", {}, 400, "unsupported_grant_type"),
    ("grant_type=client_credentials&scope=%zz", {}, 400, "invalid_request"),
    ("", {}, 400, "invalid_request"),
    ('{"grant_type":"client_credentials"}', {"Content-Type": "application/json"}, 400, "invalid_request"),
    ("grant_type=client_credentials&scope=not-held", {}, 400, "invalid_scope"),
])
def test_bad_token_requests_get_rfc6749_errors(stack, data, headers, status, error):
    h = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    r = requests.post(stack.url("/oauth2/token"), data=data, headers=h, auth=(stack.client_id, stack.client_secret))
    assert r.status_code == status, r.text
    assert r.json()["error"] == error


def test_wrong_credentials_are_invalid_client_with_basic_challenge(stack):
    r = requests.post(stack.url("/oauth2/token"), data={"grant_type": "client_credentials"}, auth=(stack.client_id, "lks_wrong"))
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["WWW-Authenticate"].startswith("Basic")


def test_oversized_bodies_are_refused_by_nginx_with_json(stack):
    r = requests.post(stack.url("/oauth2/token"), data="a=" + "x" * (20 * 1024),
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    assert r.json()["error"] == "invalid_request"


def test_garbage_and_alg_none_bearer_tokens_are_401(stack):
    token = stack.token()
    header, payload, _ = token.split(".")
    none_header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "at+jwt"}).encode()).rstrip(b"=").decode()
    for bad in ("garbage", f"{none_header}.{payload}.", f"{header}.{payload}.AAAA", token + "x"):
        r = requests.get(stack.url("/api/v1/organization"), headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401, bad
        assert "invalid_token" in r.headers["WWW-Authenticate"]
    r = requests.get(stack.url("/api/v1/organization"))
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")


def test_security_headers_on_every_response(stack):
    for method, path in (("GET", "/healthz"), ("GET", "/nope"), ("GET", "/oauth2/jwks")):
        r = requests.request(method, stack.url(path))
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers.get("X-Request-Id")
        assert r.status_code < 500


def test_no_secret_or_token_reaches_a_log_line(stack):
    token = stack.token()
    requests.post(stack.url("/oauth2/introspect"), data={"token": token}, auth=(stack.client_id, stack.client_secret))
    requests.get(stack.url("/api/v1/organization?access_token=" + token))
    time.sleep(0.2)
    logs = stack.logs()
    assert logs, "no logs were written"
    # The test stack logs every request (debug): the worker's lines are checked too, not only nginx's.
    worker_lines = [json.loads(line) for line in stack.log_path.read_text().splitlines() if line.startswith("{")]
    assert any(line.get("path") == "/oauth2/introspect" and line["status"] == 200 for line in worker_lines)
    assert stack.client_secret not in logs
    assert token not in logs
    assert token.split(".")[2] not in logs
    # No Authorization header (name or value): a source file's name such as AuthorizationCodeGrant.swift may appear.
    assert "Authorization:" not in logs and '"Authorization"' not in logs and "Basic " not in logs and "Bearer " not in logs


def test_a_credential_sent_in_a_path_is_redacted_in_both_logs(stack):
    leaked = "lks_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    second = "lkr_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    pending = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    token = stack.token()
    assert requests.get(stack.url(f"/api/v1/clients/{leaked}"), headers=stack.bearer(token)).status_code == 404
    assert requests.get(stack.url(f"/api/v1/clients/{token}/logo")).status_code == 404
    # Two in one path: nginx's log ends the path at the first (secret hygiene review, session 29: it kept the second),
    # and one after a percent-encoded newline (nginx's $uri is decoded; review of the change, session 29).
    assert requests.get(stack.url(f"/oauth2/x/{second}/{leaked}")).status_code == 404
    assert requests.get(stack.url(f"/oauth2/y/%0A{leaked}")).status_code == 404
    # A pending authorization request's id, which the database holds only as a hash.
    assert requests.post(stack.url(f"/api/v1/authorization-requests/{pending}/reject")).status_code >= 400
    time.sleep(0.2)
    access = (stack.state / "nginx" / "logs" / "access.log").read_text()
    worker = stack.log_path.read_text()
    for log in (access, worker):
        assert leaked not in log and leaked[4:24] not in log and second[4:24] not in log and pending[:20] not in log
        assert token.split(".")[1] not in log
        assert "/api/v1/authorization-requests/[redacted]/reject" in log
    assert "/api/v1/clients/[redacted lks]" in worker and "/api/v1/clients/[redacted JWT]/logo" in worker
    assert "/api/v1/clients/[redacted]..." in access and "/oauth2/x/[redacted]..." in access


def test_refusals_past_a_rate_limit_leave_no_request_line_in_nginx_error_log(limited_stack):
    """nginx's error lines carry the whole request line, query string included: a 429's must not be logged
    (secret hygiene review, session 29: an id_token_hint and a live request_uri were found there)."""
    stack = limited_stack
    hint = "eyJhbGciOiJFUzI1NiJ9." + base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=") + ".c2ln"
    import concurrent.futures
    def attempt(_):
        return requests.get(stack.url("/oauth2/logout"), params={"id_token_hint": hint}, allow_redirects=False).status_code
    with concurrent.futures.ThreadPoolExecutor(max_workers=30) as pool:
        statuses = list(pool.map(attempt, range(90)))
    assert 429 in statuses, statuses
    assert hint.split(".")[1] not in stack.logs()
    time.sleep(2.5)  # let the bucket refill for the tests that follow


def test_sigterm_stops_the_pool_gracefully(tmp_path):
    db = tmp_path / "g.db"
    run_cli(db, "init", "--issuer", "http://127.0.0.1:1")
    sock = tmp_path / "g.sock"
    proc = subprocess.Popen([BIN, "serve", "--listen", f"unix:{sock}", "--workers", "3", "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.05)
    assert sock.exists()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert not sock.exists()
    lines = [json.loads(line) for line in proc.stderr.read().decode().splitlines()]
    assert [line["message"] for line in lines] == ["latchkey serving", "latchkey stopped"]


def test_serve_refuses_an_unknown_log_level(tmp_path):
    db = tmp_path / "l.db"
    run_cli(db, "init", "--issuer", "http://127.0.0.1:1")
    proc = subprocess.run([BIN, "serve", "--listen", f"unix:{tmp_path / 'l.sock'}", "--db", str(db), "--log-level", "loud"],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0 and "--log-level must be one of debug, info, warn, error, off" in proc.stderr
    assert not (tmp_path / "l.sock").exists()


@contextlib.contextmanager
def serving_over_tcp(db, *args, source, env=None):
    """`latchkey serve` on 127.0.0.1 (a free port) with `args`, once a FastCGI request from `source` is answered;
    stopped (SIGTERM) at the end. Yields (process, port)."""
    port = free_port()
    proc = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--workers", "1", "--db", str(db), *args],
                            env=env or dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            try:
                if fastcgi_get("127.0.0.1", port, source=source):
                    break
            except OSError:
                time.sleep(0.05)
        yield proc, port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def json_lines(proc):
    return [json.loads(line) for line in proc.stderr.read().decode().splitlines() if line.startswith("{")]


def test_serve_over_tcp_answers_only_the_peers_allow_from_names(tmp_path):
    """FastCGI carries no authentication: a node on TCP closes, unread, a connection from any peer --allow-from does
    not name (every 127.x address is this host's loopback: two peers to tell apart)."""
    db = tmp_path / "t.db"
    run_cli(db, "init", "--issuer", "http://127.0.0.1:1")
    with serving_over_tcp(db, "--allow-from", "127.0.0.2, 10.9.0.0/16", source="127.0.0.2") as (proc, port):
        answer = fastcgi_get("127.0.0.1", port, source="127.0.0.2")
        assert answer.startswith(b"Status: 200") and answer.endswith(b'{"status":"ok"}'), answer
        assert fastcgi_get("127.0.0.1", port, source="127.0.0.1") == b""
        assert fastcgi_get("127.0.0.1", port, path="/metrics", source="127.0.0.3") == b""
        metrics = fastcgi_get("127.0.0.1", port, path="/metrics", source="127.0.0.2").decode()
        assert "\nlatchkey_accept_refused_total 2\n" in metrics, metrics
    assert proc.returncode == 0
    lines = json_lines(proc)
    serving = next(line for line in lines if line["message"] == "latchkey serving")
    assert serving["allow_from"] == "127.0.0.2,10.9.0.0/16"
    assert not any(line["level"] == "warn" for line in lines)


def test_serve_over_tcp_without_allow_from_warns_and_a_bad_list_is_refused(tmp_path):
    db = tmp_path / "w.db"
    run_cli(db, "init", "--issuer", "http://127.0.0.1:1")
    for args, says in [(["--listen", f"127.0.0.1:{free_port()}", "--allow-from", "10.0.0.1,nginx.internal"], "--allow-from must be IP addresses"),
                       (["--listen", f"127.0.0.1:{free_port()}", "--allow-from", "10.0.0.1/33"], "--allow-from must be IP addresses"),
                       (["--listen", f"unix:{tmp_path / 'w.sock'}", "--allow-from", "10.0.0.1"], "--allow-from applies to a TCP listener")]:
        proc = subprocess.run([BIN, "serve", "--db", str(db), *args], capture_output=True, text=True, timeout=20)
        assert proc.returncode != 0 and says in proc.stderr, (args, proc.stderr)
    # libfcgi's own variable is honoured (its comma-separated IPv4 list).
    with serving_over_tcp(db, source="127.0.0.5", env=dict(os.environ, FCGI_WEB_SERVER_ADDRS="127.0.0.5")) as (_, port):
        assert fastcgi_get("127.0.0.1", port, source="127.0.0.1") == b""
    # Without a list a TCP node serves anyone who reaches the port, and says so at start.
    bare = {k: v for k, v in os.environ.items() if k not in ("FCGI_WEB_SERVER_ADDRS", "LATCHKEY_ALLOW_FROM")}
    with serving_over_tcp(db, source="127.0.0.7", env=bare) as (proc, port):
        assert fastcgi_get("127.0.0.1", port, source="127.0.0.7").startswith(b"Status: 200")
    assert any(line["level"] == "warn" and "--allow-from" in line["message"] for line in json_lines(proc))


def test_serve_refuses_a_backchannel_allow_list_that_is_not_networks(tmp_path):
    assert_serve_refuses(tmp_path, "LATCHKEY_BACKCHANNEL_ALLOW", "10.0.0.0/8,rp.internal", "LATCHKEY_BACKCHANNEL_ALLOW must be IP addresses or networks")


def test_cli_contract(tmp_path):
    db = tmp_path / "c.db"
    out = run_cli(db, "init", "--issuer", "https://auth.example.com", "--org", "Acme", "--client-limit", "5")
    init = json.loads(out.stdout)
    assert set(init) == {"organization_id", "client_id", "client_secret"}
    assert init["client_secret"].startswith("lks_")
    again = run_cli(db, "init", "--issuer", "https://auth.example.com", check=False)
    assert again.returncode == 1 and "lks_" not in again.stdout + again.stderr
    assert json.loads(run_cli(db, "migrate").stdout)["schema_version"] >= 1
    org = json.loads(run_cli(db, "org", "create", "Second").stdout)
    assert org["organization_id"] != init["organization_id"]
    user = json.loads(run_cli(db, "user", "add", "bob", "--password-stdin", stdin="long-enough-password\n").stdout)
    assert user["user_id"]
    dup = run_cli(db, "user", "add", "bob", "--password-stdin", stdin="long-enough-password\n", check=False)
    assert dup.returncode == 1
    assert run_cli(db, "frobnicate", check=False).returncode == 2
    assert run_cli(db, "init", "--issuer", "ftp://x", check=False).returncode in (1, 2)
    backup = tmp_path / "backup.db"
    # Written for its owner alone, whatever the caller's umask (it holds password and secret hashes).
    caller_umask = os.umask(0o022)
    try:
        assert json.loads(run_cli(db, "backup", str(backup)).stdout)["backup"] == str(backup)
    finally:
        os.umask(caller_umask)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    # The secret is stored as a keyed hash, never in clear.
    assert init["client_secret"].encode() not in db.read_bytes() + backup.read_bytes()


def test_a_schema_a_newer_latchkey_migrated_is_refused_and_a_backup_never_migrates(tmp_path):
    """A latchkey older than the database's schema refuses it on every command that opens the store, `migrate` and
    `serve` included: exit 1, both versions named, the file left as it was (upgrade review, session 30: `migrate`
    answered with the newer version and exit 0). `backup` copies the file as it is, whatever its schema, and never
    migrates it: one taken before an upgrade is of the schema before it."""
    import sqlite3

    def version(path, set_to=None):
        con = sqlite3.connect(path)
        try:
            if set_to is not None:
                con.execute(f"PRAGMA user_version = {set_to}")
                con.commit()
            return con.execute("PRAGMA user_version").fetchone()[0]
        finally:
            con.close()

    db = tmp_path / "c.db"
    run_cli(db, "init", "--issuer", "https://auth.example.com", "--org", "Acme")
    known = json.loads(run_cli(db, "migrate").stdout)["schema_version"]
    version(db, set_to=known - 1)
    before = tmp_path / "before.db"
    run_cli(db, "backup", str(before))
    assert version(db) == known - 1 and version(before) == known - 1
    version(db, set_to=known + 2)
    for args in (["migrate"], ["org", "create", "Second"], ["keys", "list"],
                 ["serve", "--listen", f"unix:{tmp_path}/s.sock", "--issuer", "https://auth.example.com"]):
        refused = run_cli(db, *args, check=False)
        assert refused.returncode == 1, (args, refused.stdout, refused.stderr)
        assert f"schema is version {known + 2}, newer than this latchkey's {known}" in refused.stderr, (args, refused.stderr)
    assert version(db) == known + 2
    assert not (tmp_path / "s.sock").exists()
    after = tmp_path / "after.db"
    run_cli(db, "backup", str(after))
    assert version(after) == known + 2


def test_kek_encrypts_private_keys_at_rest(tmp_path):
    kek = tmp_path / "kek"
    kek.write_bytes(os.urandom(32))
    db = tmp_path / "k.db"
    env = dict(os.environ, LATCHKEY_DB=str(db), LATCHKEY_KEK_FILE=str(kek))
    subprocess.run([BIN, "init", "--issuer", "http://127.0.0.1:1"], env=env, check=True, capture_output=True)
    keys = json.loads(subprocess.run([BIN, "keys", "list"], env=env, check=True, capture_output=True, text=True).stdout)["keys"]
    assert keys[0]["encrypted"] is True
    # Without the KEK the server refuses to start instead of serving unsigned.
    sock = tmp_path / "k.sock"
    proc = subprocess.run([BIN, "serve", "--listen", f"unix:{sock}", "--db", str(db)], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1
    assert "LATCHKEY_KEK_FILE" in proc.stderr
    # Another KEK (a mistyped --kek-file) changes no key: a key sealed under it would be current and unopenable everywhere.
    wrong = tmp_path / "wrong-kek"
    wrong.write_bytes(os.urandom(32))
    for command in (["keys", "rotate"], ["keys", "revoke", keys[0]["kid"]]):
        r = subprocess.run([BIN, *command, "--kek-file", str(wrong)], env=env, capture_output=True, text=True)
        assert r.returncode == 1 and "not the one they were sealed with" in r.stderr, (command, r.stderr)
    after = json.loads(subprocess.run([BIN, "keys", "list"], env=env, check=True, capture_output=True, text=True).stdout)["keys"]
    assert after == keys


def test_only_the_wrappers_import_c_modules():
    offenders = []
    for path in (ROOT / "Sources").rglob("*.swift"):
        target = path.relative_to(ROOT / "Sources").parts[0]
        for line in path.read_text().splitlines():
            m = re.match(r"\s*(?:@_implementationOnly |internal |public |package )?import (C[A-Z]\w*)", line)
            if m and (target, m.group(1)) not in {("FastCGI", "CFastCGI"), ("SQLite", "CSQLite"), ("Cryptography", "COpenSSL"), ("Imaging", "CGD"), ("Postgres", "CLibPQ"), ("HTTPClient", "CCurl")}:
                offenders.append(f"{path}: {line.strip()}")
    assert not offenders, offenders


def test_systemd_units_verify(tmp_path):
    analyze = subprocess.run(["which", "systemd-analyze"], capture_output=True)
    if analyze.returncode != 0:
        pytest.skip("systemd-analyze is not installed")
    for unit in ("latchkey.socket", "latchkey.service"):
        text = (ROOT / "systemd" / unit).read_text().replace("/usr/local/bin/latchkey", BIN)
        (tmp_path / unit).write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "latchkey.socket"), str(tmp_path / "latchkey.service")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    service = (ROOT / "systemd" / "latchkey.service").read_text()
    for directive in ("DynamicUser=yes", "ProtectSystem=strict", "StateDirectory=latchkey", "NoNewPrivileges=yes", "PrivateTmp=yes",
                      "Restart=on-failure"):
        assert directive in service


def test_nginx_production_config_is_valid(tmp_path):
    # The production file, as shipped, with a throwaway certificate and paths rewritten to the temp dir.
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    for f in (ROOT / "nginx").glob("latchkey*.conf"):
        text = f.read_text().replace("/etc/nginx/latchkey/", f"{conf_dir}/")
        text = text.replace("/etc/ssl/latchkey/fullchain.pem", str(tmp_path / "cert.pem"))
        text = text.replace("/etc/ssl/latchkey/privkey.pem", str(tmp_path / "key.pem"))
        text = text.replace("/var/log/nginx/latchkey.access.log", str(tmp_path / "access.log"))
        (conf_dir / f.name).write_text(text)
    main = tmp_path / "nginx.conf"
    main.write_text(f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; events {{}}\n"
                    f"http {{ include /etc/nginx/mime.types; client_body_temp_path {tmp_path}; include {conf_dir}/latchkey.conf; }}\n")
    r = subprocess.run(["nginx", "-t", "-c", str(main), "-p", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = (ROOT / "nginx" / "latchkey.conf").read_text()
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    # Port 80's redirect is the default server there (with Debian's default site also claiming it, nginx -t fails
    # rather than serving that site to plain-http callers), and TLS 1.2 takes forward-secret AEAD suites only.
    assert "listen 80 default_server;" in text and "listen [::]:80 default_server;" in text
    assert re.search(r"^\s*ssl_ciphers ECDHE-[^;]*;", text, re.M) and "-SHA:" not in text and "absolute_redirect off;" in text
    assert "limit_req_status 429;" in text
    assert "Strict-Transport-Security" in (ROOT / "nginx" / "latchkey-headers.conf").read_text()


def test_a_primary_cannot_lock_itself_out_and_the_operator_resets_it(stack):
    """SPEC 6.0: removing the primary's client_credentials grant or a management scope is 409;
    `latchkey org reset-primary` prints a new secret that works (the old one ends)."""
    org = json.loads(run_cli(stack, "org", "create", "Lockout").stdout)
    basic = (org["client_id"], org["client_secret"])
    token = requests.post(stack.url("/oauth2/token"), data={"grant_type": "client_credentials"}, auth=basic).json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    r = requests.patch(stack.url(f"/api/v1/clients/{org['client_id']}"), headers=h,
                       json={"grant_types": ["authorization_code"], "redirect_uris": ["https://x.example/cb"]})
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "primary_lockout"
    assert requests.patch(stack.url(f"/api/v1/clients/{org['client_id']}"), headers=h, json={"scope": "clients:read"}).status_code == 409
    # What the primary may set on itself that stops a secret working as printed (Basic, no DPoP proof): the reset undoes it.
    assert requests.patch(stack.url(f"/api/v1/clients/{org['client_id']}"), headers=h,
                          json={"dpop_bound_access_tokens": True, "token_endpoint_auth_method": "client_secret_post"}).status_code == 200
    reset = json.loads(run_cli(stack, "org", "reset-primary", org["organization_id"]).stdout)
    assert set(reset) == {"organization_id", "client_id", "client_secret"} and reset["client_id"] == org["client_id"]
    assert requests.post(stack.url("/oauth2/token"), data={"grant_type": "client_credentials"}, auth=basic).status_code == 401
    fresh = requests.post(stack.url("/oauth2/token"), data={"grant_type": "client_credentials"}, auth=(reset["client_id"], reset["client_secret"]))
    assert fresh.status_code == 200
    assert "clients:write" in fresh.json()["scope"].split()
    unknown = run_cli(stack, "org", "reset-primary", "org-nope", check=False)
    assert unknown.returncode == 1 and "lks_" not in unknown.stdout + unknown.stderr


@pytest.mark.parametrize("args", [["keys", "list"], ["org", "create", "X"], ["keys", "rotate"], ["org", "set", "org-x", "--open-registration", "on"]])
def test_cli_commands_on_a_missing_database_say_so_and_create_nothing(tmp_path, args):
    """Only `init` and `migrate` make a database (SPEC audit, session 9: `keys list` made an empty one and printed no keys)."""
    db = tmp_path / "missing" / "latchkey.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATCHKEY_")}
    r = subprocess.run([BIN, *args, "--db", str(db)], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "latchkey init" in r.stderr, (r.returncode, r.stdout, r.stderr)
    assert not db.exists()


def test_org_create_with_a_client_limit_out_of_range_is_a_usage_error(tmp_path):
    """Exit code 2, as for any usage error, before the database is touched (SPEC audit, session 9)."""
    db = tmp_path / "latchkey.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATCHKEY_")}
    for limit in ("0", "100001"):
        r = subprocess.run([BIN, "org", "create", "X", "--client-limit", limit, "--db", str(db)], capture_output=True, text=True, env=env)
        assert r.returncode == 2 and "client-limit" in r.stderr, (r.returncode, r.stderr)
    assert not db.exists()

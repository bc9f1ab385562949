"""HTTP/2 through nginx (`listen 443 ssl http2`, what every browser
negotiates with a TLS deployment), driven by curl's HTTP/2 client on the
https stack: nginx hands the workers the same FastCGI request whichever
protocol the caller spoke. A token is issued, a DPoP proof's `htu` matches
the URL the caller used (the host comes from `:authority`, not a `Host`
header), and a session cookie sent as separate `cookie` fields (HTTP/2
may split it, RFC 9113 §8.2.3) still signs the browser in."""
import json
import subprocess

import pytest
import requests
from joserfc.jwk import ECKey

from conftest import HTTPS
from test_dpop import proof

# The https stack alone: HTTP/2 is negotiated over TLS (ALPN).
pytestmark = pytest.mark.skipif(not HTTPS, reason="LATCHKEY_E2E_HTTPS=off: no https stack")


def curl_h2(stack, path, *args):
    """curl over HTTP/2 only (no fallback to 1.1): the protocol version, the status and the body."""
    out = subprocess.run(["curl", "--http2", "--silent", "--show-error", "--cacert", str(stack.state / "tls" / "ca.pem"),
                          "--write-out", "\n%{http_version} %{http_code}", *args, stack.url(path)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    body, _, status = out.rpartition("\n")
    version, code = status.split()
    return version, int(code), body


def test_a_token_is_issued_over_http2(https_stack):
    stack = https_stack
    version, code, body = curl_h2(stack, "/oauth2/token", "--user", f"{stack.client_id}:{stack.client_secret}",
                                  "--data", "grant_type=client_credentials")
    assert (version, code) == ("2", 200), body
    assert json.loads(body)["token_type"] == "Bearer"


def test_rfc9449_4_3_a_dpop_proofs_htu_matches_over_http2(https_stack):
    stack = https_stack
    key = ECKey.generate_key("P-256")
    url = stack.url("/oauth2/token")
    version, code, body = curl_h2(stack, "/oauth2/token", "--user", f"{stack.client_id}:{stack.client_secret}",
                                  "--data", "grant_type=client_credentials", "--header", f"DPoP: {proof(key, 'POST', url)}")
    assert (version, code) == ("2", 200), body
    assert json.loads(body)["token_type"] == "DPoP"
    # A proof for another host is still refused: the check is made, not skipped, over HTTP/2.
    other = url.replace("localhost", "127.0.0.1")
    version, code, body = curl_h2(stack, "/oauth2/token", "--user", f"{stack.client_id}:{stack.client_secret}",
                                  "--data", "grant_type=client_credentials", "--header", f"DPoP: {proof(key, 'POST', other)}")
    assert (version, code) == ("2", 400) and json.loads(body)["error"] == "invalid_dpop_proof", body


def test_a_session_cookie_in_a_separate_cookie_field_signs_in(https_stack):
    stack = https_stack
    http = requests.Session()
    assert http.post(stack.url("/api/v1/session"), json={"username": "demo", "password": stack.demo_password}).status_code == 204
    name = stack.cookie("lk_session")
    session = http.cookies.get(name)
    fields = ["--header", "cookie: unrelated=1", "--header", f"cookie: {name}={session}"]
    version, code, body = curl_h2(stack, "/api/v1/session", *fields)
    assert (version, code) == ("2", 200), body
    # Without it, the same request is not signed in: the 200 above came from the second field.
    version, code, _ = curl_h2(stack, "/api/v1/session", "--header", "cookie: unrelated=1")
    assert (version, code) == ("2", 401)

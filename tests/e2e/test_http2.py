"""HTTP/2 through nginx (`listen 443 ssl http2`, what every browser
negotiates with a TLS deployment), driven by curl's HTTP/2 client on the
https stack: nginx hands the workers the same FastCGI request whichever
protocol the caller spoke. A token is issued, a DPoP proof's `htu` matches
the URL the caller used (the host comes from `:authority`, not a `Host`
header), and a session cookie sent as separate `cookie` fields (HTTP/2
may split it, RFC 9113 §8.2.3) still signs the browser in."""
import json
import socket
import ssl
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


def handshake(stack, ciphers):
    """A TLS 1.2 handshake offering only `ciphers` (OpenSSL names): the suite agreed, or None when refused."""
    context = ssl.create_default_context(cafile=str(stack.state / "tls" / "ca.pem"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    try:
        with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.cipher()[0]
    except ssl.SSLError:
        return None


def test_tls12_offers_forward_secret_aead_suites_only(https_stack):
    """nginx/latchkey.conf's ssl_ciphers (operator review): nginx's default also took CBC with SHA-1."""
    assert handshake(https_stack, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256") is not None
    for legacy in ("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384",
                   "AES128-GCM-SHA256:AES256-SHA", "ECDHE-ECDSA-CAMELLIA128-SHA256:ECDHE-ECDSA-AES128-CCM8"):
        assert handshake(https_stack, legacy) is None, legacy


def test_the_local_ca_vouches_for_this_machine_only_and_keeps_no_key(https_stack):
    """scripts/local-ca: the CA a developer trusts is name-constrained to localhost and loopback addresses,
    and its private key is gone once the certificate is signed (a copy of the state directory forges nothing)."""
    tls = https_stack.state / "tls"
    text = subprocess.run(["openssl", "x509", "-in", str(tls / "ca.pem"), "-noout", "-ext", "nameConstraints"],
                          capture_output=True, text=True, check=True).stdout
    assert "critical" in text and "DNS:localhost" in text and "IP:127.0.0.0/255.0.0.0" in text
    assert not (tls / "ca-key.pem").exists()


def test_nginx_redirects_name_a_path_not_the_callers_host(https_stack):
    """absolute_redirect off: a Host header nginx did not choose is not echoed into Location."""
    r = requests.get(https_stack.url("/device?user_code=X"), headers={"Host": "evil.example"}, allow_redirects=False,
                     verify=str(https_stack.state / "tls" / "ca.pem"))
    assert r.status_code == 301 and r.headers["Location"] == "/device/?user_code=X"

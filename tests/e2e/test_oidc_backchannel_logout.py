"""Back-Channel Logout 1.0 through nginx, as the OpenID Foundation's
Back-Channel OP plan checks it (docs/conformance-modules.md §4): a client
registered dynamically with a backchannel_logout_uri (a small receiver this
test starts) signs a user in with authlib's code flow; RP-initiated logout
ends the session and the worker's background queue POSTs a logout token,
which joserfc verifies against the JWKS. Also: a revoked connection tells
the client, a failed delivery is retried, and a logout URI on a private
address is never posted to unless the operator names its network (the
shared stacks name loopback, where these receivers listen)."""
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from conftest import Stack, free_port
from test_user_flow import Browser, oauth_client, start

EVENT = "http://schemas.openid.net/event/backchannel-logout"


class BackchannelReceiver:
    """The RP's backchannel_logout_uri: records each POST; answers with the queued statuses, then 200."""

    def __init__(self):
        self.port = free_port()
        self.posts = []
        self.statuses = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                outer.posts.append((self.path, self.headers.get("Content-Type"), parse_qs(body, keep_blank_values=True), time.monotonic()))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def uri(self):
        return f"http://127.0.0.1:{self.port}/backchannel_logout"

    def wait_for(self, count, seconds=15):
        deadline = time.monotonic() + seconds
        while len(self.posts) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(self.posts) >= count, f"{len(self.posts)} logout token(s) received, {count} expected"
        return self.posts[count - 1]


@pytest.fixture
def bcl():
    r = BackchannelReceiver()
    yield r
    r.server.shutdown()


def register(stack, bcl, after):
    """OIDC Registration with an initial access token, as the plan's dynamic client does."""
    redirect = f"http://127.0.0.1:{stack.port}/demo/callback"
    r = requests.post(stack.url("/oauth2/register"), headers=stack.bearer(), json={
        "client_name": "Back-channel RP", "redirect_uris": [redirect], "post_logout_redirect_uris": [after],
        "backchannel_logout_uri": bcl.uri, "backchannel_logout_session_required": True, "scope": "openid profile",
        "grant_types": ["authorization_code"], "id_token_signed_response_alg": "RS256"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["backchannel_logout_uri"] == bcl.uri and body["backchannel_logout_session_required"] is True
    return body["client_id"], body["client_secret"], redirect


def signed_in(stack, bcl):
    """A registered listening client the demo user signed into with authlib's code flow: its id, the person, the ID token's claims."""
    client_id, secret, redirect = register(stack, bcl, "https://rp.example/after")
    person = Browser(stack)
    client = oauth_client(stack, client_id, secret, redirect, scope="openid profile")
    url, _, verifier, _ = start(stack, client)
    token = client.fetch_token(stack.url("/oauth2/token"), authorization_response=person.authorize(url), code_verifier=verifier)
    id_claims = jwt.decode(token["id_token"], KeySet.import_key_set(requests.get(stack.url("/oauth2/jwks")).json())).claims
    return client_id, person, id_claims


def check_logout_token(stack, received, client_id, id_claims):
    """What oidcc-backchannel-rp-initiated-logout checks of the POST and its token."""
    path, content_type, form, _ = received
    assert path == "/backchannel_logout" and content_type.startswith("application/x-www-form-urlencoded")
    assert list(form) == ["logout_token"], "logout_token and nothing else"
    keys = KeySet.import_key_set(requests.get(stack.url("/oauth2/jwks")).json())
    token = jwt.decode(form["logout_token"][0], keys)  # the signature verifies
    assert token.header["typ"] == "logout+jwt" and token.header["alg"] == "RS256"
    claims = token.claims
    now = time.time()
    assert claims["iss"] == stack.base and claims["aud"] == client_id
    assert claims["iat"] <= now + 300 and claims["iat"] > now - 86_400 and claims["jti"]
    assert claims["events"] == {EVENT: {}}
    assert claims["sub"] == id_claims["sub"] and claims["sid"] == id_claims["sid"]
    assert "nonce" not in claims


def test_oidcc_backchannel_logout_discovery_endpoint_verification(stack):
    d = requests.get(stack.url("/.well-known/openid-configuration")).json()
    assert d["backchannel_logout_supported"] is True and d["backchannel_logout_session_supported"] is True
    assert d["end_session_endpoint"] == stack.url("/oauth2/logout")


def test_oidcc_backchannel_rp_initiated_logout(stack, bcl):
    after = "https://rp.example/signed-out"
    client_id, secret, redirect = register(stack, bcl, after)
    person = Browser(stack)
    client = oauth_client(stack, client_id, secret, redirect, scope="openid profile")
    url, _, verifier, _ = start(stack, client)
    token = client.fetch_token(stack.url("/oauth2/token"), authorization_response=person.authorize(url), code_verifier=verifier)
    keys = KeySet.import_key_set(requests.get(stack.url("/oauth2/jwks")).json())
    id_claims = jwt.decode(token["id_token"], keys).claims
    assert id_claims["sid"]
    r = person.http.get(stack.url("/oauth2/logout?") + urlencode({"id_token_hint": token["id_token"], "post_logout_redirect_uri": after,
                                                                   "state": "bcl-state"}), allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == after + "?state=bcl-state"
    check_logout_token(stack, bcl.wait_for(1), client_id, id_claims)
    # §2.7: the access token granted without offline_access ended with the session.
    assert requests.post(stack.url("/oauth2/introspect"), data={"token": token["access_token"]}, auth=(client_id, secret)).json() == {"active": False}
    # Then prompt=none must come back with an error: the session is over.
    again, _, _, _ = start(stack, client, prompt="none")
    location = person.authorize(again)
    assert parse_qs(urlparse(location).query)["error"] == ["login_required"]
    time.sleep(1.5)
    assert len(bcl.posts) == 1, "delivered once"


def test_revoking_the_connection_tells_the_client(stack, bcl):
    client_id, person, id_claims = signed_in(stack, bcl)
    r = person.http.delete(stack.url(f"/api/v1/me/connections/{client_id}"), headers={"X-CSRF-Token": person.http.cookies.get(stack.cookie("lk_csrf"))})
    assert r.status_code == 204, r.text
    check_logout_token(stack, bcl.wait_for(1), client_id, id_claims)
    assert person.http.get(stack.url("/api/v1/session")).status_code == 200, "the user's Latchkey session goes on"


def test_a_failed_delivery_is_retried_from_the_queue(stack, bcl):
    """The receiver answers 503 first: the token comes again after the first backoff step (10 s), from the queue."""
    client_id, person, id_claims = signed_in(stack, bcl)
    bcl.statuses.append(503)
    assert person.http.delete(stack.url("/api/v1/session"), headers={"X-CSRF-Token": person.http.cookies.get(stack.cookie("lk_csrf"))}).status_code == 204
    first = bcl.wait_for(1)
    second = bcl.wait_for(2, seconds=25)
    assert second[3] - first[3] >= 9, "retried after the backoff, not at once"
    check_logout_token(stack, second, client_id, id_claims)
    assert first[2]["logout_token"] != second[2]["logout_token"], "each attempt signs a fresh token (new jti, iat)"


class Tarpit:
    """A logout URI whose host takes the connection and the POST and never answers; records when each connection ended."""

    def __init__(self):
        import socket
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted, self.closed = [], []

        def serve():
            while True:
                try:
                    conn, _ = self.listener.accept()
                except OSError:
                    return
                self.accepted.append(time.monotonic())
                threading.Thread(target=hold, args=(conn,), daemon=True).start()

        def hold(conn):
            with conn:
                while conn.recv(4096):
                    pass
            self.closed.append(time.monotonic())

        threading.Thread(target=serve, daemon=True).start()

    @property
    def uri(self):
        return f"http://127.0.0.1:{self.port}/backchannel_logout"


def sign_into(stack, person, client_id, secret, redirect):
    client = oauth_client(stack, client_id, secret, redirect, scope="openid profile")
    url, _, verifier, _ = start(stack, client)
    client.fetch_token(stack.url("/oauth2/token"), authorization_response=person.authorize(url), code_verifier=verifier)


def test_a_receiver_that_never_answers_holds_up_no_other_delivery(stack, bcl):
    """Review, session 26: a delivery round waited for its slowest POST, so a receiver that never answers held every
    other client's logout tokens for its whole 5-s timeout, round after round. POSTs now end on their own: a second
    logout's token reaches the honest receiver while the silent one still holds its first connection open."""
    tarpit = Tarpit()
    silent_id, silent_secret, silent_redirect = register(stack, tarpit, "https://rp.example/after")
    try:
        honest_id, honest_secret, honest_redirect = register(stack, bcl, "https://rp.example/after")
        first = Browser(stack)
        sign_into(stack, first, silent_id, silent_secret, silent_redirect)
        sign_into(stack, first, honest_id, honest_secret, honest_redirect)
        second = Browser(stack)
        sign_into(stack, second, honest_id, honest_secret, honest_redirect)
        for person in (first, second):
            r = person.http.delete(stack.url("/api/v1/session"), headers={"X-CSRF-Token": person.http.cookies.get(stack.cookie("lk_csrf"))})
            assert r.status_code == 204
            bcl.wait_for(1 if person is first else 2)
        assert tarpit.accepted, "the silent receiver was posted to with the first logout"
        assert not tarpit.closed, "both tokens delivered while the silent POST was still in flight"
        deadline = time.monotonic() + 15
        while not tarpit.closed and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tarpit.closed, "the silent POST ended at its timeout"
    finally:
        # Its retries must not reach a later test's receiver on a reused port.
        requests.delete(stack.url(f"/api/v1/clients/{silent_id}"), headers=stack.bearer())
        tarpit.listener.close()


def test_a_logout_uri_on_a_non_public_address_is_never_posted_to(bcl, tmp_path):
    """SPEC 7.1: the server's own requests go to public addresses only, unless LATCHKEY_BACKCHANNEL_ALLOW names the
    network. A client's admin (or anyone, where registration is open) chose the URI: loopback here stands for the
    host's own services, the private network, the cloud metadata address."""
    s = Stack(tmp_path / "s", rate_limits="off", env={"LATCHKEY_BACKCHANNEL_ALLOW": ""}).start()
    try:
        client_id, person, _ = signed_in(s, bcl)
        assert person.http.delete(s.url("/api/v1/session"), headers={"X-CSRF-Token": person.http.cookies.get(s.cookie("lk_csrf"))}).status_code == 204
        deadline = time.monotonic() + 15
        while "the host's address is not public" not in s.log_path.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "the host's address is not public" in s.log_path.read_text(errors="replace")
        time.sleep(1.5)
        assert bcl.posts == [], "nothing reached the receiver on loopback"
    finally:
        s.stop()

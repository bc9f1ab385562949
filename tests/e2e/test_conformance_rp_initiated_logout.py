"""The OpenID Foundation's RP-Initiated OP plan (oidcc-rp-initiated-logout-
certification-test-plan: discovery, client_secret_basic, response_mode=default;
docs/conformance-modules.md §3), one test per module, named after it.

The shared flow (AbstractOIDCCRpInitiatedLogout): a client registered with
post_logout_redirect_uris=[<base>/post_logout_redirect]; a normal login (a
128-character state); the browser sent by GET to the end_session_endpoint with
id_token_hint, post_logout_redirect_uri and a random state, changed as each
module says; where a redirect back is expected, state must match exactly
(other query parameters WARN), and a following prompt=none request must come
back with an error that needs a user interface, with no code.

The modules that want "an error screen or a confirmation" and a screenshot are
checked over HTTP: no redirect (never to the registered URI, not even once the
user confirms on a confirmation page), and the page is an error or asks the
user. Those that must log the user out end with the session gone and
prompt=none answering login_required. The person is test_user_flow's Browser
(a requests.Session); a fresh client per test."""
import base64
import os
import secrets
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import requests
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from conftest import Stack
from test_conformance_form_post import (USER_INTERFACE_ERRORS, check_error, check_iss, check_userinfo, forms_of, random_alnum,
                                        warn)
from test_user_flow import Browser, verify_id_token

ENDPOINT_KEYS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "registration_endpoint",
                 "introspection_endpoint", "revocation_endpoint", "end_session_endpoint")


class RP:
    """The suite's client: its redirect URI <base>/callback and post_logout_redirect_uri <base>/post_logout_redirect."""

    def __init__(self, stack):
        base = f"http://127.0.0.1:{stack.port}/conformance/{secrets.token_hex(4)}"
        self.redirect, self.post_logout = base + "/callback", base + "/post_logout_redirect"
        self.bad_post_logout = base + "/bad_post_logout_redirect_uri"
        r = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
            "client_name": "Conformance logout RP", "redirect_uris": [self.redirect], "post_logout_redirect_uris": [self.post_logout],
            "grant_types": ["authorization_code"], "scope": "openid", "token_endpoint_auth_method": "client_secret_basic"})
        assert r.status_code == 201, r.text
        self.client_id, self.secret = r.json()["client_id"], r.json()["client_secret"]

    def authorization_url(self, stack, state, nonce, **extra):
        params = {"client_id": self.client_id, "redirect_uri": self.redirect, "scope": "openid", "state": state, "nonce": nonce,
                  "response_type": "code", **extra}
        return stack.url("/oauth2/authorize?") + urlencode(params)


def end_session_endpoint(stack):
    return requests.get(stack.url("/.well-known/openid-configuration")).json()["end_session_endpoint"]


def end_session_state():
    """CreateRandomEndSessionState: 50 to 80 RFC 6749 VSCHARs (%x20-7E) without '+' and ' ' (which the suite turns into
    '~'): quotes, '#', '%', '&', '<' and the like must come back intact."""
    chars = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "+")
    return "".join(secrets.choice(chars) for _ in range(50 + secrets.randbelow(31)))


def login(stack, rp):
    """The first, normal authorization (AbstractOIDCCServerTest): returns the person and the ID token."""
    person = Browser(stack)
    state, nonce = random_alnum(128), random_alnum(16)
    location = person.authorize(rp.authorization_url(stack, state, nonce))
    assert location.startswith(rp.redirect + "?"), location
    query = {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}
    check_iss(stack, query)
    assert "error" not in query and query["state"] == state
    r = requests.post(stack.url("/oauth2/token"), data={"grant_type": "authorization_code", "code": query["code"],
                                                        "redirect_uri": rp.redirect}, auth=(rp.client_id, rp.secret))
    assert r.status_code == 200, r.text
    tokens = r.json()
    claims = verify_id_token(stack, tokens["id_token"], rp.client_id, nonce, tokens["access_token"])
    check_userinfo(requests.get(stack.url("/oauth2/userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"}),
                   claims["sub"])
    assert person.http.get(stack.url("/api/v1/session")).status_code == 200
    return person, tokens["id_token"]


def end_session(stack, person, params):
    """The browser sent by GET to the end_session_endpoint (BuildRedirectToEndSessionEndpoint)."""
    url = end_session_endpoint(stack)
    return person.http.get(url + ("?" + urlencode(params) if params else ""), allow_redirects=False)


def post_logout_redirect(r, rp):
    """The OP sent the browser to the registered post_logout_redirect_uri: returns the query it carries."""
    assert 300 <= r.status_code < 400, f"no redirect to the post_logout_redirect_uri: {r.status_code} {r.text[:300]}"
    location = urljoin(r.url, r.headers["Location"])
    assert location.split("?", 1)[0] == rp.post_logout, location
    return parse_qs(urlparse(location).query, keep_blank_values=True)


def check_logged_out(stack, person, rp):
    """The second authorization, prompt=none: an error needing a user interface, state back, no code."""
    state = random_alnum(128)
    location = person.authorize(rp.authorization_url(stack, state, random_alnum(16), prompt="none"))
    assert isinstance(location, str) and location.startswith(rp.redirect + "?"), f"prompt=none did not come back: {location}"
    fields = {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}
    error = check_error(stack, fields, state, USER_INTERFACE_ERRORS)
    assert error == "login_required", error
    assert person.http.get(stack.url("/api/v1/session")).status_code == 401


def confirmation_form(r):
    """The logout confirmation page's form, if this page is one: (action, fields)."""
    for form in forms_of(r.text) if r.headers.get("Content-Type", "").startswith("text/html") else []:
        if form["method"] == "post" and urlparse(form["action"] or "").path.endswith("/oauth2/logout"):
            return form["action"], [(name, value) for kind, name, value in form["inputs"] if name]
    return None


def confirm(stack, person, r):
    """The user presses the confirmation page's button (a form POST, as the browser sends it)."""
    action, fields = confirmation_form(r)
    return person.http.post(urljoin(r.url, action), data=fields, allow_redirects=False)


def assert_not_redirected(stack, person, rp, r):
    """"The OP must not redirect back and must either show an error screen or confirm with the user if they want to
    logout". The suite fails the module whenever the registered post_logout_redirect_uri is called: not now, and not
    after the user confirms either."""
    assert not 300 <= r.status_code < 400 and "Location" not in r.headers, f"redirected to {r.headers.get('Location')}"
    if confirmation_form(r) is None:
        assert r.status_code >= 400 and r.headers["Content-Type"].startswith("text/html"), "an error screen"
        return "error"
    assert person.http.get(stack.url("/api/v1/session")).status_code == 200, "asking the user, the OP has not logged them out yet"
    answered = confirm(stack, person, r)
    location = answered.headers.get("Location", "")
    assert not location.startswith(rp.post_logout) and not location.startswith(rp.bad_post_logout), \
        "the OP called the registered post_logout_redirect_uri after the user confirmed"
    return "confirmation"


def assert_logged_out_page(stack, person, rp, r):
    """"…the OP must log the user out, a screenshot of the 'you are logged out' screen should be uploaded", without a
    redirect to the post_logout_redirect_uri; then the user is logged out."""
    assert not 300 <= r.status_code < 400 and "Location" not in r.headers, f"redirected to {r.headers.get('Location')}"
    if confirmation_form(r) is not None:  # the OP asks first (RP-Initiated Logout §2); the user confirms
        r = confirm(stack, person, r)
        assert not 300 <= r.status_code < 400, f"redirected to {r.headers.get('Location')} after the confirmation"
    assert r.status_code == 200 and "You are signed out" in r.text, "the 'you are logged out' screen"
    check_logged_out(stack, person, rp)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- The modules ---------------------------------------------------------------------------------------


def check_discovery(doc, issuer):
    """CheckDiscEndSessionEndpoint and CheckDiscEndpointAllEndpointsAreHttps (every URL-valued endpoint https)."""
    end_session = doc.get("end_session_endpoint")
    assert isinstance(end_session, str), "end_session_endpoint is missing"
    parsed = urlparse(end_session)
    assert parsed.scheme == "https" and parsed.netloc and not parsed.fragment, f"end_session_endpoint is not a valid https URL: {end_session}"
    endpoints = {k: v for k, v in doc.items() if k.endswith("_endpoint") or k in ENDPOINT_KEYS}
    assert {k: v for k, v in endpoints.items() if urlparse(str(v)).scheme != "https"} == {}, "every endpoint must be https"
    assert doc["issuer"] == issuer


def test_oidcc_rp_initiated_logout_discovery_endpoint_verification(stack):
    """oidcc-rp-initiated-logout-discovery-endpoint-verification: "This test ensures that the server's configurations
    contains end_session_endpoint." It must be a valid https URL, and every endpoint must be https.

    The shared stack's issuer is http on loopback (there is no TLS in front of it here), so its document is checked
    to name every endpoint under the issuer's own origin; the https requirement itself is checked on a second stack
    whose issuer is https (TLS terminated in front of nginx, as deployed; LATCHKEY_ISSUER for serve)."""
    doc = requests.get(stack.url("/.well-known/openid-configuration")).json()
    assert doc["end_session_endpoint"] == stack.url("/oauth2/logout")
    assert [k for k in ENDPOINT_KEYS if not str(doc.get(k, stack.base)).startswith(stack.base + "/")] == []
    issuer = "https://op.example"
    with tempfile.TemporaryDirectory(prefix="latchkey-e2e-") as tmp:
        tls_fronted = Stack(Path(tmp), rate_limits="off", store=stack.store)
        previous = os.environ.get("LATCHKEY_ISSUER")
        try:
            os.environ["LATCHKEY_ISSUER"] = issuer  # read by `serve` when the nodes start
            try:
                tls_fronted.start()
            finally:
                if previous is None:
                    os.environ.pop("LATCHKEY_ISSUER", None)
                else:
                    os.environ["LATCHKEY_ISSUER"] = previous
            r = requests.get(tls_fronted.url("/.well-known/openid-configuration"))
            assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
            check_discovery(r.json(), issuer)
        finally:
            tls_fronted.stop()


def test_oidcc_rp_initiated_logout(stack):
    """oidcc-rp-initiated-logout: "…validates the OP correctly sends the user to the post_logout_redirect_uri, then
    tries another authentication with prompt=none which must return an error (as the user has been logged out)." """
    rp = RP(stack)
    person, id_token = login(stack, rp)
    state = end_session_state()
    r = end_session(stack, person, {"id_token_hint": id_token, "post_logout_redirect_uri": rp.post_logout, "state": state})
    query = post_logout_redirect(r, rp)
    assert query.get("state") == [state], "CheckPostLogoutState"
    if set(query) - {"state"}:
        warn(f"CheckForUnexpectedParametersInPostLogoutRedirect: {sorted(query)}")
    check_logged_out(stack, person, rp)


def test_oidcc_rp_initiated_logout_bad_post_logout_redirect_uri(stack):
    """oidcc-rp-initiated-logout-bad-post-logout-redirect-uri: post_logout_redirect_uri=<base>/bad_post_logout_redirect_uri,
    not registered. "The OP must not redirect back and must either show an error screen or confirm with the user if they
    want to logout"; a redirect to the registered URI is a FAIL."""
    rp = RP(stack)
    person, id_token = login(stack, rp)
    r = end_session(stack, person, {"id_token_hint": id_token, "post_logout_redirect_uri": rp.bad_post_logout,
                                    "state": end_session_state()})
    assert_not_redirected(stack, person, rp, r)


def test_oidcc_rp_initiated_logout_modified_id_token_hint(stack):
    """oidcc-rp-initiated-logout-modified-id-token-hint: the id_token_hint "changed to alg:none" (ChangeIdTokenToAlgNone:
    header {"alg": "none"}, the signature removed). "The OP must not redirect back and must either show an error screen
    or confirm with the user if they want to logout"."""
    rp = RP(stack)
    person, id_token = login(stack, rp)
    modified = b64url(b'{"alg": "none"}') + "." + id_token.split(".")[1] + "."
    r = end_session(stack, person, {"id_token_hint": modified, "post_logout_redirect_uri": rp.post_logout,
                                    "state": end_session_state()})
    assert_not_redirected(stack, person, rp, r)


def test_oidcc_rp_initiated_logout_no_id_token_hint(stack):
    """oidcc-rp-initiated-logout-no-id-token-hint: "…with a post_logout_redirect_uri but no id_token_hint. The OP must
    not redirect back and must either show an error screen or confirm with the user if they want to logout"."""
    rp = RP(stack)
    person, _ = login(stack, rp)
    r = end_session(stack, person, {"post_logout_redirect_uri": rp.post_logout, "state": end_session_state()})
    assert_not_redirected(stack, person, rp, r)


def test_oidcc_rp_initiated_logout_no_params(stack):
    """oidcc-rp-initiated-logout-no-params: "…sends the user to the end_session_endpoint with no parameters - the OP
    must log the user out, a screenshot of the 'you are logged out' screen should be uploaded." Redirecting to the
    registered URI is a FAIL."""
    rp = RP(stack)
    person, _ = login(stack, rp)
    assert_logged_out_page(stack, person, rp, end_session(stack, person, {}))


def test_oidcc_rp_initiated_logout_no_post_logout_redirect_uri(stack):
    """oidcc-rp-initiated-logout-no-post-logout-redirect-uri: id_token_hint and state only. The OP must log the user out
    and show the 'you are logged out' screen; no redirect."""
    rp = RP(stack)
    person, id_token = login(stack, rp)
    assert_logged_out_page(stack, person, rp, end_session(stack, person, {"id_token_hint": id_token, "state": end_session_state()}))


def test_oidcc_rp_initiated_logout_no_state(stack):
    """oidcc-rp-initiated-logout-no-state: id_token_hint and post_logout_redirect_uri, no state. "It validates the OP
    correctly sends the user to the post_logout_redirect_uri with no state, then tries another authentication with
    prompt=none which must return an error"."""
    rp = RP(stack)
    person, id_token = login(stack, rp)
    r = end_session(stack, person, {"id_token_hint": id_token, "post_logout_redirect_uri": rp.post_logout})
    query = post_logout_redirect(r, rp)
    assert "state" not in query, "CheckNoPostLogoutState"
    if query:
        warn(f"CheckForUnexpectedParametersInPostLogoutRedirect: {sorted(query)}")
    check_logged_out(stack, person, rp)


def test_oidcc_rp_initiated_logout_only_state(stack):
    """oidcc-rp-initiated-logout-only-state: only state. The OP must log the user out and show the 'you are logged out'
    screen; no redirect."""
    rp = RP(stack)
    person, _ = login(stack, rp)
    assert_logged_out_page(stack, person, rp, end_session(stack, person, {"state": end_session_state()}))


def test_oidcc_rp_initiated_logout_query_added_to_post_logout_redirect_uri(stack):
    """oidcc-rp-initiated-logout-query-added-to-post-logout-redirect-uri: the registered post_logout_redirect_uri with
    ?foo=bar added. "The OP must not redirect back and must either show an error screen or confirm with the user"."""
    rp = RP(stack)
    person, id_token = login(stack, rp)
    r = end_session(stack, person, {"id_token_hint": id_token, "post_logout_redirect_uri": rp.post_logout + "?foo=bar",
                                    "state": end_session_state()})
    assert_not_redirected(stack, person, rp, r)


def test_oidcc_rp_initiated_logout_bad_id_token_hint(stack):
    """oidcc-rp-initiated-logout-bad-id-token-hint: "…with an id_token_hint signed by the test suite. The OP must not
    redirect back and must either show an error screen or confirm with the user if they want to logout".
    GenerateFakeIdTokenClaims: iss=client_id, sub=SubjectID, aud=issuer, nonce, iat, exp (+5 min). SignFakeIdToken signs
    with the client's JWKS, which for a client_secret_basic client without one is made from the client secret (HS256);
    both that and an RS256 key of the suite's own are tried."""
    rp = RP(stack)
    person, _ = login(stack, rp)
    now = int(time.time())
    claims = {"iss": rp.client_id, "sub": "SubjectID", "aud": stack.base, "nonce": "flibble", "iat": now, "exp": now + 300}
    rsa = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8)})
    forged = [jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(rp.secret)),
              jwt.encode({"alg": "RS256", "kid": rsa.kid}, claims, rsa)]
    for hint in forged:
        r = end_session(stack, person, {"id_token_hint": hint, "post_logout_redirect_uri": rp.post_logout, "state": end_session_state()})
        outcome = assert_not_redirected(stack, person, rp, r)
        if outcome == "confirmation":  # the user confirmed and is signed out: sign in again for the next hint
            person, _ = login(stack, rp)

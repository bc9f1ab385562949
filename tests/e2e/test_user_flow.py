"""The authorization code flow end to end through nginx, driven by authlib's
OAuth2 client with PKCE, ID tokens checked with joserfc; refresh rotation,
reuse detection, code replay, parallel redemption, redirect URI variants,
prompt=none and CSRF."""
import concurrent.futures
import hashlib
import base64
import secrets
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

SCOPE = "openid profile email offline_access"


def make_app(stack, public=False, scope=SCOPE, redirect=None):
    redirect = redirect or f"http://127.0.0.1:{stack.port}/demo/callback"
    body = {"client_name": "E2E web app", "client_uri": "https://app.example", "redirect_uris": [redirect],
            "grant_types": ["authorization_code", "refresh_token"], "scope": scope,
            "token_endpoint_auth_method": "none" if public else "client_secret_basic"}
    r = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json=body)
    assert r.status_code == 201, r.text
    return r.json()["client_id"], r.json().get("client_secret"), redirect


class Browser:
    """A person's browser: follows Latchkey's redirects, signs in, approves."""

    def __init__(self, stack):
        self.stack = stack
        self.http = requests.Session()

    def login(self):
        r = self.http.post(self.stack.url("/api/v1/session"), json={"username": "demo", "password": self.stack.demo_password})
        assert r.status_code == 204, r.text

    def go(self, url):
        r = self.http.get(url, allow_redirects=False)
        assert r.status_code in (303, 302, 400), r.text
        return r

    def authorize(self, url, approve=True, scope=None, csrf=True, remember=True):
        """Returns the final redirect to the client (or the error response)."""
        r = self.go(url)
        if r.status_code == 400:
            return r
        location = r.headers["Location"]
        if location.startswith("/login/"):
            request_id = parse_qs(urlparse(location).query)["request"][0]
            self.login()
            location = self.go(self.stack.url("/oauth2/authorize/continue?request=" + request_id)).headers["Location"]
        if location.startswith("/consent/"):
            request_id = parse_qs(urlparse(location).query)["request"][0]
            details = self.http.get(self.stack.url(f"/api/v1/authorization-requests/{request_id}")).json()
            headers = {"X-CSRF-Token": self.http.cookies.get(self.stack.cookie("lk_csrf"))} if csrf else {}
            granted = scope or [s["name"] for s in details["scopes"]]
            path = "accept" if approve else "reject"
            answer = self.http.post(self.stack.url(f"/api/v1/authorization-requests/{request_id}/{path}"), headers=headers,
                                    json={"scope": granted, "remember": remember} if approve else {})
            if answer.status_code != 200:
                return answer
            location = answer.json()["redirect_to"]
        return location


def oauth_client(stack, client_id, secret, redirect, scope=SCOPE):
    return OAuth2Session(client_id, secret, scope=scope, redirect_uri=redirect, code_challenge_method="S256",
                         token_endpoint_auth_method="client_secret_basic" if secret else "none")


def start(stack, client, **extra):
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = client.create_authorization_url(stack.url("/oauth2/authorize"), code_verifier=verifier, nonce=nonce, **extra)
    return url, state, verifier, nonce


def verify_id_token(stack, id_token, client_id, nonce, access_token):
    keys = KeySet.import_key_set(requests.get(stack.url("/oauth2/jwks")).json())
    decoded = jwt.decode(id_token, keys)
    registry = jwt.JWTClaimsRegistry(iss={"essential": True, "value": stack.base}, aud={"essential": True, "value": client_id},
                                     nonce={"essential": True, "value": nonce}, sub={"essential": True}, exp={"essential": True})
    registry.validate(decoded.claims)
    digest = hashlib.sha256(access_token.encode()).digest()
    assert decoded.claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    return decoded.claims


def test_authlib_code_flow_with_pkce_and_refresh_rotation(stack):
    client_id, secret, redirect = make_app(stack)
    client = oauth_client(stack, client_id, secret, redirect)
    url, state, verifier, nonce = start(stack, client)
    back = Browser(stack).authorize(url)
    params = parse_qs(urlparse(back).query)
    assert params["state"] == [state]
    assert params["iss"] == [stack.base]
    token = client.fetch_token(stack.url("/oauth2/token"), authorization_response=back, code_verifier=verifier)
    claims = verify_id_token(stack, token["id_token"], client_id, nonce, token["access_token"])
    assert claims["email"] == "demo@example.com" and claims["name"] == "Demo User"
    info = client.get(stack.url("/oauth2/userinfo")).json()
    assert info["sub"] == claims["sub"] and info["preferred_username"] == "demo"
    # Refresh rotates; the old refresh token, presented again, revokes the family.
    first_refresh = token["refresh_token"]
    rotated = client.refresh_token(stack.url("/oauth2/token"), refresh_token=first_refresh)
    assert rotated["refresh_token"] != first_refresh
    reuse = requests.post(stack.url("/oauth2/token"), data={"grant_type": "refresh_token", "refresh_token": first_refresh},
                          auth=(client_id, secret))
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    after = requests.post(stack.url("/oauth2/token"), data={"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]},
                          auth=(client_id, secret))
    assert after.json()["error"] == "invalid_grant"
    introspected = requests.post(stack.url("/oauth2/introspect"), data={"token": rotated["access_token"]}, auth=(client_id, secret))
    assert introspected.json() == {"active": False}


def test_public_client_flow(stack):
    client_id, _, redirect = make_app(stack, public=True)
    client = oauth_client(stack, client_id, None, redirect)
    url, state, verifier, nonce = start(stack, client)
    back = Browser(stack).authorize(url)
    token = client.fetch_token(stack.url("/oauth2/token"), authorization_response=back, code_verifier=verifier)
    verify_id_token(stack, token["id_token"], client_id, nonce, token["access_token"])


def code_for(stack, client_id, redirect, verifier, scope="openid"):
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    url = stack.url("/oauth2/authorize?" + urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": redirect,
                                                      "scope": scope, "state": "s1", "code_challenge": challenge,
                                                      "code_challenge_method": "S256"}))
    back = Browser(stack).authorize(url)
    return parse_qs(urlparse(back).query)["code"][0]


def test_code_replay_revokes_the_first_tokens(stack):
    client_id, secret, redirect = make_app(stack)
    verifier = secrets.token_urlsafe(48)
    code = code_for(stack, client_id, redirect, verifier)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "code_verifier": verifier}
    first = requests.post(stack.url("/oauth2/token"), data=data, auth=(client_id, secret))
    assert first.status_code == 200
    second = requests.post(stack.url("/oauth2/token"), data=data, auth=(client_id, secret))
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    r = requests.post(stack.url("/oauth2/introspect"), data={"token": first.json()["access_token"]}, auth=(client_id, secret))
    assert r.json() == {"active": False}


def test_twenty_parallel_redemptions_yield_exactly_one_success(stack):
    client_id, secret, redirect = make_app(stack)
    verifier = secrets.token_urlsafe(48)
    code = code_for(stack, client_id, redirect, verifier)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "code_verifier": verifier}
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: requests.post(stack.url("/oauth2/token"), data=data, auth=(client_id, secret)), range(20)))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(400) == 19, statuses
    assert all(r.json()["error"] == "invalid_grant" for r in results if r.status_code == 400)


@pytest.mark.parametrize("variant", [
    "{r}x", "{r}/", "{short}", "{upper}", "{r}?a=1", "{r}#frag", "http://127.0.0.1:{port}/demo/x/%2e%2e/callback",
    "http://user@127.0.0.1:{port}/demo/callback", "http://127.0.0.1:{port}/DEMO/callback", "https://127.0.0.1:{port}/demo/callback",
])
def test_redirect_uri_variants_are_refused_without_redirect(stack, variant):
    client_id, _, redirect = make_app(stack)
    uri = variant.format(r=redirect, short=redirect[:-1], upper=redirect.replace("callback", "Callback"), port=stack.port)
    r = requests.get(stack.url("/oauth2/authorize"), params={"response_type": "code", "client_id": client_id, "redirect_uri": uri,
                                                            "scope": "openid", "code_challenge": "a" * 43, "code_challenge_method": "S256"},
                     allow_redirects=False)
    assert r.status_code == 400
    assert "Location" not in r.headers
    assert r.headers["Content-Type"].startswith("text/html")


def test_prompt_none(stack):
    client_id, secret, redirect = make_app(stack)
    base = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect, "scope": "openid", "state": "pn",
            "code_challenge": "b" * 43, "code_challenge_method": "S256", "prompt": "none"}
    browser = Browser(stack)
    r = browser.go(stack.url("/oauth2/authorize?" + urlencode(base)))
    assert parse_qs(urlparse(r.headers["Location"]).query)["error"] == ["login_required"]
    browser.login()
    r = browser.go(stack.url("/oauth2/authorize?" + urlencode(base)))
    query = parse_qs(urlparse(r.headers["Location"]).query)
    assert query["error"] == ["consent_required"] and query["state"] == ["pn"] and query["iss"] == [stack.base]


def test_missing_csrf_token_is_403_and_no_code(stack):
    client_id, _, redirect = make_app(stack)
    url = stack.url("/oauth2/authorize?" + urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": redirect,
                                                      "scope": "openid", "code_challenge": "c" * 43, "code_challenge_method": "S256"}))
    r = Browser(stack).authorize(url, csrf=False)
    assert r.status_code == 403
    assert "redirect_to" not in r.text and "code=" not in r.text


def test_connections_revoke_through_the_api(stack):
    client_id, secret, redirect = make_app(stack, scope=SCOPE + " connections:read connections:write")
    client = oauth_client(stack, client_id, secret, redirect, scope=SCOPE + " connections:read connections:write")
    url, state, verifier, nonce = start(stack, client)
    token = client.fetch_token(stack.url("/oauth2/token"), authorization_response=Browser(stack).authorize(url), code_verifier=verifier)
    # Paged as every list (SPEC 2: 50 by default, oldest first); the shared stack's user has connected many apps.
    first = client.get(stack.url("/api/v1/me/connections"))
    total = int(first.headers["X-Total-Count"])
    assert len(first.json()["connections"]) == min(total, 50)
    mine = []
    while len(mine) < total:
        page = client.get(stack.url("/api/v1/me/connections"), params={"limit": 250, "offset": len(mine)}).json()["connections"]
        assert page
        mine += page
    assert client_id in [c["client_id"] for c in mine]
    one = client.get(stack.url(f"/api/v1/me/connections/{client_id}")).json()
    assert set(one) >= {"client_id", "client_name", "logo_uri", "scope", "auth_time", "access_time", "creation_time"}
    assert client.delete(stack.url(f"/api/v1/me/connections/{client_id}")).status_code == 204
    r = requests.post(stack.url("/oauth2/introspect"), data={"token": token["access_token"]}, auth=(client_id, secret))
    assert r.json() == {"active": False}
    r = requests.post(stack.url("/oauth2/token"), data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
                      auth=(client_id, secret))
    assert r.json()["error"] == "invalid_grant"


def test_a_long_state_comes_back_through_every_answer_path(stack):
    """A state at its limit (2048 bytes, three times that percent-encoded) comes back in the redirect whichever
    request answers: a continue after sign-in answered by remembered consent, and a consent answered by a plain
    HTML form (both 303s from a worker; nginx's default 4 KiB buffer for a response head made them 502s, the code
    already issued and lost). A longer state at logout is the 400 page, not a 502 (attacker review, session 25)."""
    client_id, secret, redirect = make_app(stack)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = "!" * 2048

    def url(**extra):
        return stack.url("/oauth2/authorize?" + urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect, "scope": "openid profile",
            "state": state, "code_challenge": challenge, "code_challenge_method": "S256", **extra}))

    first = Browser(stack).authorize(url())
    assert parse_qs(urlparse(first).query)["state"] == [state]
    # Signed out, remembered consent: the continue after sign-in answers with the redirect itself.
    fresh = Browser(stack)
    r = fresh.go(url())
    request_id = parse_qs(urlparse(r.headers["Location"]).query)["request"][0]
    fresh.login()
    answered = fresh.http.get(stack.url("/oauth2/authorize/continue"), params={"request": request_id}, allow_redirects=False)
    assert answered.status_code == 303, (answered.status_code, answered.text[:200])
    items = parse_qs(urlparse(answered.headers["Location"]).query)
    assert items["state"] == [state] and items["code"]
    # The consent page's form, without script: the worker's 303 under /api/.
    r = fresh.go(url(prompt="consent"))
    request_id = parse_qs(urlparse(r.headers["Location"]).query)["request"][0]
    form = [("scope", "openid"), ("scope", "profile"), ("csrf_token", fresh.http.cookies.get(stack.cookie("lk_csrf")))]
    answered = fresh.http.post(stack.url(f"/api/v1/authorization-requests/{request_id}/accept"), data=form, allow_redirects=False)
    assert answered.status_code == 303, (answered.status_code, answered.text[:200])
    assert parse_qs(urlparse(answered.headers["Location"]).query)["state"] == [state]
    too_long = fresh.http.get(stack.url("/oauth2/logout"), params={"client_id": client_id, "state": "!" * 2049}, allow_redirects=False)
    assert too_long.status_code == 400 and "Location" not in too_long.headers, too_long.status_code


def test_the_session_cookies_cannot_be_planted_from_another_host(stack):
    """Over https the session, CSRF and browser-binding cookies are read from __Host- cookies (RFC 6265bis
    §4.1.3.2): Secure, Path=/, no Domain, so a browser takes them from this host alone, never from a sibling
    subdomain or a plain-http page. The session's two are also set under SPEC 5.1's names, which are never read: a
    copy there (what those could plant) is no session. Over http (development) the plain names alone (review,
    session 25: a planted session signed a victim in as the attacker)."""
    http = requests.Session()
    login = http.post(stack.url("/api/v1/session"), json={"username": "demo", "password": stack.demo_password})
    assert login.status_code == 204
    set_cookies = login.raw.headers.getlist("Set-Cookie")
    names = sorted(c.split("=", 1)[0] for c in set_cookies)
    expected = ["lk_session", "lk_csrf"] + (["__Host-lk_session", "__Host-lk_csrf"] if stack.tls else [])
    assert names == sorted(expected), names
    if stack.tls:
        assert all("; Secure" in c and "; Path=/;" in c and "domain=" not in c.lower() for c in set_cookies), set_cookies
        token = http.cookies.get("__Host-lk_session")
        planted = requests.get(stack.url("/api/v1/session"), headers={"Cookie": f"lk_session={token}"})
        assert planted.status_code == 401
        assert requests.get(stack.url("/api/v1/session"), headers={"Cookie": f"__Host-lk_session={token}"}).status_code == 200

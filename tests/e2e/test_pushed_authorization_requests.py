"""Pushed authorization requests (RFC 9126) through nginx: a client pushes
its request (HTTP Basic, or a private_key_jwt assertion made with joserfc),
the browser brings only client_id and request_uri to /oauth2/authorize,
authlib redeems the code; a request_uri works once, however many browsers
race for it. Named after the RFC sections they enforce."""
import concurrent.futures
import secrets
import time
import uuid
from urllib.parse import parse_qs, urlencode, urlparse

import requests
from joserfc import jwt
from joserfc.jwk import ECKey

from test_user_flow import Browser, make_app, oauth_client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def pushed(stack, client_id, redirect, **extra):
    verifier = secrets.token_urlsafe(48)
    import base64
    import hashlib
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"response_type": "code", "redirect_uri": redirect, "scope": "openid profile", "state": "par-state", "nonce": "par-nonce",
              "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    return params, verifier


def test_rfc9126_a_pushed_request_signs_the_user_in(stack):
    discovery = requests.get(stack.url("/.well-known/openid-configuration")).json()
    par = discovery["pushed_authorization_request_endpoint"]
    assert par == stack.url("/oauth2/par")
    client_id, secret, redirect = make_app(stack)
    params, verifier = pushed(stack, client_id, redirect)
    r = requests.post(par, data=params, auth=(client_id, secret))
    assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store", r.text
    request_uri = r.json()["request_uri"]
    assert r.json()["expires_in"] == 60
    person = Browser(stack)
    location = person.authorize(stack.url("/oauth2/authorize?") + urlencode({"client_id": client_id, "request_uri": request_uri}))
    answer = parse_qs(urlparse(location).query)
    assert answer["state"] == ["par-state"]
    client = oauth_client(stack, client_id, secret, redirect, scope="openid profile")
    token = client.fetch_token(stack.url("/oauth2/token"), code=answer["code"][0], code_verifier=verifier)
    assert token["scope"] == "openid profile" and token["id_token"]
    # §4: used once.
    again = person.http.get(stack.url("/oauth2/authorize?") + urlencode({"client_id": client_id, "request_uri": request_uri}),
                            allow_redirects=False)
    assert again.status_code == 400 and "Location" not in again.headers


def test_rfc9126_section_2_a_private_key_jwt_client_pushes_with_an_assertion(stack):
    key = ECKey.generate_key("P-256")
    redirect = f"http://127.0.0.1:{stack.port}/demo/callback"
    r = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
        "client_name": "Signed web app", "redirect_uris": [redirect], "grant_types": ["authorization_code"], "scope": "openid profile",
        "token_endpoint_auth_method": "private_key_jwt", "require_pushed_authorization_requests": True,
        "jwks": {"keys": [dict(key.as_dict(private=False), kid="w1")]}})
    assert r.status_code == 201, r.text
    client_id = r.json()["client_id"]

    def assertion(aud):
        now = int(time.time())
        return jwt.encode({"alg": "ES256", "kid": "w1"}, {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 60,
                                                          "jti": uuid.uuid4().hex}, key)

    params, verifier = pushed(stack, client_id, redirect)
    # §6: this client may not skip the push.
    direct = requests.get(stack.url("/oauth2/authorize?") + urlencode({"client_id": client_id, **params}), allow_redirects=False)
    assert direct.status_code == 303 and "error=invalid_request" in direct.headers["Location"]
    r = requests.post(stack.url("/oauth2/par"), data={**params, "client_id": client_id, "client_assertion_type": ASSERTION_TYPE,
                                                      "client_assertion": assertion(stack.url("/oauth2/par"))})
    assert r.status_code == 201, r.text
    location = Browser(stack).authorize(stack.url("/oauth2/authorize?") + urlencode({"client_id": client_id, "request_uri": r.json()["request_uri"]}))
    code = parse_qs(urlparse(location).query)["code"][0]
    token = requests.post(stack.url("/oauth2/token"), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "code_verifier": verifier, "client_id": client_id,
        "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion(stack.url("/oauth2/token"))})
    assert token.status_code == 200 and token.json()["id_token"], token.text


def test_rfc9126_section_4_parallel_browsers_get_one_use_of_a_request_uri(stack):
    client_id, secret, redirect = make_app(stack)
    params, _ = pushed(stack, client_id, redirect)
    request_uri = requests.post(stack.url("/oauth2/par"), data=params, auth=(client_id, secret)).json()["request_uri"]
    url = stack.url("/oauth2/authorize?") + urlencode({"client_id": client_id, "request_uri": request_uri})

    def attempt(_):
        return requests.get(url, allow_redirects=False).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(attempt, range(10)))
    assert codes.count(303) == 1 and codes.count(400) == 9, codes


def test_rfc9126_section_2_3_a_bad_push_is_answered_to_the_client(stack):
    client_id, secret, redirect = make_app(stack)
    params, _ = pushed(stack, client_id, "https://evil.example/cb")
    r = requests.post(stack.url("/oauth2/par"), data=params, auth=(client_id, secret))
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    params, _ = pushed(stack, client_id, redirect)
    assert requests.post(stack.url("/oauth2/par"), data=params, auth=(client_id, "wrong")).status_code == 401

"""Every kind of caller against the endpoints SPEC 10.1 added (registration,
its configuration endpoint, the profile API, logout; then PAR, DPoP and the
device flow of SPEC 10.2): a full management
token, a narrowed one, another organization's, a user's, a deleted and a
disabled client's, and none. Only the intended caller gets anything; no
answer is a 5xx."""
import pytest
import requests

from test_security_review import Org, user_tokens

META = {"redirect_uris": ["https://rp.example/cb"], "client_name": "Matrix RP"}


@pytest.fixture
def callers(stack):
    a, b = Org(stack, "Matrix A"), Org(stack, "Matrix B")
    app, app_secret, redirect = a.web_app(scope="openid profile")
    gone_id, gone_secret = a.client(grant_types=["client_credentials"], scope="clients:write")
    gone = a.token(client_id=gone_id, secret=gone_secret)
    assert requests.delete(stack.url(f"/api/v1/clients/{gone_id}"), headers=a.bearer()).status_code == 204
    off_id, off_secret = a.client(grant_types=["client_credentials"], scope="clients:write")
    off = a.token(client_id=off_id, secret=off_secret)
    assert requests.patch(stack.url(f"/api/v1/clients/{off_id}"), headers=a.bearer(), json={"enabled": False}).status_code == 200
    return {
        "a": a, "b": b,
        "tokens": {
            "narrowed": a.token(scope="clients:read"),
            "user": user_tokens(stack, app, app_secret, redirect, scope="openid profile")["access_token"],
            "deleted client": gone,
            "disabled client": off,
            "none": None,
        },
    }


def call(method, url, token=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.request(method, url, headers=headers, timeout=10, **kw)
    assert r.status_code < 500, (method, url, r.status_code, r.text)
    return r


def test_registration_takes_only_a_full_client_token_and_lands_in_its_organization(stack, callers):
    a, b = callers["a"], callers["b"]
    for kind, token in callers["tokens"].items():
        r = call("POST", stack.url("/oauth2/register"), token, json=META)
        assert r.status_code in (401, 403), (kind, r.status_code, r.text)
    mine = call("POST", stack.url("/oauth2/register"), b.token(), json=META).json()
    seen_by_b = call("GET", stack.url(f"/api/v1/clients/{mine['client_id']}"), b.token())
    assert seen_by_b.status_code == 200 and seen_by_b.json()["organization_id"] == b.id
    # Another organization cannot see or manage it, through any door.
    assert call("GET", stack.url(f"/api/v1/clients/{mine['client_id']}"), a.token()).status_code == 404
    uri = mine["registration_client_uri"]
    for kind, token in list(callers["tokens"].items()) + [("organization A", a.token()), ("organization B's own token", b.token())]:
        for method in ("GET", "PUT", "DELETE"):
            r = call(method, uri, token, json={"client_id": mine["client_id"], **META} if method == "PUT" else None)
            assert r.status_code == 401, (kind, method, r.status_code, r.text)
    assert call("GET", uri, mine["registration_access_token"]).status_code == 200


def test_the_profile_api_is_the_signed_in_users_only(stack, callers):
    for kind, token in callers["tokens"].items():
        for method in ("GET", "PUT"):
            r = call(method, stack.url("/api/v1/me/profile"), token, json={"given_name": "Mallory"} if method == "PUT" else None)
            assert r.status_code == 401, (kind, method, r.status_code, r.text)


def test_logout_spends_little_on_anonymous_garbage(stack, callers):
    # A token of any other kind as id_token_hint is not an ID token for a client: a 400 page, nothing ends, no redirect.
    for kind, token in callers["tokens"].items():
        if token is None:
            continue
        r = call("GET", stack.url("/oauth2/logout"), params={"id_token_hint": token, "post_logout_redirect_uri": "https://rp.example/"},
                 allow_redirects=False)
        assert r.status_code == 400 and "Location" not in r.headers, (kind, r.status_code)
    # An oversized hint is refused by nginx or the worker, never parsed at length.
    big = call("GET", stack.url("/oauth2/logout"), params={"id_token_hint": "a." * 20000}, allow_redirects=False)
    assert big.status_code in (400, 414)


# SPEC 10.2's endpoints and bindings (session 7): PAR, DPoP-bound tokens, the new client metadata -----------------------


def test_par_takes_only_client_authentication_and_never_crosses_clients(stack, callers):
    a, b = callers["a"], callers["b"]
    app, secret, redirect = a.web_app(scope="openid profile")
    params = {"response_type": "code", "client_id": app, "redirect_uri": redirect, "scope": "openid", "state": "m",
              "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}
    # A bearer token of any kind is no client authentication here.
    for kind, token in callers["tokens"].items():
        r = call("POST", stack.url("/oauth2/par"), token, data=params)
        assert r.status_code == 401, (kind, r.status_code, r.text)
    # Another organization's client cannot push for this one, nor use its request_uri.
    b_app, b_secret, _ = b.web_app(scope="openid")
    r = requests.post(stack.url("/oauth2/par"), data=params, auth=(b_app, b_secret))
    assert r.status_code == 400, r.text
    uri = requests.post(stack.url("/oauth2/par"), data=params, auth=(app, secret)).json()["request_uri"]
    r = requests.get(stack.url("/oauth2/authorize"), params={"client_id": b_app, "request_uri": uri}, allow_redirects=False)
    assert r.status_code == 400 and "Location" not in r.headers
    # A disabled client pushes nothing.
    assert requests.patch(stack.url(f"/api/v1/clients/{app}"), headers=a.bearer(), json={"enabled": False}).status_code == 200
    assert requests.post(stack.url("/oauth2/par"), data=params, auth=(app, secret)).status_code == 401


def test_a_dpop_bound_token_is_refused_in_every_other_hand(stack, callers):
    import base64
    import hashlib
    import time
    import uuid
    from joserfc import jwt
    from joserfc.jwk import ECKey

    a, b = callers["a"], callers["b"]
    key = ECKey.generate_key("P-256")

    def proof(method, url, token=None, signer=key):
        claims = {"jti": uuid.uuid4().hex, "htm": method, "htu": url, "iat": int(time.time())}
        if token:
            claims["ath"] = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
        return jwt.encode({"typ": "dpop+jwt", "alg": "ES256", "jwk": signer.as_dict(private=False)}, claims, signer)

    token_url = stack.url("/oauth2/token")
    bound = requests.post(token_url, data={"grant_type": "client_credentials", "scope": "clients:read"}, auth=(a.client_id, a.secret),
                          headers={"DPoP": proof("POST", token_url)}).json()["access_token"]
    own, theirs = stack.url(f"/api/v1/clients/{a.client_id}"), stack.url(f"/api/v1/clients/{b.client_id}")
    assert requests.get(own, headers={"Authorization": f"DPoP {bound}", "DPoP": proof("GET", own, bound)}).status_code == 200
    # Another organization's client: 404, proof or not; a proof of another key, or made for another token: 401.
    assert requests.get(theirs, headers={"Authorization": f"DPoP {bound}", "DPoP": proof("GET", theirs, bound)}).status_code == 404
    other = ECKey.generate_key("P-256")
    assert requests.get(own, headers={"Authorization": f"DPoP {bound}", "DPoP": proof("GET", own, bound, other)}).status_code == 401
    assert requests.get(own, headers={"Authorization": f"DPoP {bound}", "DPoP": proof("GET", own, "another-token")}).status_code == 401
    # A narrowed bound token still cannot write, and unbound tokens of every kind still get what they got before.
    r = requests.patch(own, headers={"Authorization": f"DPoP {bound}", "DPoP": proof("PATCH", own, bound)}, json={"description": "x"})
    assert r.status_code == 403, r.text
    for kind, token in callers["tokens"].items():
        r = call("PATCH", own, token, json={"fapi2_security_profile": True, "dpop_bound_access_tokens": True})
        assert r.status_code in (401, 403), (kind, r.status_code, r.text)


def test_unauthenticated_dpop_and_assertions_cost_no_rows(stack, callers):
    """An anonymous caller's self-signed proof or assertion gets 401 (429 past the failure limit), never a 5xx; that the
    refused request stores nothing is DPoPEndpointTests.aProofIsRecordedOnlyForAnAuthenticatedClient (both stores)."""
    import time
    import uuid
    from joserfc import jwt
    from joserfc.jwk import ECKey
    key = ECKey.generate_key("P-256")
    url = stack.url("/oauth2/token")
    # Few: past the failure limit the answer is 429 (SPEC 7.1), and the shared stack's other tests count failures too.
    for _ in range(3):
        p = jwt.encode({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)},
                       {"jti": uuid.uuid4().hex, "htm": "POST", "htu": url, "iat": int(time.time())}, key)
        r = requests.post(url, data={"grant_type": "client_credentials"}, auth=("nobody-here", "wrong"), headers={"DPoP": p})
        assert r.status_code in (401, 429), r.text
    # An assertion naming a client that does not exist, or one with a giant iat, is a 4xx, never a 5xx.
    forged = jwt.encode({"alg": "ES256", "kid": "x"}, {"iss": "ghost", "sub": "ghost", "aud": stack.base, "exp": 2**63 - 1, "iat": -2**63,
                                                       "jti": "j"}, key)
    r = requests.post(url, data={"grant_type": "client_credentials", "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                                 "client_assertion": forged})
    assert r.status_code in (401, 429), r.text


DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


def test_the_device_flow_takes_only_client_authentication_and_never_crosses_clients(stack, callers):
    a, b = callers["a"], callers["b"]
    endpoint, token_url = stack.url("/oauth2/device_authorization"), stack.url("/oauth2/token")
    device, _ = a.client(grant_types=[DEVICE], scope="openid profile", token_endpoint_auth_method="none")
    # A bearer token of any kind is no client authentication at the device authorization endpoint, and no
    # signed-in browser at the device page's API.
    for kind, token in callers["tokens"].items():
        r = call("POST", endpoint, token, data={"scope": "openid"})
        assert r.status_code == 401, (kind, r.status_code, r.text)
        r = call("POST", stack.url("/api/v1/device"), token, json={"user_code": "BCDF-GHJK"})
        assert r.status_code == 401, (kind, r.status_code, r.text)
    # Another organization's client cannot redeem this client's device code.
    started = requests.post(endpoint, data={"client_id": device, "scope": "openid"}).json()
    b_device, b_secret = b.client(grant_types=[DEVICE], scope="openid")
    r = call("POST", token_url, data={"grant_type": DEVICE, "device_code": started["device_code"]}, auth=(b_device, b_secret))
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    # A disabled client, and then a deleted one, gets no device codes and redeems none.
    conf, conf_secret = a.client(grant_types=[DEVICE], scope="openid")
    code = requests.post(endpoint, data={"scope": "openid"}, auth=(conf, conf_secret)).json()["device_code"]
    assert requests.patch(stack.url(f"/api/v1/clients/{conf}"), headers=a.bearer(), json={"enabled": False}).status_code == 200
    assert call("POST", endpoint, data={"scope": "openid"}, auth=(conf, conf_secret)).status_code == 401
    assert call("POST", token_url, data={"grant_type": DEVICE, "device_code": code}, auth=(conf, conf_secret)).status_code == 401
    assert requests.delete(stack.url(f"/api/v1/clients/{conf}"), headers=a.bearer()).status_code == 204
    assert call("POST", token_url, data={"grant_type": DEVICE, "device_code": code}, auth=(conf, conf_secret)).status_code == 401

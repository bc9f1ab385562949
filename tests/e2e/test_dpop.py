"""DPoP (RFC 9449) through nginx, the proofs made with joserfc as a client
library would: bound client_credentials tokens used at the management API,
a public client's bound tokens at userinfo and at refresh, replay refused;
then the FAPI 2.0 shape end to end: private_key_jwt, PAR, PKCE and DPoP
together. Named after the RFC sections they enforce."""
import base64
import hashlib
import secrets
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import ECKey

from conftest import STORES, Stack
from test_private_key_jwt import ASSERTION_TYPE, assertion, signed_client
from test_security_review import Org
from test_user_flow import Browser, make_app

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def proof(key, method, url, token=None, nonce=None):
    claims = {"jti": uuid.uuid4().hex, "htm": method, "htu": url, "iat": int(time.time())}
    if nonce:
        claims["nonce"] = nonce
    if token:
        claims["ath"] = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
    return jwt.encode({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}, claims, key)


def bound_public_tokens(stack, key, scope="openid profile offline_access"):
    """A public client's code flow (PKCE) redeemed with a proof of `key`: the client id and its bound tokens."""
    client_id, _, redirect = make_app(stack, public=True)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    location = Browser(stack).authorize(stack.url("/oauth2/authorize?") + urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect, "scope": scope, "state": "s",
        "code_challenge": challenge, "code_challenge_method": "S256"}))
    code = parse_qs(urlparse(location).query)["code"][0]
    token_url = stack.url("/oauth2/token")
    tokens = requests.post(token_url, data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "client_id": client_id,
                                            "code_verifier": verifier}, headers={"DPoP": proof(key, "POST", token_url)}).json()
    assert tokens["token_type"] == "DPoP", tokens
    return client_id, tokens


def test_rfc9449_section_5_and_7_a_bound_client_credentials_token(stack):
    key = ECKey.generate_key("P-256")
    token_url = stack.url("/oauth2/token")
    r = requests.post(token_url, data={"grant_type": "client_credentials", "scope": "clients:read"}, auth=(stack.client_id, stack.client_secret),
                      headers={"DPoP": proof(key, "POST", token_url)})
    assert r.status_code == 200 and r.json()["token_type"] == "DPoP", r.text
    token = r.json()["access_token"]
    url = stack.url(f"/api/v1/clients/{stack.client_id}")
    bearer = requests.get(url, headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 401 and bearer.headers["WWW-Authenticate"].startswith("DPoP")
    signed = proof(key, "GET", url, token)
    assert requests.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": signed}).status_code == 200
    # §11.1: the same proof again is refused.
    assert requests.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": signed}).status_code == 401
    discovery = requests.get(stack.url("/.well-known/openid-configuration")).json()
    assert "ES256" in discovery["dpop_signing_alg_values_supported"]


def test_rfc9449_section_7_1_the_binding_before_the_scope_and_the_node_keeps_serving(stack):
    """A bound token short of a route's scope: 401 without a proof of its key, 403 with one, on the routes that read
    their caller and their answer in one transaction too (the client read stopped the process before the fix, and on
    PostgreSQL nginx passed the GET on to the next node, which stopped as well). Every other kind of caller still
    gets what it got: no credentials 401, a user's token 401, another organization's token 404."""
    key = ECKey.generate_key("P-256")
    token_url = stack.url("/oauth2/token")
    narrow = requests.post(token_url, data={"grant_type": "client_credentials", "scope": "audit:read"}, auth=(stack.client_id, stack.client_secret),
                           headers={"DPoP": proof(key, "POST", token_url)}).json()["access_token"]
    for path in [f"/api/v1/clients/{stack.client_id}", "/api/v1/clients", "/v3/oauth-clients"]:
        url = stack.url(path)
        assert requests.get(url, headers={"Authorization": f"DPoP {narrow}"}).status_code == 401, path
        proven = requests.get(url, headers={"Authorization": f"DPoP {narrow}", "DPoP": proof(key, "GET", url, narrow)})
        assert proven.status_code == 403, (path, proven.status_code, proven.text)
        assert requests.get(url).status_code == 401, path
    assert requests.get(stack.url("/healthz")).status_code == 200
    read = stack.url(f"/api/v1/clients/{stack.client_id}")
    _, user_tokens = bound_public_tokens(stack, key)
    assert requests.get(read, headers={"Authorization": f"DPoP {user_tokens['access_token']}",
                                       "DPoP": proof(key, "GET", read, user_tokens["access_token"])}).status_code == 401
    foreign = Org(stack)
    assert requests.get(read, headers=foreign.bearer()).status_code == 404


def test_rfc9449_section_4_3_two_dpop_headers_are_refused_whichever_comes_last(stack):
    """§4.3 check 1: one DPoP header. nginx 1.22 hands a header sent twice to FastCGI as two parameters; the worker
    joins them (RFC 9110 §5.3) instead of keeping the last, so a valid proof after another is refused, at the token
    endpoint (400) and at a resource (401), and the valid proof alone still works (review, session 31)."""
    import os
    import urllib3
    from urllib3._collections import HTTPHeaderDict
    http = urllib3.PoolManager(ca_certs=os.environ.get("REQUESTS_CA_BUNDLE"))
    key, other = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    token_url = stack.url("/oauth2/token")
    basic = "Basic " + base64.b64encode(f"{stack.client_id}:{stack.client_secret}".encode()).decode()

    def twice(method, url, first, second, **fields):
        headers = HTTPHeaderDict({"Authorization": fields.pop("authorization", basic)})
        headers.add("DPoP", first)
        headers.add("DPoP", second)
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            return http.request(method, url, body=urlencode(fields), headers=headers)
        return http.request(method, url, headers=headers)

    refused = twice("POST", token_url, proof(other, "POST", token_url), proof(key, "POST", token_url), grant_type="client_credentials")
    assert refused.status == 400 and refused.json()["error"] == "invalid_dpop_proof", refused.data
    r = requests.post(token_url, data={"grant_type": "client_credentials", "scope": "clients:read"}, auth=(stack.client_id, stack.client_secret),
                      headers={"DPoP": proof(key, "POST", token_url)})
    token = r.json()["access_token"]
    url = stack.url(f"/api/v1/clients/{stack.client_id}")
    at_resource = twice("GET", url, proof(other, "GET", url, token), proof(key, "GET", url, token), authorization=f"DPoP {token}")
    assert at_resource.status == 401 and at_resource.headers["WWW-Authenticate"].startswith("DPoP"), at_resource.data
    assert requests.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": proof(key, "GET", url, token)}).status_code == 200


def test_rfc9449_section_5_a_public_clients_tokens_are_bound_at_userinfo_and_refresh(stack):
    key = ECKey.generate_key("P-256")
    client_id, tokens = bound_public_tokens(stack, key)
    token_url = stack.url("/oauth2/token")
    userinfo = stack.url("/oauth2/userinfo")
    r = requests.get(userinfo, headers={"Authorization": f"DPoP {tokens['access_token']}", "DPoP": proof(key, "GET", userinfo, tokens["access_token"])})
    assert r.status_code == 200 and r.json()["sub"]
    other = ECKey.generate_key("P-256")
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id}
    assert requests.post(token_url, data=refresh, headers={"DPoP": proof(other, "POST", token_url)}).status_code == 400
    assert requests.post(token_url, data=refresh).status_code == 400
    refreshed = requests.post(token_url, data=refresh, headers={"DPoP": proof(key, "POST", token_url)})
    assert refreshed.status_code == 200 and refreshed.json()["token_type"] == "DPoP"


def test_rfc9449_section_5_a_public_clients_bound_tokens_are_revoked_only_with_their_key(stack):
    """RFC 7009 revocation of a public client's bound tokens needs a proof of their key: the client id alone is
    anyone's (attacker review, session 24). Without one, or with another key's, 400 invalid_dpop_proof and the
    token stays active; with the key's proof, revoked."""
    key = ECKey.generate_key("P-256")
    client_id, tokens = bound_public_tokens(stack, key, scope="openid offline_access")
    revoke_url = stack.url("/oauth2/revoke")

    def active(token):
        return requests.post(stack.url("/oauth2/introspect"), data={"token": token}, auth=(stack.client_id, stack.client_secret)).json()["active"]

    other = ECKey.generate_key("P-256")
    # The access token first: revoking the refresh token ends its family, the access token with it.
    for token in (tokens["access_token"], tokens["refresh_token"]):
        for headers in ({}, {"DPoP": proof(other, "POST", revoke_url)}):
            r = requests.post(revoke_url, data={"token": token, "client_id": client_id}, headers=headers)
            assert r.status_code == 400 and r.json()["error"] == "invalid_dpop_proof", r.text
            assert active(token)
        r = requests.post(revoke_url, data={"token": token, "client_id": client_id}, headers={"DPoP": proof(key, "POST", revoke_url)})
        assert r.status_code == 200, r.text
        assert not active(token)


def test_rfc9449_section_10_a_code_bound_by_dpop_jkt_or_by_a_proof_at_par(stack):
    key, other = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    client_id, secret, redirect = make_app(stack)
    token_url, par_url = stack.url("/oauth2/token"), stack.url("/oauth2/par")
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    request = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect, "scope": "openid", "state": "s",
               "code_challenge": challenge, "code_challenge_method": "S256"}
    redeem = {"grant_type": "authorization_code", "redirect_uri": redirect, "code_verifier": verifier}

    def code_of(location):
        return parse_qs(urlparse(location).query)["code"][0]

    # §10: dpop_jkt (joserfc's RFC 7638 thumbprint) on the front channel.
    code = code_of(Browser(stack).authorize(stack.url("/oauth2/authorize?") + urlencode({**request, "dpop_jkt": key.thumbprint()})))
    refused = requests.post(token_url, data={**redeem, "code": code}, auth=(client_id, secret), headers={"DPoP": proof(other, "POST", token_url)})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof"
    bound = requests.post(token_url, data={**redeem, "code": code}, auth=(client_id, secret), headers={"DPoP": proof(key, "POST", token_url)})
    assert bound.status_code == 200 and bound.json()["token_type"] == "DPoP", bound.text
    # §10.1: a proof with the push binds the code; dpop_jkt naming another key is refused.
    mismatch = requests.post(par_url, data={**request, "dpop_jkt": other.thumbprint()}, auth=(client_id, secret),
                             headers={"DPoP": proof(key, "POST", par_url)})
    assert mismatch.status_code == 400 and mismatch.json()["error"] == "invalid_dpop_proof"
    pushed = requests.post(par_url, data=request, auth=(client_id, secret), headers={"DPoP": proof(key, "POST", par_url)})
    assert pushed.status_code == 201, pushed.text
    code = code_of(Browser(stack).authorize(stack.url("/oauth2/authorize?") + urlencode({"client_id": client_id,
                                                                                         "request_uri": pushed.json()["request_uri"]})))
    assert requests.post(token_url, data={**redeem, "code": code}, auth=(client_id, secret)).json()["error"] == "invalid_dpop_proof"
    bound = requests.post(token_url, data={**redeem, "code": code}, auth=(client_id, secret), headers={"DPoP": proof(key, "POST", token_url)})
    assert bound.status_code == 200 and bound.json()["token_type"] == "DPoP", bound.text


def test_fapi2_private_key_jwt_par_pkce_and_dpop_together(stack):
    """The FAPI 2.0 Security Profile's shape with third-party libraries only: a client that signs its
    assertions (no secret), must push its requests and must bind its tokens."""
    client_key, dpop_key = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    redirect = f"http://127.0.0.1:{stack.port}/demo/callback"
    r = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
        "client_name": "FAPI client", "redirect_uris": [redirect], "grant_types": ["authorization_code", "refresh_token"],
        "scope": "openid profile offline_access", "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [dict(client_key.as_dict(private=False), kid="f1")]}, "fapi2_security_profile": True})
    assert r.status_code == 201, r.text
    client_id = r.json()["client_id"]

    def assertion():
        now = int(time.time())
        return jwt.encode({"alg": "ES256", "kid": "f1"}, {"iss": client_id, "sub": client_id, "aud": stack.base, "iat": now, "exp": now + 60,
                                                          "jti": uuid.uuid4().hex}, client_key)

    # A FAPI 2.0 client authenticates with private_key_jwt, never a secret.
    refused = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
        "client_name": "FAPI with a secret", "redirect_uris": [redirect], "grant_types": ["authorization_code"], "fapi2_security_profile": True})
    assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "fapi2_security_profile"
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    base = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect, "scope": "openid profile", "state": "fapi"}
    # No PAR: refused at /authorize. No PKCE: refused at PAR, though the client is confidential.
    direct = requests.get(stack.url("/oauth2/authorize?") + urlencode(dict(base, code_challenge=challenge, code_challenge_method="S256")),
                          allow_redirects=False)
    assert direct.status_code == 303 and "error=invalid_request" in direct.headers["Location"]
    no_pkce = requests.post(stack.url("/oauth2/par"), data=dict(base, client_assertion_type=ASSERTION_TYPE, client_assertion=assertion()))
    assert no_pkce.status_code == 400 and no_pkce.json()["error"] == "invalid_request"
    pushed = requests.post(stack.url("/oauth2/par"), data={
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect, "scope": "openid profile offline_access", "state": "fapi",
        "nonce": "fapi-nonce", "code_challenge": challenge, "code_challenge_method": "S256",
        "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion()})
    assert pushed.status_code == 201, pushed.text
    location = Browser(stack).authorize(stack.url("/oauth2/authorize?") + urlencode({"client_id": client_id, "request_uri": pushed.json()["request_uri"]}))
    code = parse_qs(urlparse(location).query)["code"][0]
    token_url = stack.url("/oauth2/token")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "code_verifier": verifier, "client_id": client_id,
            "client_assertion_type": ASSERTION_TYPE}
    # Without the DPoP proof this client is refused (dpop_bound_access_tokens); the code is not spent by that.
    assert requests.post(token_url, data=dict(form, client_assertion=assertion())).status_code == 400
    tokens = requests.post(token_url, data=dict(form, client_assertion=assertion()), headers={"DPoP": proof(dpop_key, "POST", token_url)})
    assert tokens.status_code == 200 and tokens.json()["token_type"] == "DPoP", tokens.text
    userinfo = stack.url("/oauth2/userinfo")
    access = tokens.json()["access_token"]
    r = requests.get(userinfo, headers={"Authorization": f"DPoP {access}", "DPoP": proof(dpop_key, "GET", userinfo, access)})
    assert r.status_code == 200

    # FAPI 2.0 §5.3.2.1 item 10: a lost answer to a refresh is retried with the token it replaced (on two nodes,
    # nginx may send each request to either); the token the lost answer held is then withdrawn, and presented
    # later it is reuse, which ends the grant.
    def refreshed(token):
        return requests.post(token_url, data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id,
                                              "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion()},
                             headers={"DPoP": proof(dpop_key, "POST", token_url)})
    first = tokens.json()["refresh_token"]
    lost = refreshed(first)
    assert lost.status_code == 200 and lost.json()["token_type"] == "DPoP", lost.text
    retried = refreshed(first)
    assert retried.status_code == 200 and retried.json()["refresh_token"] not in (first, lost.json()["refresh_token"]), retried.text
    assert refreshed(lost.json()["refresh_token"]).json()["error"] == "invalid_grant"
    assert refreshed(retried.json()["refresh_token"]).json()["error"] == "invalid_grant", "the grant ended"


@pytest.fixture(params=STORES)
def nonce_stack(request):
    """Nodes started with LATCHKEY_DPOP_NONCES=1 (on PostgreSQL, two of them: a nonce from one works on the other)."""
    with tempfile.TemporaryDirectory(prefix="latchkey-e2e-") as tmp:
        s = Stack(Path(tmp), rate_limits="off", store=request.param, env={"LATCHKEY_DPOP_NONCES": "1"}).start()
        yield s
        s.stop()


def test_rfc9449_sections_8_and_9_server_nonces_when_configured(nonce_stack):
    stack = nonce_stack
    key = ECKey.generate_key("P-256")
    token_url = stack.url("/oauth2/token")
    data = {"grant_type": "client_credentials", "scope": "clients:read"}
    auth = (stack.client_id, stack.client_secret)
    # §8: no nonce, use_dpop_nonce with one to use.
    first = requests.post(token_url, data=data, auth=auth, headers={"DPoP": proof(key, "POST", token_url)})
    assert first.status_code == 400 and first.json()["error"] == "use_dpop_nonce", first.text
    nonce = first.headers["DPoP-Nonce"]
    # The retry with it succeeds, on whichever node nginx picks (several times, so both nodes of a pair answer).
    for _ in range(4):
        r = requests.post(token_url, data=data, auth=auth, headers={"DPoP": proof(key, "POST", token_url, nonce=nonce)})
        assert r.status_code == 200 and r.json()["token_type"] == "DPoP", r.text
        assert r.headers["DPoP-Nonce"]
    token = r.json()["access_token"]
    # §9: a resource answers 401 with the challenge and a nonce, then accepts a proof with it.
    url = stack.url(f"/api/v1/clients/{stack.client_id}")
    resource = requests.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": proof(key, "GET", url, token)})
    assert resource.status_code == 401 and 'error="use_dpop_nonce"' in resource.headers["WWW-Authenticate"]
    fresh = resource.headers["DPoP-Nonce"]
    ok = requests.get(url, headers={"Authorization": f"DPoP {token}", "DPoP": proof(key, "GET", url, token, nonce=fresh)})
    assert ok.status_code == 200, ok.text
    # A made-up nonce is refused the same way.
    bad = requests.post(token_url, data=data, auth=auth, headers={"DPoP": proof(key, "POST", token_url, nonce="A" * 32)})
    assert bad.status_code == 400 and bad.json()["error"] == "use_dpop_nonce"
    # §8's retry with a private_key_jwt client: the refusal comes before client authentication, so the
    # same request (the same assertion) sent again with the nonce succeeds.
    client_key = ECKey.generate_key("P-256")
    signed = signed_client(stack, client_key)
    form = {"grant_type": "client_credentials", "scope": "clients:read", "client_id": signed, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(stack, signed, client_key)}
    first = requests.post(token_url, data=form, headers={"DPoP": proof(key, "POST", token_url)})
    assert first.status_code == 400 and first.json()["error"] == "use_dpop_nonce", first.text
    again = requests.post(token_url, data=form, headers={"DPoP": proof(key, "POST", token_url, nonce=first.headers["DPoP-Nonce"])})
    assert again.status_code == 200 and again.json()["token_type"] == "DPoP", again.text

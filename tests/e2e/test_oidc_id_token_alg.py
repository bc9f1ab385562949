"""SPEC 10.1, the ID token algorithm per client: ES256 and RS256 keys always
published, each client's ID tokens signed with the algorithm it registered
(OIDC Registration §2 `id_token_signed_response_alg`), discovery listing
exactly the algorithms with a key, and a JWKS the RP libraries load
without a warning. Verified with authlib (the flow), joserfc (RS256 only)
and cryptojwt (the JWKS as idpyoidc loads it)."""
import json
import logging
from urllib.parse import parse_qs, urlparse

import requests
from cryptojwt.key_bundle import KeyBundle
from joserfc import jwt
from joserfc.jwk import KeySet

from conftest import run_cli
from test_user_flow import Browser, oauth_client, start, SCOPE


def make_app(stack, alg):
    redirect = f"http://127.0.0.1:{stack.port}/demo/callback"
    r = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
        "client_name": f"{alg} app", "redirect_uris": [redirect], "grant_types": ["authorization_code", "refresh_token"],
        "scope": SCOPE, "id_token_signed_response_alg": alg})
    assert r.status_code == 201, r.text
    assert r.json()["id_token_signed_response_alg"] == alg
    return r.json()["client_id"], r.json()["client_secret"], redirect


def code_flow(stack, client_id, secret, redirect):
    client = oauth_client(stack, client_id, secret, redirect)
    url, state, verifier, nonce = start(stack, client)
    back = Browser(stack).authorize(url)
    assert parse_qs(urlparse(back).query)["state"] == [state]
    return client.fetch_token(stack.url("/oauth2/token"), authorization_response=back, code_verifier=verifier), nonce


def test_an_rs256_client_gets_rs256_id_tokens_that_an_rp_library_verifies(stack):
    client_id, secret, redirect = make_app(stack, "RS256")
    token, nonce = code_flow(stack, client_id, secret, redirect)
    keys = KeySet.import_key_set(requests.get(stack.url("/oauth2/jwks")).json())
    # An RP that accepts RS256 only (the OIDC default it registered for).
    decoded = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    assert decoded.header["alg"] == "RS256"
    assert decoded.claims["aud"] == client_id and decoded.claims["nonce"] == nonce
    # The access token keeps the access-token algorithm (ES256 here).
    assert jwt.decode(token["access_token"], keys, algorithms=["ES256"]).header["alg"] == "ES256"


def test_an_es256_client_is_unchanged(stack):
    client_id, secret, redirect = make_app(stack, "ES256")
    token, _ = code_flow(stack, client_id, secret, redirect)
    keys = KeySet.import_key_set(requests.get(stack.url("/oauth2/jwks")).json())
    assert jwt.decode(token["id_token"], keys, algorithms=["ES256"]).header["alg"] == "ES256"


def test_discovery_lists_exactly_the_algorithms_with_a_key(fresh_stack):
    s = fresh_stack
    doc = requests.get(s.url("/.well-known/openid-configuration")).json()
    assert doc["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]
    assert "clients:write" not in doc["scopes_supported"] and "openid" in doc["scopes_supported"]
    run_cli(s, "keys", "rotate", "--alg", "EdDSA")
    doc = requests.get(s.url("/.well-known/openid-configuration")).json()
    assert doc["id_token_signing_alg_values_supported"] == ["ES256", "RS256", "EdDSA"]
    # EdDSA now signs access tokens; an EdDSA client may now register.
    client_id, secret, redirect = make_app(s, "EdDSA")
    token, _ = code_flow(s, client_id, secret, redirect)
    keys = KeySet.import_key_set(requests.get(s.url("/oauth2/jwks")).json())
    assert jwt.decode(token["id_token"], keys, algorithms=["EdDSA"]).header["alg"] == "EdDSA"


def test_the_jwks_loads_in_cryptojwt_without_a_warning(stack, caplog):
    caplog.set_level(logging.WARNING)
    bundle = KeyBundle(source=stack.url("/oauth2/jwks"), fileformat="jwks")
    bundle.update()
    assert {k.kty for k in bundle.keys()} == {"EC", "RSA"}
    assert not [r for r in caplog.records if "Content-Type" in r.getMessage()], [r.getMessage() for r in caplog.records]
    r = requests.get(stack.url("/oauth2/jwks"))
    assert r.headers["Content-Type"] == "application/json"
    asked = requests.get(stack.url("/oauth2/jwks"), headers={"Accept": "application/jwk-set+json"})
    assert asked.headers["Content-Type"] == "application/jwk-set+json" and asked.json() == r.json()


def test_init_publishes_an_es256_and_an_rs256_key(fresh_stack):
    """SPEC 10.1 (a deployment from before gains the missing key when it starts: KeyManagementTests)."""
    s = fresh_stack
    listed = json.loads(run_cli(s, "keys", "list").stdout)["keys"]
    assert sorted(k["alg"] for k in listed if k["status"] == "active") == ["ES256", "RS256"]

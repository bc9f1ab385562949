"""private_key_jwt (RFC 7523 §2.2, OIDC Core §9; SPEC 10.2) through nginx:
authlib's PrivateKeyJWT client authentication gets client_credentials
tokens for a client that registered only public keys (`jwks`); assertions
made with joserfc test the rules one by one at the token, introspection
and revocation endpoints: single use (RFC 7523 §3), audience, lifetime,
the registered keys only. Named after the RFC sections they enforce."""
import time
import uuid

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def signed_client(stack, key, alg_kid="k1", scope="clients:read"):
    public = key.as_dict(private=False)
    public.update({"kid": alg_kid, "use": "sig"})
    r = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
        "client_name": "Signed client", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [public]}, "scope": scope})
    assert r.status_code == 201, r.text
    assert "client_secret" not in r.json(), "a private_key_jwt client holds no secret"
    return r.json()["client_id"]


def assertion(stack, client_id, key, alg="ES256", kid="k1", aud=None, **claims):
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": aud or stack.url("/oauth2/token"), "iat": now, "exp": now + 60,
            "jti": uuid.uuid4().hex}
    body.update(claims)
    return jwt.encode({"alg": alg, "kid": kid}, {k: v for k, v in body.items() if v is not None}, key)


def post(stack, path, client_id, signed, **data):
    return requests.post(stack.url(path), data={"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed, "client_id": client_id,
                                                **data})


def test_authlib_private_key_jwt_gets_client_credentials_tokens(stack):
    key = ECKey.generate_key("P-256")
    client_id = signed_client(stack, key)
    discovery = requests.get(stack.url("/.well-known/openid-configuration")).json()
    assert "private_key_jwt" in discovery["token_endpoint_auth_methods_supported"]
    assert "ES256" in discovery["token_endpoint_auth_signing_alg_values_supported"]
    session = OAuth2Session(client_id, key, token_endpoint_auth_method="private_key_jwt", scope="clients:read")
    # authlib makes assertions valid for an hour by default; Latchkey takes five minutes at most (SPEC 10.2).
    session.register_client_auth_method(PrivateKeyJWT(stack.url("/oauth2/token"), alg="ES256", headers={"kid": "k1"},
                                                      claims={"exp": int(time.time()) + 120}))
    token = session.fetch_token(stack.url("/oauth2/token"), grant_type="client_credentials")
    assert token["token_type"].lower() == "bearer" and token["scope"] == "clients:read"
    # The token works as any client_credentials token does.
    r = requests.get(stack.url(f"/api/v1/clients/{client_id}"), headers={"Authorization": f"Bearer {token['access_token']}"})
    assert r.status_code == 200 and r.json()["jwks"]["keys"][0]["kid"] == "k1"


def test_rfc7523_section_3_an_assertion_is_single_use(stack):
    key = ECKey.generate_key("P-256")
    client_id = signed_client(stack, key)
    token = assertion(stack, client_id, key)
    assert post(stack, "/oauth2/token", client_id, token, grant_type="client_credentials").status_code == 200
    replay = post(stack, "/oauth2/token", client_id, token, grant_type="client_credentials")
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"


def test_rfc7523_section_3_audience_lifetime_and_issuer(stack):
    key = ECKey.generate_key("P-256")
    client_id = signed_client(stack, key)
    now = int(time.time())
    for name, token in [
        ("another audience", assertion(stack, client_id, key, aud="https://elsewhere.example/token")),
        ("expired", assertion(stack, client_id, key, exp=now - 5)),
        ("more than five minutes ahead", assertion(stack, client_id, key, exp=now + 900)),
        ("no jti", assertion(stack, client_id, key, jti=None)),
        ("iss is not the client", assertion(stack, client_id, key, iss="someone-else")),
    ]:
        r = post(stack, "/oauth2/token", client_id, token, grant_type="client_credentials")
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", name
    # The issuer itself is an accepted audience (OIDC Core §9).
    assert post(stack, "/oauth2/token", client_id, assertion(stack, client_id, key, aud=stack.base),
                grant_type="client_credentials").status_code == 200


def test_only_the_registered_keys_verify(stack):
    key, other = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    client_id = signed_client(stack, key)
    r = post(stack, "/oauth2/token", client_id, assertion(stack, client_id, other), grant_type="client_credentials")
    assert r.status_code == 401
    # An RSA key registered beside: RS256 assertions verify with it, ES256 ones made with it do not exist.
    rsa = RSAKey.generate_key(2048)
    rsa_client = signed_client(stack, rsa, alg_kid="r1")
    ok = post(stack, "/oauth2/token", rsa_client, assertion(stack, rsa_client, rsa, alg="RS256", kid="r1"), grant_type="client_credentials")
    assert ok.status_code == 200, ok.text
    # A secret is no way in for such a client, nor an assertion for a client with a secret.
    assert requests.post(stack.url("/oauth2/token"), data={"grant_type": "client_credentials"}, auth=(client_id, "guess")).status_code == 401
    primary = post(stack, "/oauth2/token", stack.client_id, assertion(stack, stack.client_id, key), grant_type="client_credentials")
    assert primary.status_code == 401


def test_introspection_and_revocation_take_assertions_for_the_issuer_or_themselves(stack):
    """The audiences RFC 9126 §2 lists (issuer, token endpoint, PAR endpoint) and the receiving endpoint (SPEC 10.2)
    at every endpoint that authenticates clients; no other URL of this server."""
    key = ECKey.generate_key("P-256")
    client_id = signed_client(stack, key, scope="clients:read tokens:introspect")
    access = post(stack, "/oauth2/token", client_id, assertion(stack, client_id, key), grant_type="client_credentials").json()["access_token"]
    r = post(stack, "/oauth2/introspect", client_id, assertion(stack, client_id, key, aud=stack.base), token=access)
    assert r.status_code == 200 and r.json()["active"] is True
    r = post(stack, "/oauth2/revoke", client_id, assertion(stack, client_id, key, aud=stack.url("/oauth2/token")), token=access)
    assert r.status_code == 200
    r = post(stack, "/oauth2/introspect", client_id, assertion(stack, client_id, key, aud=stack.base), token=access)
    assert r.json() == {"active": False}
    r = post(stack, "/oauth2/introspect", client_id, assertion(stack, client_id, key, aud=stack.url("/oauth2/introspect")), token=access)
    assert r.status_code == 200, "its own URL"
    r = post(stack, "/oauth2/introspect", client_id, assertion(stack, client_id, key, aud=stack.url("/oauth2/revoke")), token=access)
    assert r.status_code == 401, "another endpoint's URL"


def test_dynamic_registration_takes_jwks_and_issues_no_secret(stack):
    key = ECKey.generate_key("P-256")
    public = dict(key.as_dict(private=False), kid="d1")
    r = requests.post(stack.url("/oauth2/register"), headers=stack.bearer(), json={
        "redirect_uris": ["https://rp.example/cb"], "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [public]}})
    assert r.status_code == 201, r.text
    assert "client_secret" not in r.json() and r.json()["jwks"]["keys"][0]["kid"] == "d1"
    private = dict(public, d="AAAA")
    bad = requests.post(stack.url("/oauth2/register"), headers=stack.bearer(), json={
        "redirect_uris": ["https://rp.example/cb"], "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [private]}})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client_metadata"

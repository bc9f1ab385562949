"""The profile, phone and address scopes end to end: an operator sets a
user's standard claims with `latchkey user set`; authlib's code flow with
those scopes gets them in the ID token (joserfc) and from userinfo; `amr`
says the user signed in with a password."""
import json

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from conftest import run_cli
from test_user_flow import Browser, oauth_client, start


def test_claims_set_by_the_operator_reach_the_rp_by_scope(stack):
    profile = json.loads(run_cli(stack, "user", "set", "demo", "--given-name", "Demo", "--family-name", "User", "--locale", "en-GB",
                                 "--zoneinfo", "Europe/London", "--phone-number", "+44 20 7946 0958", "--locality", "Oxford",
                                 "--country", "GB").stdout)
    assert profile["address"] == {"locality": "Oxford", "country": "GB"}
    refused = run_cli(stack, "user", "set", "demo", "--zoneinfo", "nowhere", check=False)
    assert refused.returncode != 0 and "zoneinfo" in (refused.stderr + refused.stdout)
    redirect = f"http://127.0.0.1:{stack.port}/demo/callback"
    r = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
        "client_name": "Claims RP", "redirect_uris": [redirect], "grant_types": ["authorization_code"],
        "scope": "openid profile email phone address"})
    assert r.status_code == 201, r.text
    client_id, secret = r.json()["client_id"], r.json()["client_secret"]
    client = oauth_client(stack, client_id, secret, redirect, scope="openid profile phone address")
    url, _, verifier, _ = start(stack, client)
    token = client.fetch_token(stack.url("/oauth2/token"), authorization_response=Browser(stack).authorize(url), code_verifier=verifier)
    keys = KeySet.import_key_set(requests.get(stack.url("/oauth2/jwks")).json())
    claims = jwt.decode(token["id_token"], keys).claims
    assert claims["amr"] == ["pwd"]
    assert (claims["given_name"], claims["family_name"], claims["locale"], claims["zoneinfo"]) == ("Demo", "User", "en-GB", "Europe/London")
    assert claims["phone_number"] == "+44 20 7946 0958" and claims["address"] == {"locality": "Oxford", "country": "GB"}
    assert "email" not in claims  # not granted
    info = client.get(stack.url("/oauth2/userinfo")).json()
    assert info["phone_number"] == "+44 20 7946 0958" and info["address"]["country"] == "GB" and info["given_name"] == "Demo"


def test_the_claims_parameter_asks_for_claims_one_by_one_and_for_acr(stack):
    """OIDC Core 5.5: email asked for by the claims parameter (scope openid only) joins the consent as its scope, the token
    response names it, userinfo releases it; acr asked for the ID token is there ("1": a password sign-in)."""
    redirect = f"http://127.0.0.1:{stack.port}/demo/callback"
    r = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
        "client_name": "Claims parameter RP", "redirect_uris": [redirect], "grant_types": ["authorization_code"],
        "scope": "openid profile email"})
    assert r.status_code == 201, r.text
    client_id, secret = r.json()["client_id"], r.json()["client_secret"]
    client = oauth_client(stack, client_id, secret, redirect, scope="openid")
    asked = json.dumps({"id_token": {"acr": {"essential": True, "values": ["1"]}}, "userinfo": {"email": {"essential": True}}})
    url, _, verifier, _ = start(stack, client, claims=asked)
    token = client.fetch_token(stack.url("/oauth2/token"), authorization_response=Browser(stack).authorize(url), code_verifier=verifier)
    assert token["scope"] == "openid email"
    claims = jwt.decode(token["id_token"], KeySet.import_key_set(requests.get(stack.url("/oauth2/jwks")).json())).claims
    assert claims["acr"] == "1"
    assert client.get(stack.url("/oauth2/userinfo")).json()["email"]
    # An essential acr Latchkey cannot meet, and a malformed parameter, go back to the client as errors.
    for claims_param, error in [(json.dumps({"id_token": {"acr": {"essential": True, "value": "urn:example:mfa"}}}), "unmet_authentication_requirements"),
                                ("{not json", "invalid_request")]:
        url, _, _, _ = start(stack, client, claims=claims_param)
        r = requests.get(url, allow_redirects=False)
        assert r.status_code == 303, r.text
        assert f"error={error}" in r.headers["Location"]

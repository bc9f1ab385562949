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

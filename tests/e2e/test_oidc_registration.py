"""Dynamic client registration (RFC 7591, OIDC Registration 1.0) and the
client configuration endpoint (RFC 7592) through nginx: a client registered
with an initial access token, or anonymously into the organization the
operator opened, then used by authlib for a code flow whose RS256 ID token
(the registration default) joserfc verifies; then read, replaced and
deleted with its registration access token."""
import json
import re
from urllib.parse import parse_qs, urlparse

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from conftest import run_cli
from test_user_flow import Browser, oauth_client, start


def registration_endpoint(stack):
    doc = requests.get(stack.url("/.well-known/openid-configuration")).json()
    assert doc["registration_endpoint"] == stack.url("/oauth2/register")
    return doc["registration_endpoint"]


def test_register_with_an_initial_access_token_then_sign_in_with_the_new_client(stack):
    redirect = f"http://127.0.0.1:{stack.port}/demo/callback"
    r = requests.post(registration_endpoint(stack), headers=stack.bearer(), json={
        "redirect_uris": [redirect], "client_name": "Registered RP", "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"], "scope": "openid profile email offline_access", "contacts": ["ops@rp.example"]})
    assert r.status_code == 201, r.text
    assert r.headers["Cache-Control"] == "no-store"
    reg = r.json()
    assert reg["id_token_signed_response_alg"] == "RS256" and reg["client_secret_expires_at"] == 0
    assert "contacts" not in reg  # RFC 7591 §2: metadata the server does not understand is ignored
    client = oauth_client(stack, reg["client_id"], reg["client_secret"], redirect)
    url, state, verifier, nonce = start(stack, client)
    back = Browser(stack).authorize(url)
    assert parse_qs(urlparse(back).query)["state"] == [state]
    token = client.fetch_token(stack.url("/oauth2/token"), authorization_response=back, code_verifier=verifier)
    keys = KeySet.import_key_set(requests.get(stack.url("/oauth2/jwks")).json())
    claims = jwt.decode(token["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["aud"] == reg["client_id"] and claims["nonce"] == nonce
    # RFC 7592: the configuration endpoint, with the registration access token only.
    config = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    uri = reg["registration_client_uri"]
    assert requests.get(uri, headers=stack.bearer()).status_code == 401
    read = requests.get(uri, headers=config)
    assert read.status_code == 200 and read.json()["client_name"] == "Registered RP" and "client_secret" not in read.json()
    replaced = requests.put(uri, headers=config, json={"client_id": reg["client_id"], "redirect_uris": [redirect], "client_name": "Renamed RP"})
    assert replaced.status_code == 200 and replaced.json()["client_name"] == "Renamed RP"
    # The registry saw it: the native API lists the client in the organization, under its new name.
    listed = requests.get(stack.url(f"/api/v1/clients/{reg['client_id']}"), headers=stack.bearer()).json()
    assert listed["client_name"] == "Renamed RP" and listed["organization_id"] == stack.org_id
    assert requests.delete(uri, headers=config).status_code == 204
    assert requests.get(uri, headers=config).status_code == 401
    assert requests.post(stack.url("/oauth2/token"), data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
                         auth=(reg["client_id"], reg["client_secret"])).status_code == 401


def test_anonymous_registration_lands_in_the_open_organization_without_privileged_scopes(fresh_stack):
    s = fresh_stack
    body = {"redirect_uris": ["https://rp.example/cb"], "client_name": "Anonymous RP"}
    refused = requests.post(registration_endpoint(s), json=body)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="latchkey"'  # RFC 6750 §3.1: no error without credentials
    org = json.loads(run_cli(s, "org", "create", "Open registrations", "--client-limit", "3").stdout)
    run_cli(s, "org", "set", org["organization_id"], "--open-registration", "on")
    registered = requests.post(registration_endpoint(s), json=body)
    assert registered.status_code == 201, registered.text
    owner = s.token(org["client_id"], org["client_secret"])
    seen = requests.get(s.url(f"/api/v1/clients/{registered.json()['client_id']}"), headers={"Authorization": f"Bearer {owner}"})
    assert seen.status_code == 200 and seen.json()["organization_id"] == org["organization_id"]
    for extra in ({"scope": "openid clients:write"}, {"scope": "openid gov.user.oauth.authorize"},
                  {"grant_types": ["authorization_code", "client_credentials"]}):
        refused = requests.post(registration_endpoint(s), json=dict(body, **extra))
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_client_metadata", extra
    # The audit log names the anonymous registrant as such.
    events = requests.get(s.url("/api/v1/audit"), headers={"Authorization": f"Bearer {owner}"}).json()
    assert any(e["action"] == "client.created" and e["actor"] == "anonymous" for e in events["events"]), events
    # The organization's client limit counts anonymous registrations: 3 = its primary and two more.
    assert requests.post(registration_endpoint(s), json=body).status_code == 201
    full = requests.post(registration_endpoint(s), json=body)
    assert full.status_code == 400 and "limit" in full.json()["error_description"]
    run_cli(s, "org", "set", org["organization_id"], "--open-registration", "off")
    assert requests.post(registration_endpoint(s), json=body).status_code == 401


def test_an_anonymously_registered_client_is_not_redirected_to_without_the_user(fresh_stack):
    """RFC 9700 §4.11.2 (attacker reviews, sessions 24 and 28): anyone may register a client anonymously with a redirect
    URI of their choosing; a link with a bad parameter, or prompt=none, sent this server's visitors there at once. For
    such a client the error is a page, signed in or not, with a link back that the user may follow; a client
    registered with an initial access token is answered at its redirect URI as before."""
    s = fresh_stack
    org = json.loads(run_cli(s, "org", "create", "Open registrations", "--client-limit", "3").stdout)
    run_cli(s, "org", "set", org["organization_id"], "--open-registration", "on")
    body = {"redirect_uris": ["https://rp.example/cb"], "client_name": "Anonymous RP", "token_endpoint_auth_method": "none"}
    anonymous = requests.post(registration_endpoint(s), json=body)
    registered = requests.post(registration_endpoint(s), json=body, headers=s.bearer())
    assert anonymous.status_code == 201 and registered.status_code == 201, (anonymous.text, registered.text)
    signed_in = requests.Session()
    assert signed_in.post(s.url("/api/v1/session"), json={"username": "demo", "password": s.demo_password}).status_code == 204
    for overrides in ({"response_type": "token"}, {"prompt": "none"}):
        def authorize(client_id, http=requests):
            query = {"response_type": "code", "client_id": client_id, "redirect_uri": "https://rp.example/cb", "scope": "openid",
                     "state": "s", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}
            query.update(overrides)
            return http.get(s.url("/oauth2/authorize"), params=query, allow_redirects=False)
        for http in (requests, signed_in):
            page = authorize(anonymous.json()["client_id"], http)
            assert page.status_code == 400 and "Location" not in page.headers, (overrides, page.status_code, page.headers.get("Location"))
            link = re.search(r'<a href="(https://rp\.example/cb\?[^"]*)">Return to https://rp\.example</a>', page.text)
            assert link and "error=" in link.group(1) and "state=s" in link.group(1), page.text
        answered = authorize(registered.json()["client_id"])
        assert answered.status_code == 303 and answered.headers["Location"].startswith("https://rp.example/cb?"), overrides
        assert "error=" in answered.headers["Location"]

"""The four compatible surfaces through nginx, called as their sources'
users would: plain HTTP with requests."""
import base64
import concurrent.futures
import time

import requests

from conftest import run_cli


def bearer(stack, scope=None):
    return {"Authorization": f"Bearer {stack.token(scope=scope)}"}


def test_integration_surface(stack):
    h = bearer(stack)
    r = requests.post(stack.url("/external/v1/oauth/client"), headers=h,
                      json={"password": "integration-pw", "application": "Shop", "accessScopes": ["createSubscription"], "extraData": {"a": 1}})
    assert r.status_code == 201, r.text
    cid = r.json()["clientId"]
    assert r.json() == {"clientId": cid, "application": "Shop", "accessScopes": ["createSubscription"], "extraData": {"a": 1}}
    # The password works at /oauth2/token, repeatedly (the verified-secret cache keeps it fast).
    for _ in range(3):
        assert stack.token(cid, "integration-pw")
    own = bearer_for(stack, cid, "integration-pw")
    assert requests.get(stack.url("/external/v1/oauth/client/current"), headers=own).json()["application"] == "Shop"
    assert requests.put(stack.url("/external/v1/oauth/client"), headers=h, json={"clientId": cid, "application": "Shop 2"}).status_code == 204
    listed = requests.get(stack.url("/external/v1/oauth/client"), headers=h).json()
    assert {"clientId": cid, "application": "Shop 2", "accessScopes": ["createSubscription"], "extraData": {"a": 1}, "primary": False} in listed
    assert requests.put(stack.url("/external/v1/oauth/client/password-reset"), headers=h, json={"clientId": cid, "password": "reset-password"}).status_code == 204
    assert requests.put(stack.url("/external/v1/oauth/password"), headers=bearer_for(stack, cid, "reset-password"),
                        json={"password": "own-password"}).status_code == 204
    bad = requests.post(stack.url("/external/v1/oauth/client"), headers=h, json={"password": "short", "application": "x"})
    assert bad.status_code == 400 and bad.json()["code"] == "GN0002"
    assert requests.get(stack.url("/external/v1/oauth/client")).json()["code"] == "AU0001"
    primary = requests.delete(stack.url(f"/external/v1/oauth/client/{stack.client_id}"), headers=h)
    assert primary.status_code == 409 and primary.json() == {"code": "AU0010", "message": "Can't remove the primary OAuth client"}
    assert requests.delete(stack.url(f"/external/v1/oauth/client/{cid}"), headers=h).status_code == 204
    assert requests.get(stack.url(f"/api/v1/clients/{cid}"), headers=h).status_code == 404


def bearer_for(stack, cid, secret):
    return {"Authorization": f"Bearer {stack.token(cid, secret)}"}


def test_identity_platform_surface(stack):
    h = bearer(stack)
    body = {"name": "Nightly", "description": "Reports", "accessTokenValiditySeconds": 300, "grantTypes": ["CLIENT_CREDENTIALS"],
            "accessType": "ONLINE", "enabled": True, "businessName": "Acme", "scope": ["createSubscription"]}
    r = requests.post(stack.url("/v3/oauth-clients"), headers=h, json=body)
    assert r.status_code == 200, r.text
    created = r.json()
    cid, secret = created["id"], created["secret"]
    assert created["accessTokenValiditySeconds"] == 300 and created["scope"] == ["createSubscription"]
    token = requests.post(stack.url("/oauth2/token"), data={"grant_type": "client_credentials"}, auth=(cid, secret)).json()
    assert token["expires_in"] == 300
    read = requests.get(stack.url(f"/v3/oauth-clients/{cid}"), headers=h).json()
    assert read["secret"] is None and read["lastUsed"] is not None
    patch = [{"op": "replace", "path": "/description", "value": "Nightly reports"}, {"op": "replace", "path": "/enabled", "value": False}]
    r = requests.patch(stack.url(f"/v3/oauth-clients/{cid}"), headers={**h, "Content-Type": "application/json-patch+json"}, json=patch)
    assert r.status_code == 200 and r.json()["enabled"] is False
    r = requests.patch(stack.url(f"/v3/oauth-clients/{cid}"), headers={**h, "Content-Type": "application/json-patch+json"},
                       json=[{"op": "replace", "path": "/scope", "value": ["x"]}])
    assert r.status_code == 400
    assert r.json()["detailCode"] == "400.1 Bad Request Content" and len(r.json()["trackingId"]) == 32
    assert r.json()["trackingId"] == r.headers["X-Request-Id"]
    r = requests.get(stack.url("/v3/oauth-clients"), headers=h, params={"filters": "lastUsed isnull", "count": "true"})
    # One page (50 by default) of however many the shared stack holds by now.
    assert r.status_code == 200 and len(r.json()) == min(50, int(r.headers["X-Total-Count"]))
    assert requests.get(stack.url("/v3/oauth-clients"), headers=h, params={"filters": "name eq x"}).status_code == 400
    unauth = requests.get(stack.url("/v3/oauth-clients"), headers={"Authorization": "Bearer nope"})
    assert unauth.status_code == 401 and unauth.json()["error"].startswith("JWT validation failed")
    assert requests.delete(stack.url(f"/v3/oauth-clients/{cid}"), headers=h).status_code == 204


def test_identity_platform_rate_limit_shape(limited_stack):
    stack = limited_stack
    h = bearer(stack, scope="sp:oauth-client:read")
    def call(_):
        return requests.get(stack.url("/v3/oauth-clients/nope"), headers=h)
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(call, range(160)))
    limited = [r for r in responses if r.status_code == 429]
    assert limited, sorted({r.status_code for r in responses})
    assert limited[0].json() == {"message": " Rate Limit Exceeded "}
    assert limited[0].headers["Retry-After"]
    time.sleep(1)


def test_app_surface(stack):
    h = bearer(stack)
    redirect = f"http://127.0.0.1:{stack.port}/demo/callback"
    r = requests.post(stack.url("/api/oauth/app"), headers=h, json={"name": "Gallery", "url": "https://gallery.example", "redirect_uri": redirect})
    assert r.status_code == 201, r.text
    app_id, key = r.json()["client_id"], r.json()["key"]
    app = requests.get(stack.url(f"/api/oauth/app/id/{app_id}")).json()
    assert app["name"] == "Gallery" and app["redirect_uri"] == redirect and app["logo"] == ""
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")
    r = requests.put(stack.url(f"/api/oauth/app/id/{app_id}/image"), headers=h, files={"image": ("a.png", png, "image/png")})
    assert r.status_code == 204, r.text
    assert requests.get(stack.url(f"/api/oauth/app/id/{app_id}")).json()["logo"].startswith("data:image/png;base64,")
    assert requests.get(stack.url(f"/api/oauth/app/id/{app_id}/image")).headers["Content-Type"] == "image/png"
    assert len(requests.get(stack.url("/api/oauth/app/ids"), params={"ids": f"{app_id},nope"}).json()["apps"]) == 1
    assert requests.get(stack.url("/api/oauth/app"), headers=h, params={"amount": 5, "offset": 0}).status_code == 200
    # The signed-in demo user approves the app directly and the app redeems the code.
    session = requests.Session()
    assert session.post(stack.url("/api/v1/session"), json={"username": "demo", "password": stack.demo_password}).status_code == 204
    code = session.post(stack.url("/api/oauth/auth/code"), headers={"X-CSRF-Token": session.cookies["lk_csrf"]},
                        json={"client_id": app_id, "scope": "openid profile", "nonce": "n"}).json()["code"]
    tokens = requests.post(stack.url("/api/oauth/token"), data={"grant_type": "authorization_code", "code": code}, auth=(app_id, key)).json()
    assert "id_token" in tokens
    info = requests.get(stack.url("/api/oauth/userinfo"), headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert info["preferred_username"] == "demo"
    assert requests.get(stack.url("/api/oauth/openid-configuration")).json()["issuer"] == stack.base
    assert requests.get(stack.url("/api/oauth/jwks")).json()["keys"]
    # The shared stack's demo user has connected many apps by now (other test files): one full page.
    connections = session.get(stack.url("/api/oauth/connection"), params={"amount": 255, "offset": 0}).json()["connections"]
    assert app_id in [c["client_id"] for c in connections]
    rotated = requests.put(stack.url(f"/api/oauth/app/id/{app_id}/rotate"), headers=h).json()
    assert rotated["client_id"] == app_id and rotated["key"] != key
    assert requests.delete(stack.url(f"/api/oauth/app/id/{app_id}"), headers=h).status_code == 204
    assert requests.get(stack.url(f"/api/oauth/app/id/{app_id}")).json() == {"message": "App not found."}
    assert app_id not in [c["client_id"] for c in session.get(stack.url("/api/oauth/connection"), params={"amount": 10, "offset": 0}).json()["connections"]]


def test_upstream_surface_json_and_xml(stack):
    auth = (stack.client_id, stack.client_secret)
    body = {"name": "Google SSO", "provider": "Google", "clientId": "g-123", "clientSecret": "g-secret", "scopes": ["openid", "email"],
            "sysId": "abcdefabcdefabcdefabcdefabcdef12", "opswiseGroups": ["ops"]}
    r = requests.post(stack.url("/uc/resources/oauthclient"), auth=auth, json=body)
    assert r.status_code == 200 and r.text == "Successfully created the OAuth Client with id abcdefabcdefabcdefabcdefabcdef12."
    record = requests.get(stack.url("/uc/resources/oauthclient"), auth=auth, params={"oauthclientname": "Google SSO"}).json()
    assert record["tokenEndpoint"] == "https://oauth2.googleapis.com/token" and "clientSecret" not in record
    xml = requests.get(stack.url("/uc/resources/oauthclient"), auth=auth, params={"oauthclientid": "abcdefabcdefabcdefabcdefabcdef12"},
                       headers={"Accept": "application/xml"})
    assert xml.headers["Content-Type"].startswith("application/xml") and "<oauthClient" in xml.text and "g-secret" not in xml.text
    update = ('<oauthClient><sysId>abcdefabcdefabcdefabcdefabcdef12</sysId><description>via XML</description>'
              '<version>1</version></oauthClient>')
    r = requests.put(stack.url("/uc/resources/oauthclient"), auth=auth, data=update, headers={"Content-Type": "application/xml"})
    assert r.status_code == 200, r.text
    stale = requests.put(stack.url("/uc/resources/oauthclient"), auth=auth, data=update, headers={"Content-Type": "application/xml"})
    assert stale.status_code == 409
    xxe = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           '<oauthClient><name>&e;</name></oauthClient>')
    r = requests.post(stack.url("/uc/resources/oauthclient"), auth=auth, data=xxe, headers={"Content-Type": "application/xml"})
    assert r.status_code == 400 and "root:" not in r.text
    listing = requests.get(stack.url("/uc/resources/oauthclient/list"), auth=auth, headers={"Accept": "application/xml"})
    assert listing.text.count("<oauthClient ") == 1 and "<oauthClients>" in listing.text
    assert requests.get(stack.url("/uc/resources/oauthclient/list")).status_code == 401
    refused = requests.get(stack.url("/uc/resources/oauthclient/list"), auth=(stack.client_id, "wrong"))
    assert refused.status_code == 403 and refused.text == "Operation prohibited due to security constraints."
    r = requests.delete(stack.url("/uc/resources/oauthclient"), auth=auth, params={"oauthclientname": "Google SSO"})
    assert r.text == "OAuth Client deleted successfully."
    r = requests.get(stack.url("/uc/resources/oauthclient"), auth=auth, params={"oauthclientname": "Google SSO"})
    assert r.status_code == 404 and r.text == 'An OAuth Client with name "Google SSO" does not exist.'


def test_cross_surface_visibility(stack):
    h = bearer(stack)
    ids = [
        requests.post(stack.url("/external/v1/oauth/client"), headers=h, json={"password": "cross-surface", "application": "A"}).json()["clientId"],
        requests.post(stack.url("/v3/oauth-clients"), headers=h, json={"name": "B", "description": "d", "accessTokenValiditySeconds": 900,
                      "grantTypes": ["CLIENT_CREDENTIALS"], "accessType": "ONLINE", "enabled": True}).json()["id"],
        requests.post(stack.url("/api/oauth/app"), headers=h, json={"name": "C", "redirect_uri": "https://c.example/cb"}).json()["client_id"],
        requests.post(stack.url("/api/v1/clients"), headers=h, json={"client_name": "D"}).json()["client_id"],
    ]
    for cid in ids:
        assert requests.get(stack.url(f"/api/v1/clients/{cid}"), headers=h).status_code == 200
        assert requests.get(stack.url(f"/v3/oauth-clients/{cid}"), headers=h).status_code == 200
        # SPEC 6.4: the public app read serves only clients that can ask for consent (the app, C).
        assert requests.get(stack.url(f"/api/oauth/app/id/{cid}")).status_code == (200 if cid == ids[2] else 404)
    for cid, path in zip(ids, ["/v3/oauth-clients/{}", "/external/v1/oauth/client/{}", "/api/v1/clients/{}", "/api/oauth/app/id/{}"]):
        assert requests.delete(stack.url(path.format(cid)), headers=h).status_code == 204
        assert requests.get(stack.url(f"/api/v1/clients/{cid}"), headers=h).status_code == 404
        assert requests.get(stack.url(f"/api/oauth/app/id/{cid}")).status_code == 404
    surfaces = {e["surface"] for e in requests.get(stack.url("/api/v1/audit"), headers=h, params={"limit": 250}).json()["events"]}
    assert {"integration", "identity", "app", "native"} <= surfaces

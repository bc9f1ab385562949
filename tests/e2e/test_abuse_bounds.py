"""Session 34's attacker pass through nginx, on both stores (two nodes on PostgreSQL): the audit log, a client's
changes to itself, consent answers and revocation with every kind of wrong credential, and the audit total with
writes racing on every node."""
from concurrent.futures import ThreadPoolExecutor

import requests

from test_security_review import Browser, Org, PKCE, code_params, user_tokens


def creds(stack, org):
    app, app_secret, _ = org.web_app(scope="openid clients:read clients:write audit:read manageExternalClients",
                                  grant_types=("authorization_code", "refresh_token", "client_credentials"))
    user = user_tokens(stack, app, app_secret, f"http://127.0.0.1:{stack.port}/demo/callback", scope="openid")["access_token"]
    doomed, doomed_secret = org.client(scope="clients:write audit:read manageExternalClients", grant_types=["client_credentials"])
    deleted = org.token(client_id=doomed, secret=doomed_secret)
    assert requests.delete(stack.url(f"/api/v1/clients/{doomed}"), headers=org.bearer()).status_code == 204
    off, off_secret = org.client(scope="clients:write audit:read manageExternalClients", grant_types=["client_credentials"])
    disabled = org.token(client_id=off, secret=off_secret)
    assert requests.patch(stack.url(f"/api/v1/clients/{off}"), headers=org.bearer(), json={"enabled": False}).status_code == 200
    return {"user": user, "deleted": deleted, "disabled": disabled, "none": None, "garbage": "x.y.z"}


def call(stack, method, path, token, body=None):
    return requests.request(method, stack.url(path), headers={"Authorization": f"Bearer {token}"} if token else {}, json=body)


def test_touched_endpoints_refuse_every_wrong_credential(stack):
    org, other = Org(stack), Org(stack)
    c = creds(stack, org)
    for name, token in c.items():
        for method, path, body in [("GET", "/api/v1/audit", None), ("GET", "/api/v1/audit?before=5", None),
                                   ("POST", "/api/v1/clients/current/secret", {}),
                                   ("PUT", "/external/v1/oauth/password", {"password": "attacker-chosen-1"}),
                                   ("GET", "/external/v1/oauth/client/current", None)]:
            r = call(stack, method, path, token, body)
            assert 400 <= r.status_code < 500, (method, path, name, r.status_code, r.text[:200])
    # A token narrowed to clients:read cannot read the log.
    assert call(stack, "GET", "/api/v1/audit", org.token("clients:read")).status_code == 403
    # Another organization reads its own log only; `before` and the total stay its own.
    mine = {e["id"] for e in call(stack, "GET", "/api/v1/audit?limit=250", org.token()).json()["events"]}
    r = call(stack, "GET", "/api/v1/audit?limit=250", other.token())
    theirs = {e["id"] for e in r.json()["events"]}
    assert theirs and not mine & theirs and int(r.headers["X-Total-Count"]) == len(theirs)
    r = call(stack, "GET", f"/api/v1/audit?before={max(mine) + 1}", other.token())
    assert {e["id"] for e in r.json()["events"]} <= theirs
    for q in ["offset=10001", "before=-1", "before=abc", "limit=251", "offset=99999999999999999999"]:
        assert call(stack, "GET", f"/api/v1/audit?{q}", org.token()).status_code == 400, q


def test_registration_allowance_is_not_spent_by_wrong_tokens(stack):
    org, other = Org(stack), Org(stack)
    r = requests.post(stack.url("/oauth2/register"), headers=org.bearer(),
                      json={"redirect_uris": ["https://rp.example/cb"], "client_name": "RP", "token_endpoint_auth_method": "none"})
    assert r.status_code == 201, r.text
    cid, reg = r.json()["client_id"], r.json()["registration_access_token"]
    body = {"client_id": cid, "redirect_uris": ["https://rp.example/2"], "token_endpoint_auth_method": "none"}
    for token in [None, "lkg_wrong", org.token(), other.token(), org.token("clients:read")] * 6:
        assert call(stack, "PUT", f"/oauth2/register/{cid}", token, body).status_code == 401
    # Twenty a client on each node (two on PostgreSQL, nginx spreading the requests): none spent by the refusals above.
    statuses = [call(stack, "PUT", f"/oauth2/register/{cid}", reg, body).status_code for _ in range(20 * stack.nodes + 1)]
    assert statuses[:20] == [200] * 20 and set(statuses) == {200, 429}, statuses


def test_answers_and_revocation_across_browsers_and_clients(stack):
    org, other = Org(stack), Org(stack)
    app, _, _ = org.web_app(public=True)
    redirect = f"http://127.0.0.1:{stack.port}/demo/callback"
    owner, stranger = Browser(stack).login(), Browser(stack).login()
    request_id, page = owner.pending(code_params(app, redirect, PKCE(), scope="openid"))
    assert page == "consent"
    path = f"/api/v1/authorization-requests/{request_id}"
    assert stranger.http.post(stack.url(path + "/accept"), headers=stranger.csrf(), json={"scope": ["openid"]}).status_code == 404
    assert requests.post(stack.url(path + "/accept"), json={"scope": ["openid"]}).status_code in (401, 403)
    assert owner.http.post(stack.url(path + "/accept"), headers=owner.csrf(), json={"scope": ["openid"]}).status_code == 200
    assert owner.http.post(stack.url(path + "/reject"), headers=owner.csrf(), json={}).status_code == 409
    assert stranger.http.post(stack.url(path + "/reject"), headers=stranger.csrf(), json={}).status_code == 404
    # Revocation by another organization's client, or by the public client's id alone from another origin: the token lives.
    token = org.token()
    assert requests.post(stack.url("/oauth2/revoke"), data={"token": token}, auth=(other.client_id, other.secret)).status_code == 200
    assert requests.post(stack.url("/oauth2/revoke"), data={"token": token, "client_id": app},
                         headers={"Origin": "https://evil.example"}).headers.get("Access-Control-Allow-Origin") is None
    assert requests.get(stack.url("/api/v1/organization"), headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_the_audit_total_holds_with_writes_racing_on_every_node(stack):
    org = Org(stack)
    def create(i):
        return requests.post(stack.url("/api/v1/clients"), headers=org.bearer(), json={"client_name": f"race {i}"}).status_code
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(create, range(24))) == {201}
    events, before = [], None
    while True:
        q = f"limit=250&before={before}" if before else "limit=250"
        r = call(stack, "GET", f"/api/v1/audit?{q}", org.token())
        page = r.json()["events"]
        if not page:
            break
        events += page
        before = page[-1]["id"]
    assert int(r.headers["X-Total-Count"]) == len(events) >= 25

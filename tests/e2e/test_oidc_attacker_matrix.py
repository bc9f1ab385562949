"""Every kind of caller against the endpoints SPEC 10.1 added (registration,
its configuration endpoint, the profile API, logout): a full management
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

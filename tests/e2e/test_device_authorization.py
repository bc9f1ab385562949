"""The device authorization grant (RFC 8628) through nginx: the device side
driven as a command-line client would (authlib's OAuth2Session posting the
device_code grant, honouring interval and slow_down), the user side in
Chromium (the /device page, sign-in, the consent screen, keyboard only),
and negative cases named after the section they enforce."""
import concurrent.futures
import json
import threading
import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.requests_client import OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC

from conftest import run_cli
from test_browser import OUT, browser, sign_in, wait  # noqa: F401 (the browser fixture)
from test_dpop import proof
from test_private_key_jwt import ASSERTION_TYPE, assertion
from test_user_flow import Browser

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


_device_orgs = {}


def device_org_bearer(stack):
    """A bearer token of an organization of this file's own (one per stack), so that its clients
    do not spend the shared organization's client allowance."""
    if stack.base not in _device_orgs:
        org = json.loads(run_cli(stack, "org", "create", "Devices", "--client-limit", "1000").stdout)
        _device_orgs[stack.base] = (org["client_id"], org["client_secret"])
    client_id, secret = _device_orgs[stack.base]
    return {"Authorization": f"Bearer {stack.token(client_id, secret)}"}


def device_client(stack, public=True, name="Living-room TV", **extra):
    body = {"client_name": name, "grant_types": [DEVICE_GRANT, "refresh_token"], "scope": "openid profile offline_access",
            "token_endpoint_auth_method": "none" if public else "client_secret_basic", **extra}
    r = requests.post(stack.url("/api/v1/clients"), headers=device_org_bearer(stack), json=body)
    assert r.status_code == 201, r.text
    return r.json()["client_id"], r.json().get("client_secret")


def start(stack, client_id, secret=None, scope="openid profile offline_access"):
    data = {"scope": scope}
    if secret is None:
        data["client_id"] = client_id
    r = requests.post(stack.url("/oauth2/device_authorization"), data=data, auth=(client_id, secret) if secret else None)
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    return r.json()


def poll_once(stack, client_id, device_code, secret=None, headers=None):
    data = {"grant_type": DEVICE_GRANT, "device_code": device_code}
    if secret is None:
        data["client_id"] = client_id
    return requests.post(stack.url("/oauth2/token"), data=data, auth=(client_id, secret) if secret else None, headers=headers or {})


def user_enters(stack, person, user_code, approve=True, scope=None):
    """The user's side over HTTP: the device page's API, then the consent answer."""
    csrf = {"X-CSRF-Token": person.http.cookies.get("lk_csrf")}
    r = person.http.post(stack.url("/api/v1/device"), headers=csrf, json={"user_code": user_code})
    assert r.status_code == 200, r.text
    request_id = r.json()["request_id"]
    details = person.http.get(stack.url(f"/api/v1/authorization-requests/{request_id}")).json()
    assert details["device"] is True and details["redirect_uri"] is None
    path = "accept" if approve else "reject"
    body = {"scope": scope or [s["name"] for s in details["scopes"]], "remember": False} if approve else {}
    answer = person.http.post(stack.url(f"/api/v1/authorization-requests/{request_id}/{path}"), headers=csrf, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["redirect_to"]


class CLI:
    """What a command-line tool does (RFC 8628 §3.4, §3.5): polls in the
    background at the interval, five seconds more after each slow_down,
    until tokens or a final error."""

    def __init__(self, stack, client_id, started, secret=None):
        auth = "client_secret_basic" if secret else "none"
        self.session = OAuth2Session(client_id, secret, token_endpoint_auth_method=auth)
        self.stack, self.started = stack, started
        self.errors, self.token, self.final = [], None, None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        interval = self.started["interval"]
        deadline = time.time() + self.started["expires_in"]
        while time.time() < deadline:
            time.sleep(interval)
            try:
                self.token = self.session.fetch_token(self.stack.url("/oauth2/token"), grant_type=DEVICE_GRANT,
                                                      device_code=self.started["device_code"])
                return
            except OAuthError as e:
                self.errors.append(e.error)
                if e.error == "slow_down":
                    interval += 5
                elif e.error != "authorization_pending":
                    self.final = e.error
                    return

    def wait(self, timeout=60):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still polling: {self.errors}"


def test_rfc8628_a_cli_gets_tokens_while_the_user_approves_in_chromium(stack, browser):
    client_id, _ = device_client(stack, name="Terminal <b>CLI</b>")
    started = start(stack, client_id)
    assert started["verification_uri"] == stack.url("/device/")
    cli = CLI(stack, client_id, started)

    # §3.3.1: the user opens the complete URI; the code is filled in but still to be confirmed.
    browser.get(started["verification_uri_complete"])
    wait(browser, EC.url_contains("/login/"))
    assert "then=device" in browser.current_url
    sign_in(browser, stack)
    wait(browser, EC.url_contains("/device/"))
    field = wait(browser, EC.visibility_of_element_located((By.ID, "user-code")))
    assert field.get_attribute("value") == started["user_code"]
    # Screen readers: the field has its label and hint, errors are announced.
    label = browser.find_element(By.CSS_SELECTOR, "label[for='user-code']")
    assert "Code shown on your device" in label.text
    assert field.get_attribute("aria-describedby") == "code-hint"
    assert browser.find_element(By.ID, "error").get_attribute("role") == "alert"
    assert browser.switch_to.active_element.get_attribute("id") == "user-code"
    # A mistyped code first: the page says so and keeps focus on the field.
    field.clear()
    field.send_keys("BBBB-BBBB" + Keys.ENTER)
    wait(browser, lambda d: "not valid" in d.find_element(By.ID, "error").text)
    assert browser.switch_to.active_element.get_attribute("id") == "user-code"
    assert field.get_attribute("aria-invalid") == "true"
    # Then the right one, typed in lower case with a blank: keyboard only.
    field.clear()
    field.send_keys(started["user_code"].lower().replace("-", " ") + Keys.ENTER)
    wait(browser, EC.url_contains("/consent/"))
    title = wait(browser, lambda d: d.find_element(By.ID, "title") if "wants to access" in d.find_element(By.ID, "title").text else False)
    assert "Terminal <b>CLI</b>" in title.text
    assert "device" in browser.find_element(By.ID, "lead").text
    assert browser.find_element(By.ID, "redirect").text == "After you decide, return to your device."
    # Nothing to remember for a device: the option is not shown.
    assert not browser.find_element(By.ID, "remember").is_displayed()
    browser.save_screenshot(str(OUT / "device-consent.png"))
    assert browser.switch_to.active_element.get_attribute("id") == "approve"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait(browser, EC.url_contains("/device/?result=approved"))
    status = wait(browser, lambda d: d.find_element(By.ID, "result") if d.find_element(By.ID, "result").text else False)
    assert "return to your device" in status.text
    assert browser.find_element(By.ID, "result").get_attribute("role") == "status"

    cli.wait()
    assert cli.final is None and cli.token, cli.errors
    assert set(cli.errors) <= {"authorization_pending", "slow_down"}
    token = cli.token
    assert token["token_type"] == "Bearer" and token["scope"] == "openid profile offline_access" and token["refresh_token"]
    keys = KeySet.import_key_set(requests.get(stack.url("/oauth2/jwks")).json())
    claims = jwt.decode(token["id_token"], keys).claims
    assert claims["aud"] == client_id and claims["iss"] == stack.base and "nonce" not in claims
    userinfo = requests.get(stack.url("/oauth2/userinfo"), headers={"Authorization": f"Bearer {token['access_token']}"})
    assert userinfo.status_code == 200 and userinfo.json()["sub"] == claims["sub"]
    # Redeemed once; presented again, the device code revokes what it issued (RFC 6749 §4.1.2, as a code does).
    assert poll_once(stack, client_id, started["device_code"]).json()["error"] == "invalid_grant"
    refreshed = requests.post(stack.url("/oauth2/token"), data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"],
                                                                "client_id": client_id})
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant", refreshed.text
    assert requests.get(stack.url("/oauth2/userinfo"), headers={"Authorization": f"Bearer {token['access_token']}"}).status_code == 401


def test_rfc8628_section_3_4_a_confidential_client_authenticates_and_may_bind_its_tokens(stack):
    client_id, secret = device_client(stack, public=False)
    # §3.1: the device authorization endpoint authenticates a confidential client as the token endpoint does.
    r = requests.post(stack.url("/oauth2/device_authorization"), data={"scope": "openid"}, auth=(client_id, secret + "x"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert requests.post(stack.url("/oauth2/device_authorization"), data={"scope": "openid", "client_id": client_id}).status_code == 401
    started = start(stack, client_id, secret, scope="openid profile")
    person = Browser(stack)
    person.login()
    assert user_enters(stack, person, started["user_code"]) == stack.url("/device/?result=approved")
    # RFC 9449 with the device grant: a DPoP proof with the poll binds the access token.
    key = ECKey.generate_key("P-256")
    r = poll_once(stack, client_id, started["device_code"], secret, headers={"DPoP": proof(key, "POST", stack.url("/oauth2/token"))})
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP"
    token = r.json()["access_token"]
    assert requests.get(stack.url("/oauth2/userinfo"), headers={"Authorization": f"DPoP {token}"}).status_code == 401
    bound = requests.get(stack.url("/oauth2/userinfo"), headers={"Authorization": f"DPoP {token}",
                                                                "DPoP": proof(key, "GET", stack.url("/oauth2/userinfo"), token)})
    assert bound.status_code == 200, bound.text


def test_rfc8628_section_3_5_pending_then_slow_down(stack):
    client_id, _ = device_client(stack)
    started = start(stack, client_id)
    first = poll_once(stack, client_id, started["device_code"])
    assert first.status_code == 400 and first.json()["error"] == "authorization_pending"
    assert first.headers["Cache-Control"] == "no-store"
    fast = poll_once(stack, client_id, started["device_code"])
    assert fast.status_code == 400 and fast.json()["error"] == "slow_down"


def test_rfc8628_section_3_5_a_denial_is_access_denied(stack):
    client_id, _ = device_client(stack)
    started = start(stack, client_id)
    person = Browser(stack)
    person.login()
    assert user_enters(stack, person, started["user_code"], approve=False) == stack.url("/device/?result=denied")
    r = poll_once(stack, client_id, started["device_code"])
    assert r.status_code == 400 and r.json()["error"] == "access_denied"


def test_rfc8628_section_3_5_parallel_polls_redeem_an_approved_code_once(stack):
    client_id, _ = device_client(stack)
    started = start(stack, client_id)
    person = Browser(stack)
    person.login()
    user_enters(stack, person, started["user_code"], scope=["openid"])
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: poll_once(stack, client_id, started["device_code"]), range(8)))
    assert [a.status_code for a in answers].count(200) == 1, [a.text for a in answers]
    assert {a.json()["error"] for a in answers if a.status_code != 200} <= {"invalid_grant"}


def test_rfc8628_section_3_3_a_code_is_entered_by_a_signed_in_user_only_and_answered_in_its_browser(stack):
    client_id, _ = device_client(stack)
    started = start(stack, client_id)
    anonymous = requests.post(stack.url("/api/v1/device"), json={"user_code": started["user_code"]})
    assert anonymous.status_code == 401
    person = Browser(stack)
    person.login()
    csrf = {"X-CSRF-Token": person.http.cookies.get("lk_csrf")}
    assert person.http.post(stack.url("/api/v1/device"), json={"user_code": started["user_code"]}).status_code == 403, "no CSRF header"
    request_id = person.http.post(stack.url("/api/v1/device"), headers=csrf, json={"user_code": started["user_code"]}).json()["request_id"]
    # Another browser signed in as the same user cannot see or answer the consent request.
    other = Browser(stack)
    other.login()
    assert other.http.get(stack.url(f"/api/v1/authorization-requests/{request_id}")).status_code == 404
    answer = other.http.post(stack.url(f"/api/v1/authorization-requests/{request_id}/accept"),
                             headers={"X-CSRF-Token": other.http.cookies.get("lk_csrf")}, json={"scope": ["openid"], "remember": False})
    assert answer.status_code == 404
    assert poll_once(stack, client_id, started["device_code"]).json()["error"] == "authorization_pending"


def test_rfc8628_section_3_1_bad_requests_change_nothing(stack):
    client_id, _ = device_client(stack)
    for data, error in (({"client_id": client_id, "scope": "openid clients:write"}, "invalid_scope"),
                        ({"client_id": client_id, "scope": "openid email"}, "invalid_scope"), ({"scope": "openid"}, "invalid_client")):
        r = requests.post(stack.url("/oauth2/device_authorization"), data=data)
        assert r.status_code in (400, 401) and r.json()["error"] == error, r.text
    r = requests.post(stack.url("/oauth2/device_authorization"), json={"client_id": client_id, "scope": "openid"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = requests.post(stack.url("/oauth2/device_authorization"), data={"client_id": client_id, "scope": "openid", "x": "y" * 20000})
    assert r.status_code == 413
    # A client without the grant, and the primary (management) client, get no device codes.
    r = requests.post(stack.url("/oauth2/device_authorization"), data={"scope": "openid"}, auth=(stack.client_id, stack.client_secret))
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    discovery = requests.get(stack.url("/.well-known/openid-configuration")).json()
    assert discovery["device_authorization_endpoint"] == stack.url("/oauth2/device_authorization")
    assert DEVICE_GRANT in discovery["grant_types_supported"]
    # §3.3.1: the short URI a device may show leads to the page.
    short = requests.get(stack.url("/device?user_code=BCDF-GHJK"), allow_redirects=False)
    assert short.status_code == 301 and short.headers["Location"].endswith("/device/?user_code=BCDF-GHJK")


def test_rfc8628_section_5_1_user_code_guesses_are_throttled(limited_stack):
    stack = limited_stack
    person = Browser(stack)
    person.login()
    csrf = {"X-CSRF-Token": person.http.cookies.get("lk_csrf")}
    statuses = []
    for _ in range(30):
        r = person.http.post(stack.url("/api/v1/device"), headers=csrf, json={"user_code": "BCDF-GHJK"})
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.headers["Retry-After"]
            break
    assert 429 in statuses and set(statuses) <= {404, 429}, statuses
    time.sleep(3)  # let nginx's bucket refill for the tests after this one (the workers' window is per account)


def test_rfc8628_section_5_2_device_authorization_requests_are_throttled_per_address(limited_stack):
    stack = limited_stack
    client_id, _ = device_client(stack, name="Throttled TV")
    statuses = []
    for _ in range(40):
        r = requests.post(stack.url("/oauth2/device_authorization"), data={"client_id": client_id, "scope": "openid"})
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.headers["Retry-After"] and r.json()["error"] == "rate_limited"
            break
    assert 429 in statuses and set(statuses) <= {200, 429}, statuses
    time.sleep(3)


def test_rfc8628_with_private_key_jwt_the_device_authenticates_with_assertions_at_both_endpoints(stack):
    key = ECKey.generate_key("P-256")
    public = {**key.as_dict(private=False), "kid": "tv-1"}
    client_id, secret = device_client(stack, public=False, name="Signed TV", token_endpoint_auth_method="private_key_jwt",
                                      jwks={"keys": [public]})
    assert secret is None
    endpoint = stack.url("/oauth2/device_authorization")
    # An assertion for the endpoint receiving it (SPEC 10.2), used once.
    signed = assertion(stack, client_id, key, kid="tv-1", aud=endpoint)
    data = {"client_id": client_id, "scope": "openid", "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}
    started = requests.post(endpoint, data=data)
    assert started.status_code == 200, started.text
    replayed = requests.post(endpoint, data=data)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"
    person = Browser(stack)
    person.login()
    user_enters(stack, person, started.json()["user_code"])
    # The poll: authlib's private_key_jwt client authentication.
    session = OAuth2Session(client_id, key, token_endpoint_auth_method="private_key_jwt")
    session.register_client_auth_method(PrivateKeyJWT(stack.url("/oauth2/token"), alg="ES256", headers={"kid": "tv-1"},
                                                      claims={"exp": int(time.time()) + 120}))
    token = session.fetch_token(stack.url("/oauth2/token"), grant_type=DEVICE_GRANT, device_code=started.json()["device_code"])
    assert token["scope"] == "openid" and token["id_token"]

"""The pages in a real headless Chromium (Debian's chromium + chromedriver,
driven by selenium): sign in on /login/, approve on /consent/ with the
keyboard, land on the redirect URI with code and state; the demo app shows
the ID token's claims; revoke on /account/. Screenshots go to test-output/."""
import json
import secrets
import sqlite3
import subprocess
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ROOT, StaticPage, chromium, run_cli

OUT = ROOT / "test-output"


@pytest.fixture
def browser():
    # --ignore-certificate-errors: the https stack's certificate comes from a CA made for the test run.
    with chromium("--window-size=1100,900", "--disable-extensions", "--no-first-run", "--ignore-certificate-errors") as driver:
        driver.set_page_load_timeout(30)
        OUT.mkdir(exist_ok=True)
        yield driver


def wait(driver, condition, timeout=15):
    return WebDriverWait(driver, timeout).until(condition)


def make_app(stack, name, redirect):
    r = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
        "client_name": name, "client_uri": "https://photos.example", "redirect_uris": [redirect],
        "policy_uri": "https://photos.example/privacy", "tos_uri": "https://photos.example/terms",
        "grant_types": ["authorization_code", "refresh_token"], "scope": "openid profile email offline_access",
        "token_endpoint_auth_method": "none"})
    assert r.status_code == 201, r.text
    return r.json()["client_id"]


def sign_in(driver, stack, username="demo", password=None):
    wait(driver, EC.presence_of_element_located((By.ID, "username")))
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys((password or stack.demo_password) + Keys.ENTER)


def test_sign_in_consent_and_redirect_with_code_and_state(stack, browser):
    redirect = f"http://127.0.0.1:{stack.port}/demo/landing"
    name = 'Photo <img src=x onerror="document.title=1">Book'
    client_id = make_app(stack, name, redirect)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect, "scope": "openid profile email",
              "state": "browser-state-1", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}
    browser.get(stack.url("/oauth2/authorize?" + urlencode(params)))
    assert "/login/" in browser.current_url
    sign_in(browser, stack)
    wait(browser, EC.url_contains("/consent/"))
    title = wait(browser, lambda d: d.find_element(By.ID, "title") if "wants to access" in d.find_element(By.ID, "title").text else False)
    # Client-supplied text is rendered as text, never as HTML.
    assert name in title.text
    assert browser.find_elements(By.CSS_SELECTOR, "#app img[src='x']") == []
    assert browser.title != "1"
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".scope label")]
    assert any("See your email address" in t for t in labels)
    homepage = browser.find_element(By.CSS_SELECTOR, "#app a")
    assert homepage.get_attribute("href") == "https://photos.example/"
    # RFC 7591 policy_uri and tos_uri, linked where the user decides.
    assert browser.find_element(By.ID, "policy").get_attribute("href") == "https://photos.example/privacy"
    assert browser.find_element(By.ID, "tos").get_attribute("href") == "https://photos.example/terms"
    # SPEC 7.1: the consent page names the organization that registered the client.
    assert browser.find_element(By.CSS_SELECTOR, "#app .organization").text == "Registered by E2E"
    # A public app on a loopback address is asked every time (RFC 8252 §8.6): nothing to remember is offered.
    assert not browser.find_element(By.ID, "remember").is_displayed()
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(OUT / "consent.png"))
    # Keyboard only: the approve button has focus; Enter submits.
    assert browser.switch_to.active_element.get_attribute("id") == "approve"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait(browser, EC.url_contains("/demo/landing"))
    query = parse_qs(urlparse(browser.current_url).query)
    assert query["state"] == ["browser-state-1"]
    assert query["code"][0].startswith("lkc_")
    assert query["iss"] == [stack.base]


def test_prompt_login_cannot_be_skipped_by_opening_the_consent_page(stack, browser):
    """OIDC Core 3.1.2.1 (attacker review, session 10): with prompt=login, editing /login/?request= into
    /consent/?request= sends the browser back to sign in; answered after signing in again, the code comes."""
    redirect = f"http://127.0.0.1:{stack.port}/demo/landing"
    client_id = make_app(stack, "Fresh sign-in app", redirect)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect, "scope": "openid",
              "state": "fresh-1", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}
    browser.get(stack.url("/oauth2/authorize?" + urlencode(params)))
    sign_in(browser, stack)
    wait(browser, EC.url_contains("/consent/"))
    browser.get(stack.url("/oauth2/authorize?" + urlencode({**params, "prompt": "login"})))
    wait(browser, EC.url_contains("/login/"))
    request_id = parse_qs(urlparse(browser.current_url).query)["request"][0]
    browser.get(stack.url("/consent/?" + urlencode({"request": request_id})))
    wait(browser, EC.url_contains("/login/"))
    assert parse_qs(urlparse(browser.current_url).query)["request"] == [request_id]
    # The page's API says the same to a script that skips the page.
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    accepted = requests.post(stack.url(f"/api/v1/authorization-requests/{request_id}/accept"), cookies=cookies,
                             headers={"X-CSRF-Token": cookies["lk_csrf"]}, json={"scope": ["openid"], "remember": True})
    assert accepted.status_code == 401 and accepted.json()["code"] == "login_required", accepted.text
    sign_in(browser, stack)
    wait(browser, EC.url_contains("/consent/"))
    wait(browser, lambda d: d.find_element(By.ID, "approve").is_enabled())
    browser.find_element(By.ID, "approve").click()
    wait(browser, EC.url_contains("/demo/landing"))
    query = parse_qs(urlparse(browser.current_url).query)
    assert query["state"] == ["fresh-1"] and query["code"][0].startswith("lkc_")


def test_demo_app_shows_claims_and_account_page_revokes(stack, browser):
    client_id = make_app(stack, "Latchkey demo app", f"http://127.0.0.1:{stack.port}/demo/callback")
    browser.get(stack.url(f"/demo/?client_id={client_id}"))
    wait(browser, EC.url_contains("/login/"))
    sign_in(browser, stack)
    wait(browser, EC.element_to_be_clickable((By.ID, "approve"))).click()
    wait(browser, EC.url_contains("/demo/callback"))
    wait(browser, lambda d: "Signed in as" in d.find_element(By.ID, "title").text)
    assert "Demo User" in browser.find_element(By.ID, "title").text
    claims = browser.find_element(By.ID, "claims").text
    assert "demo@example.com" in claims and "at_hash" in claims
    browser.save_screenshot(str(OUT / "demo-callback.png"))
    # The account page lists the app; revoke removes it.
    browser.get(stack.url("/account/"))
    button = wait(browser, EC.element_to_be_clickable((By.CSS_SELECTOR, f"button[aria-label='Revoke access for Latchkey demo app']")))
    browser.save_screenshot(str(OUT / "account.png"))
    button.click()
    wait(browser, lambda d: "was revoked" in d.find_element(By.ID, "status").text)
    assert browser.find_elements(By.CSS_SELECTOR, "button[aria-label='Revoke access for Latchkey demo app']") == []


def test_login_hint_prefills_the_username_and_the_user_may_change_it(stack, browser):
    """OIDC Core 3.1.2.1 login_hint: the sign-in page opens with the hinted username filled in and the password field
    focused; the user signs in as whoever they type instead (a hint, not a binding). A hint with a control or
    bidirectional-override character never reaches the page."""
    redirect = f"http://127.0.0.1:{stack.port}/demo/landing"
    client_id = make_app(stack, "Hinted app", redirect)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect, "scope": "openid",
              "state": "hint-1", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}
    browser.get(stack.url("/oauth2/authorize?" + urlencode({**params, "login_hint": "someone@example.com"})))
    wait(browser, EC.presence_of_element_located((By.ID, "username")))
    username = wait(browser, lambda d: d.find_element(By.ID, "username") if d.find_element(By.ID, "username").get_attribute("value") else False)
    assert username.get_attribute("value") == "someone@example.com"
    assert browser.switch_to.active_element.get_attribute("id") == "password"
    username.clear()
    sign_in(browser, stack)
    wait(browser, EC.url_contains("/consent/"))
    browser.delete_all_cookies()
    browser.get(stack.url("/oauth2/authorize?" + urlencode({**params, "login_hint": "ali\u202ece"})))
    wait(browser, EC.presence_of_element_located((By.ID, "username")))
    assert "login_hint" not in browser.current_url
    assert browser.find_element(By.ID, "username").get_attribute("value") == ""


def test_login_page_shows_one_message_for_bad_credentials(stack, browser):
    browser.get(stack.url("/login/"))
    wait(browser, EC.presence_of_element_located((By.ID, "username")))
    browser.find_element(By.ID, "username").send_keys("nobody")
    browser.find_element(By.ID, "password").send_keys("wrong-password" + Keys.ENTER)
    alert = wait(browser, lambda d: d.find_element(By.ID, "error") if d.find_element(By.ID, "error").text else False)
    assert alert.text == "The username or password is incorrect."
    assert alert.get_attribute("role") == "alert"


def test_pages_carry_strict_headers(stack):
    for path in ("/login/", "/consent/", "/account/", "/demo/"):
        r = requests.get(stack.url(path))
        assert r.status_code == 200
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert "<script>" not in r.text  # no inline script


def test_another_sites_logout_form_asks_the_user_and_leaves_the_session(stack, browser):
    """Attacker review, session 19: a form on another site POSTs /oauth2/logout. Chromium sends no
    SameSite=Lax cookie with a cross-site POST; the server used to answer "You are signed out" and
    clear the cookies while the session lived on. The POST now goes again as a GET, which carries the
    cookies: without an id_token_hint the user is asked, and nothing ends unasked."""
    browser.get(stack.url("/login/"))
    sign_in(browser, stack)
    wait(browser, EC.url_contains("/account/"))

    def session_status():
        return browser.execute_async_script("const done = arguments[0]; fetch('/api/v1/session').then(r => done(r.status))")

    assert session_status() == 200
    form = (f'<!doctype html><form id="f" method="post" action="{stack.url("/oauth2/logout")}">'
            '<input type="hidden" name="state" value="x"></form><script>document.getElementById("f").submit()</script>')

    page = StaticPage(form)
    try:
        # localhost and 127.0.0.1 are different sites: the POST is cross-site.
        browser.get(f"http://localhost:{page.port}/")
        heading = wait(browser, lambda d: d.find_element(By.TAG_NAME, "h1") if "/oauth2/logout" in d.current_url else False)
        assert heading.text == "Sign out of Latchkey?", browser.page_source[:500]
    finally:
        page.stop()
    browser.get(stack.url("/account/"))  # the confirmation page's CSP allows no fetch
    assert session_status() == 200, "the session is still there, its cookie too"


def test_the_account_page_lists_every_connection_page_by_page(stack, browser):
    """/api/v1/me/connections is paged (SPEC 2: 250 at most a page): the account page reads every page. A user
    with 251 connected apps sees all of them (the rows written straight into the store: no organization holds
    that many clients by default, and 251 consents through the browser would take minutes)."""
    name = "many-" + secrets.token_hex(4)
    password = "a long enough password " + secrets.token_hex(4)
    user_id = json.loads(run_cli(stack, "user", "add", name, "--password-stdin", stdin=password + "\n").stdout)["user_id"]
    org = json.loads(run_cli(stack, "org", "create", name, "--client-limit", "300").stdout)
    token = requests.post(stack.url("/oauth2/token"), data={"grant_type": "client_credentials", "scope": "clients:write"},
                          auth=(org["client_id"], org["client_secret"])).json()["access_token"]
    ids = []
    for i in range(251):
        r = requests.post(stack.url("/api/v1/clients"), headers={"Authorization": f"Bearer {token}"}, json={
            "client_name": f"App {i:03d}", "redirect_uris": ["https://apps.example/cb"], "grant_types": ["authorization_code"],
            "scope": "openid", "token_endpoint_auth_method": "none"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["client_id"])
    rows = ", ".join(f"('{user_id}', '{cid}', '', 'openid', 0, 0, {1_700_000_000_000 + i})" for i, cid in enumerate(ids))
    statement = ("INSERT INTO connections(user_id, client_id, remembered_scope, granted_scope, auth_time, access_time, created_at) "
                 f"VALUES {rows}")
    if stack.database_url:
        subprocess.run(["psql", stack.database_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", statement], check=True, capture_output=True)
    else:
        with sqlite3.connect(stack.db, timeout=10) as db:
            db.execute(statement)
    browser.delete_all_cookies()
    browser.get(stack.url("/login/"))  # then /account/
    sign_in(browser, stack, name, password)
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#connections li")) == 251)
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#connections li .name")]
    assert names[0] == "App 000" and names[-1] == "App 250", (names[:2], names[-2:])

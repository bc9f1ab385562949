"""OAuth 2.0 Form Post Response Mode in a real headless Chromium: the
authorization response arrives at the application as a POST (never in a
URL), from a page under a strict CSP; the same page works without script
(its button). The application is a small receiver the test starts on a
loopback port. Screenshots go to test-output/."""
import base64
import hashlib
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC

from conftest import chromium, free_port
from test_browser import OUT, browser, sign_in, wait  # noqa: F401 (the browser fixture)


class Receiver:
    """The application's redirect URI: records each request's method, path and body."""

    def __init__(self):
        self.port = free_port()
        self.received = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                received.append(("POST", self.path, self.headers.get("Content-Type"), parse_qs(body)))
                self.reply()

            def do_GET(self):
                received.append(("GET", self.path, None, {}))
                self.reply()

            def reply(self):
                page = b"<!doctype html><title>Application</title><h1 id='received'>Received</h1>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self):
        """What reached the redirect URI as a POST (the browser also asks the application for /favicon.ico)."""
        return [r for r in self.received if r[0] == "POST"]

    @property
    def redirect(self):
        return f"http://127.0.0.1:{self.port}/cb"

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def make_app(stack, redirect, public=True):
    """A form-post app on a loopback redirect URI. Only a confidential one gets answered from a remembered
    consent there (RFC 8252 §8.6: a public loopback client is asked every time)."""
    r = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
        "client_name": "Form post app", "redirect_uris": [redirect], "grant_types": ["authorization_code"],
        "scope": "openid profile", "token_endpoint_auth_method": "none" if public else "client_secret_basic"})
    assert r.status_code == 201, r.text
    return r.json()["client_id"] if public else (r.json()["client_id"], r.json()["client_secret"])


def authorize_url(stack, client_id, redirect, verifier, state):
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return stack.url("/oauth2/authorize?" + urlencode({
        "response_type": "code", "response_mode": "form_post", "client_id": client_id, "redirect_uri": redirect,
        "scope": "openid profile", "state": state, "nonce": "n-1", "code_challenge": challenge, "code_challenge_method": "S256"}))


def redeem(stack, client_id, redirect, code, verifier, secret=None):
    return requests.post(stack.url("/oauth2/token"), data={"grant_type": "authorization_code", "code": code, "client_id": client_id,
                                                          "redirect_uri": redirect, "code_verifier": verifier},
                         auth=(client_id, secret) if secret else None)


def test_form_post_delivers_the_code_as_a_post_after_consent(stack, browser, receiver):
    client_id = make_app(stack, receiver.redirect)
    verifier = secrets.token_urlsafe(48)
    browser.get(authorize_url(stack, client_id, receiver.redirect, verifier, "fp-state-1"))
    sign_in(browser, stack)
    wait(browser, EC.url_contains("/consent/"))
    approve = wait(browser, EC.element_to_be_clickable((By.ID, "approve")))
    browser.save_screenshot(str(OUT / "form-post-consent.png"))
    approve.send_keys(Keys.ENTER)
    wait(browser, lambda d: d.find_elements(By.ID, "received"))
    browser.save_screenshot(str(OUT / "form-post-received.png"))
    posts = receiver.posts()
    assert len(posts) == 1
    method, path, content_type, fields = posts[0]
    assert (method, path, content_type) == ("POST", "/cb", "application/x-www-form-urlencoded")
    assert fields["state"] == ["fp-state-1"] and fields["iss"] == [stack.base]
    assert fields["code"][0].startswith("lkc_")
    # Never in a URL: the browser's address is the redirect URI without a query.
    assert browser.current_url == receiver.redirect
    assert not [p for m, p, *_ in receiver.received if m == "GET" and p.startswith("/cb")], "the code went in a URL"
    assert redeem(stack, client_id, receiver.redirect, fields["code"][0], verifier).status_code == 200


def test_the_form_post_page_works_without_script(stack, receiver):
    """A remembered consent answers /oauth2/authorize with the page itself; with script off, its button posts it."""
    client_id, secret = make_app(stack, receiver.redirect, public=False)
    # Sign in and remember the consent through the APIs, then hand the cookies to a browser without script.
    http = requests.Session()
    assert http.post(stack.url("/api/v1/session"), json={"username": "demo", "password": stack.demo_password}).status_code == 204
    first = http.get(authorize_url(stack, client_id, receiver.redirect, secrets.token_urlsafe(48), "warm"), allow_redirects=False)
    request_id = parse_qs(first.headers["Location"].split("?", 1)[1])["request"][0]
    accepted = http.post(stack.url(f"/api/v1/authorization-requests/{request_id}/accept"), headers={"X-CSRF-Token": http.cookies["lk_csrf"]},
                         json={"scope": ["openid", "profile"], "remember": True})
    assert accepted.status_code == 200 and "form_post" in accepted.json()
    with chromium("--window-size=900,600", prefs={"profile.managed_default_content_settings.javascript": 2}) as driver:
        driver.get(stack.url("/healthz"))
        for name in ("lk_session", "lk_csrf", "lk_browser"):
            driver.add_cookie({"name": name, "value": http.cookies[name], "path": "/"})
        verifier = secrets.token_urlsafe(48)
        driver.get(authorize_url(stack, client_id, receiver.redirect, verifier, "no-script"))
        button = wait(driver, EC.element_to_be_clickable((By.CSS_SELECTOR, "form button[type=submit]")))
        assert "Scripts are off" in driver.find_element(By.TAG_NAME, "main").text
        driver.save_screenshot(str(OUT / "form-post-no-script.png"))
        button.click()
        wait(driver, lambda d: d.find_elements(By.ID, "received"))
        method, _, _, fields = receiver.posts()[-1]
        assert method == "POST" and fields["state"] == ["no-script"]
        assert redeem(stack, client_id, receiver.redirect, fields["code"][0], verifier, secret).status_code == 200


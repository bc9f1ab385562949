"""RP-Initiated Logout 1.0 through nginx: the end_session_endpoint from
discovery, an ID token from authlib's code flow as id_token_hint (the session
ends at once and the user lands on the registered post-logout URI with
state), and in Chromium the confirmation page a request without a hint
shows. A logout ends the session, not the offline refresh token."""
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from urllib.parse import urlencode

from test_browser import OUT, browser, sign_in, wait  # noqa: F401 (the browser fixture)
from test_form_post import Receiver, receiver  # noqa: F401 (the receiver fixture)
from test_user_flow import Browser, oauth_client, start


def make_app(stack, redirect, after):
    r = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={
        "client_name": "Logout RP", "redirect_uris": [redirect], "post_logout_redirect_uris": [after],
        "grant_types": ["authorization_code", "refresh_token"], "scope": "openid profile offline_access"})
    assert r.status_code == 201, r.text
    return r.json()["client_id"], r.json()["client_secret"]


def test_a_hint_for_the_signed_in_user_ends_the_session_and_returns_with_state(stack):
    end_session = requests.get(stack.url("/.well-known/openid-configuration")).json()["end_session_endpoint"]
    redirect, after = f"http://127.0.0.1:{stack.port}/demo/callback", "https://rp.example/signed-out"
    client_id, secret = make_app(stack, redirect, after)
    person = Browser(stack)
    client = oauth_client(stack, client_id, secret, redirect, scope="openid profile offline_access")
    url, state, verifier, _ = start(stack, client)
    token = client.fetch_token(stack.url("/oauth2/token"), authorization_response=person.authorize(url), code_verifier=verifier)
    assert person.http.get(stack.url("/api/v1/session")).status_code == 200
    r = person.http.get(end_session + "?" + urlencode({"id_token_hint": token["id_token"], "post_logout_redirect_uri": after,
                                                        "state": "logout-state"}), allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == after + "?state=logout-state"
    assert person.http.get(stack.url("/api/v1/session")).status_code == 401
    # The offline refresh token outlives the session (OIDC Core §11).
    refreshed = requests.post(stack.url("/oauth2/token"), data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
                              auth=(client_id, secret))
    assert refreshed.status_code == 200
    # An unregistered post-logout URI is refused on a page, never followed.
    bad = requests.get(end_session + "?" + urlencode({"client_id": client_id, "post_logout_redirect_uri": "https://evil.example/"}),
                       allow_redirects=False)
    assert bad.status_code == 400 and "Location" not in bad.headers


def test_without_a_hint_the_user_confirms_in_the_browser_and_is_not_redirected(stack, browser, receiver):
    """§3: without an id_token_hint nothing confirms the client asked: the user confirms, is signed out, and stays
    on Latchkey's page (a registered URI would otherwise be an open redirect for anyone who can register)."""
    client_id, _ = make_app(stack, f"http://127.0.0.1:{stack.port}/demo/callback", receiver.redirect)
    browser.get(stack.url("/login/"))
    sign_in(browser, stack)
    wait(browser, lambda d: d.get_cookie(stack.cookie("lk_session")) is not None)
    browser.get(stack.url("/oauth2/logout?" + urlencode({"client_id": client_id, "post_logout_redirect_uri": receiver.redirect,
                                                         "state": "confirmed"})))
    button = wait(browser, EC.element_to_be_clickable((By.ID, "sign-out")))
    # Nothing shows that the client asked: the page names none (attacker review, session 19).
    text = browser.find_element(By.TAG_NAME, "main").text
    assert "A sign-out was requested for this browser." in text and "Logout RP" not in text
    browser.save_screenshot(str(OUT / "logout-confirm.png"))
    button.click()
    # The page changes under the wait: the expected condition tolerates a stale element.
    wait(browser, EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "You are signed out"))
    assert browser.current_url.startswith(stack.url("/oauth2/logout"))
    assert receiver.posts() == [] and not [r for r in receiver.received if r[1].startswith("/cb")]
    assert browser.get_cookie(stack.cookie("lk_session")) is None

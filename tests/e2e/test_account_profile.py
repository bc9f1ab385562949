"""The profile form on /account/ in a real headless Chromium: filled with
the keyboard, saved, refused with the field named when a value is wrong;
what the user saved is what an RP with the phone and address scopes gets."""
import json
import secrets

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC

from conftest import run_cli
from test_browser import OUT, browser, sign_in, wait  # noqa: F401 (the browser fixture)


def test_the_user_edits_their_profile_on_the_account_page(stack, browser):
    browser.get(stack.url("/login/"))
    sign_in(browser, stack)
    wait(browser, lambda d: d.get_cookie("lk_session") is not None)
    browser.get(stack.url("/account/"))
    given = wait(browser, EC.visibility_of_element_located((By.ID, "given_name")))
    given.clear()
    given.send_keys("Demo")
    phone = browser.find_element(By.ID, "phone_number")
    phone.clear()
    phone.send_keys("+44 20 7946 0958")
    zone = browser.find_element(By.ID, "zoneinfo")
    zone.clear()
    zone.send_keys("nowhere" + Keys.ENTER)
    # A bad value: refused, the field marked and focused, nothing saved.
    wait(browser, EC.text_to_be_present_in_element((By.ID, "profile-status"), "Not saved"))
    assert browser.find_element(By.ID, "zoneinfo").get_attribute("aria-invalid") == "true"
    assert browser.switch_to.active_element.get_attribute("id") == "zoneinfo"
    assert "given_name" not in json.loads(run_cli(stack, "user", "set", "demo").stdout)
    zone = browser.find_element(By.ID, "zoneinfo")
    zone.clear()
    zone.send_keys("Europe/London")
    browser.find_element(By.ID, "locality").send_keys("Oxford" + Keys.ENTER)
    wait(browser, EC.text_to_be_present_in_element((By.ID, "profile-status"), "Profile saved."))
    browser.save_screenshot(str(OUT / "account-profile.png"))
    stored = json.loads(run_cli(stack, "user", "set", "demo").stdout)
    assert stored["given_name"] == "Demo" and stored["phone_number"] == "+44 20 7946 0958"
    assert stored["zoneinfo"] == "Europe/London" and stored["address"] == {"locality": "Oxford"}
    # Reloaded, the form shows what was saved.
    browser.refresh()
    assert wait(browser, EC.visibility_of_element_located((By.ID, "given_name"))).get_attribute("value") == "Demo"


def test_a_sign_out_that_fails_says_so_and_stays(stack, browser):
    """The account page's sign-out goes to the sign-in page only when the server ended the session (204). One that
    failed (here: the CSRF cookie gone, 403) says so and stays, rather than leaving a live session on a shared
    computer behind a sign-in page (review, session 25); tried again with the cookie back, it signs out."""
    browser.get(stack.url("/login/"))
    sign_in(browser, stack)
    wait(browser, lambda d: d.get_cookie(stack.cookie("lk_session")) is not None)
    browser.get(stack.url("/account/"))
    button = wait(browser, EC.element_to_be_clickable((By.ID, "signout")))
    csrf = browser.get_cookie(stack.cookie("lk_csrf"))
    browser.delete_cookie(stack.cookie("lk_csrf"))
    button.click()
    wait(browser, EC.text_to_be_present_in_element((By.ID, "error"), "Signing out did not work (403)"))
    assert browser.current_url.startswith(stack.url("/account/"))
    browser.add_cookie({"name": csrf["name"], "value": csrf["value"], "path": "/"})
    browser.find_element(By.ID, "signout").click()
    wait(browser, lambda d: d.current_url.startswith(stack.url("/login/")))
    assert browser.get_cookie(stack.cookie("lk_session")) is None


def test_too_many_changes_are_refused_and_the_page_says_so(stack, browser):
    """A user's own profile changes are bounded per hour (each is an audit row kept for good; review, session 28):
    past them the save is 429 and the page says so, nothing written. A user of its own, so the shared stack's demo
    user keeps its allowance. The bound is each node's (two behind nginx on PostgreSQL): 20 saves at least, then 429
    within 20 a node."""
    name, password = "limited-" + secrets.token_hex(4), "pw-" + secrets.token_hex(8)
    run_cli(stack, "user", "add", name, "--password-stdin", stdin=password + "\n")
    browser.get(stack.url("/login/"))
    sign_in(browser, stack, name, password)
    wait(browser, lambda d: d.get_cookie(stack.cookie("lk_session")) is not None)
    browser.get(stack.url("/account/"))
    given = wait(browser, EC.visibility_of_element_located((By.ID, "given_name")))
    status = browser.find_element(By.ID, "profile-status")
    saved = 0
    for i in range(20 * stack.nodes + 1):
        given.clear()
        given.send_keys(f"Name {i}" + Keys.ENTER)
        wait(browser, lambda d: status.text)
        if "too many changes" in status.text:
            break
        assert status.text == "Profile saved.", status.text
        saved += 1
        browser.execute_script("arguments[0].textContent = ''", status)
    assert 20 <= saved <= 20 * stack.nodes and "too many changes" in status.text, (saved, status.text)
    assert json.loads(run_cli(stack, "user", "set", name).stdout)["given_name"] == f"Name {saved - 1}"

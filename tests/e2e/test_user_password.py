"""`latchkey user password USERNAME --password-stdin`: the old password
signs in no more, and every session of the user ends at once (on every
node: the session rows are gone), as a sign-out ends one."""
import json
import os

import requests

from conftest import run_cli


def test_a_new_password_ends_the_users_sessions(stack):
    name = "pw-" + os.urandom(4).hex()
    old, new = "old-pass-" + os.urandom(4).hex(), "new-pass-" + os.urandom(4).hex()
    run_cli(stack, "user", "add", name, "--password-stdin", stdin=old + "\n")
    browser = requests.Session()
    assert browser.post(stack.url("/api/v1/session"), json={"username": name, "password": old}).status_code == 204
    assert browser.get(stack.url("/api/v1/session")).status_code == 200
    # Never from an argument, and nothing changes without it.
    refused = run_cli(stack, "user", "password", name, check=False)
    assert refused.returncode != 0 and "--password-stdin" in refused.stderr
    assert browser.get(stack.url("/api/v1/session")).status_code == 200
    # Piped from a file written on Windows: the CRLF is the line's end, not the password's.
    changed = json.loads(run_cli(stack, "user", "password", name, "--password-stdin", stdin=new + "\r\n").stdout)
    assert changed["sessions_ended"] == 1 and changed["apps_disconnected"] == 0 and changed["user_id"].startswith("usr-")
    assert browser.get(stack.url("/api/v1/session")).status_code == 401
    assert requests.post(stack.url("/api/v1/session"), json={"username": name, "password": old}).status_code == 401
    assert requests.post(stack.url("/api/v1/session"), json={"username": name, "password": new}).status_code == 204
    unknown = run_cli(stack, "user", "password", "nobody-" + os.urandom(4).hex(), "--password-stdin", stdin=new + "\n", check=False)
    assert unknown.returncode != 0 and "no user" in unknown.stderr

"""The client registry end to end through nginx: create with the primary's
token, use the new secret, rotate with a grace period, upload and fetch a
logo, and the body limits and rate limits of the management API."""
import base64
import io
import struct
import time
import zlib

import requests

from conftest import run_cli


def png(width, height):
    """A real PNG, built by hand (no imaging library needed)."""
    raw = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_create_use_rotate_with_grace_and_expire(stack):
    headers = stack.bearer()
    r = requests.post(stack.url("/api/v1/clients"), headers=headers,
                      json={"client_name": "E2E service", "scope": "clients:read"})
    assert r.status_code == 201, r.text
    created = r.json()
    cid, first = created["client_id"], created["client_secret"]
    assert r.headers["Location"] == stack.url(f"/api/v1/clients/{cid}")
    assert stack.token(cid, first)
    r = requests.post(stack.url(f"/api/v1/clients/{cid}/secret"), headers=headers, json={"grace_period_seconds": 2})
    assert r.status_code == 200, r.text
    second = r.json()["client_secret"]
    assert r.json()["previous_secret_expires_at"].endswith("Z")
    assert stack.token(cid, first) and stack.token(cid, second)
    time.sleep(2.2)
    r = requests.post(stack.url("/oauth2/token"), data={"grant_type": "client_credentials"}, auth=(cid, first))
    assert r.status_code == 401
    assert stack.token(cid, second)
    # The new client sees itself, and nothing it may not.
    own = {"Authorization": f"Bearer {stack.token(cid, second)}"}
    assert requests.get(stack.url("/api/v1/clients/current"), headers=own).json()["client_id"] == cid
    assert requests.post(stack.url("/api/v1/clients"), headers=own, json={"client_name": "x"}).status_code == 403
    # Delete: gone everywhere, tokens die with it.
    assert requests.delete(stack.url(f"/api/v1/clients/{cid}"), headers=headers).status_code == 204
    assert requests.get(stack.url("/api/v1/clients/current"), headers=own).status_code == 401
    r = requests.post(stack.url("/oauth2/token"), data={"grant_type": "client_credentials"}, auth=(cid, second))
    assert r.status_code == 401


def test_logo_upload_and_fetch_through_nginx(stack):
    headers = stack.bearer()
    cid = requests.post(stack.url("/api/v1/clients"), headers=headers, json={"client_name": "Logo app"}).json()["client_id"]
    image = png(600, 300)
    r = requests.put(stack.url(f"/api/v1/clients/{cid}/logo"), headers=headers, files={"image": ("logo.png", image, "image/png")})
    assert r.status_code == 204, r.text
    r = requests.get(stack.url(f"/api/v1/clients/{cid}/logo"))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert r.content.startswith(b"\x89PNG")
    width, height = struct.unpack(">II", r.content[16:24])
    assert (width, height) == (256, 128)
    again = requests.get(stack.url(f"/api/v1/clients/{cid}/logo"), headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    client = requests.get(stack.url(f"/api/v1/clients/{cid}"), headers=headers).json()
    assert client["logo_uri"] == stack.url(f"/api/v1/clients/{cid}/logo")
    # A raw body works too; SVG does not.
    assert requests.put(stack.url(f"/api/v1/clients/{cid}/logo"), headers={**headers, "Content-Type": "image/png"}, data=png(10, 10)).status_code == 204
    svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
    assert requests.put(stack.url(f"/api/v1/clients/{cid}/logo"), headers={**headers, "Content-Type": "image/svg+xml"}, data=svg).status_code == 415
    # nginx allows 2 MiB on logo routes and answers 413 past it, as a problem like the workers' (SPEC 2).
    big = requests.put(stack.url(f"/api/v1/clients/{cid}/logo"), headers={**headers, "Content-Type": "image/png"}, data=b"\0" * (3 * 1024 * 1024))
    assert big.status_code == 413
    assert big.headers["Content-Type"].startswith("application/problem+json")
    assert big.json()["code"] == "body_too_large"
    assert requests.delete(stack.url(f"/api/v1/clients/{cid}/logo"), headers=headers).status_code == 204
    assert requests.get(stack.url(f"/api/v1/clients/{cid}/logo")).status_code == 404


def test_management_body_limit_is_1_mib(stack):
    headers = {**stack.bearer(), "Content-Type": "application/json"}
    body = b'{"client_name": "x", "extra_data": {"x": "' + b"a" * (1100 * 1024) + b'"}}'
    r = requests.post(stack.url("/api/v1/clients"), headers=headers, data=body)
    assert r.status_code == 413


def test_problem_details_shape(stack):
    r = requests.post(stack.url("/api/v1/clients"), headers={**stack.bearer(), "Content-Type": "application/json"}, data=b"{nope")
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/problem+json"
    body = r.json()
    assert set(body) >= {"type", "title", "status", "detail", "code", "request_id"}
    assert body["request_id"] == r.headers["X-Request-Id"]
    r = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={"client_name": "x", "redirect_uris": ["http://evil.example/cb"]})
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "redirect_uris[0]"


def test_registry_writes_are_rate_limited(limited_stack):
    stack = limited_stack
    headers = stack.bearer()
    statuses = []
    for _ in range(60):
        r = requests.patch(stack.url(f"/api/v1/clients/{stack.client_id}"), headers=headers, json={"description": "burst"})
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.headers["Retry-After"] == "1"
            assert r.json()["error"] == "rate_limited"
            break
    assert 429 in statuses
    time.sleep(2.5)  # let the bucket refill for the tests that follow


def test_cli_and_api_writes_are_audited_without_secrets(stack):
    requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json={"client_name": "audited"})
    run_cli(stack, "keys", "rotate")
    r = requests.get(stack.url("/api/v1/audit"), headers=stack.bearer())
    assert r.status_code == 200
    # The shared stack's log is long by now: the newest page has the write, the oldest the initialization.
    total = int(r.headers["X-Total-Count"])
    oldest = requests.get(stack.url("/api/v1/audit"), headers=stack.bearer(), params={"offset": max(0, total - 50)})
    actions = [e["action"] for e in r.json()["events"] + oldest.json()["events"]]
    assert "client.created" in actions and "system.initialized" in actions
    assert "lks_" not in r.text and stack.client_secret not in r.text
    logs = stack.logs()
    assert "lks_" not in logs

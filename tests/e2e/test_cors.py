"""Browser-based apps (CORS) in a real Chromium: a single-page app served
from its own origin redeems its code at the token endpoint, reads userinfo
with the access token (a preflighted request) and reads discovery; a page of
another origin cannot read the tokens it asks for. Through nginx, on both
stores."""
import json
import secrets
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import threading

import requests

from conftest import chromium, free_port, run_cli
from test_user_flow import code_for as user_code_for


class Page:
    """A page served from 127.0.0.1 on a port of its own (an origin of its own), its body set after it starts."""

    def __init__(self):
        self.body = b""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


SCRIPT = """<!doctype html><title>waiting</title><script>
(async () => {
  const out = {};
  try {
    out.discovery = (await (await fetch(ISSUER + "/.well-known/openid-configuration")).json()).issuer;
    const tokens = await (await fetch(ISSUER + "/oauth2/token", {method: "POST",
      headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: new URLSearchParams(FORM)})).json();
    out.token_type = tokens.token_type;
    out.refresh = !!tokens.refresh_token;
    const me = await fetch(ISSUER + "/oauth2/userinfo", {headers: {"Authorization": "Bearer " + tokens.access_token}});
    out.sub = (await me.json()).sub;
  } catch (e) {
    out.error = String(e);
  }
  document.title = "done " + JSON.stringify(out);
})();
</script>"""


def page_script(issuer, form):
    return SCRIPT.replace("ISSUER", json.dumps(issuer)).replace("FORM", json.dumps(form)).encode()


def code_for(stack, client_id, redirect):
    verifier = secrets.token_urlsafe(48)
    return user_code_for(stack, client_id, redirect, verifier, scope="openid offline_access"), verifier


def test_a_single_page_app_redeems_its_code_and_reads_userinfo_from_its_own_origin_only(stack):
    from selenium.webdriver.support.ui import WebDriverWait
    app, other = Page(), Page()
    try:
        redirect = app.origin + "/callback"
        # An organization of its own: the session's shared one is near its client limit.
        org = json.loads(run_cli(stack, "org", "create", "CORS", "--client-limit", "5").stdout)
        manager = {"Authorization": f"Bearer {stack.token(org['client_id'], org['client_secret'])}"}
        r = requests.post(stack.url("/api/v1/clients"), headers=manager, json={
            "client_name": "SPA", "redirect_uris": [redirect], "grant_types": ["authorization_code", "refresh_token"],
            "scope": "openid offline_access", "token_endpoint_auth_method": "none"})
        assert r.status_code == 201, r.text
        client_id = r.json()["client_id"]
        results = {}
        with chromium() as driver:
            for name, page in (("app", app), ("other", other)):
                code, verifier = code_for(stack, client_id, redirect)
                page.body = page_script(stack.base, {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                                                     "code_verifier": verifier, "client_id": client_id})
                driver.get(page.origin + "/")
                WebDriverWait(driver, 15).until(lambda d: d.title.startswith("done "))
                results[name] = json.loads(driver.title[5:])
        # Its own origin: discovery, the tokens (DPoP-less bearer) and userinfo after a preflight, all readable.
        assert results["app"].get("discovery") == stack.base and results["app"].get("token_type") == "Bearer", results
        assert results["app"].get("refresh") is True and results["app"].get("sub"), results
        # Another origin: discovery is anyone's, the token answer is not (the browser refuses to hand it over).
        assert results["other"].get("discovery") == stack.base and "error" in results["other"], results
        assert "token_type" not in results["other"], results
    finally:
        app.stop()
        other.stop()

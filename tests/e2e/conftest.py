"""End-to-end fixtures: a real Latchkey worker pool behind a real nginx on
loopback, initialized in a temporary state directory."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("LATCHKEY_BIN", str(ROOT / ".build" / "debug" / "latchkey"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(db, *args, stdin=None, check=True):
    env = dict(os.environ, LATCHKEY_DB=str(db))
    proc = subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"latchkey {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


class Stack:
    """A running worker pool + nginx."""

    def __init__(self, state: Path, rate_limits: str = "on", workers: int = 4, log_level: str | None = "debug"):
        self.state = state
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db = state / "latchkey.db"
        self.socket = state / "run" / "latchkey.sock"
        self.rate_limits = rate_limits
        self.workers = workers
        # Tests log every request (debug), so that the log-secrecy checks see a line per request;
        # benchmarks pass None for the server's default.
        self.log_level = log_level
        (state / "run").mkdir(parents=True, exist_ok=True)
        init = json.loads(run_cli(self.db, "init", "--issuer", self.base, "--org", "E2E").stdout)
        self.org_id, self.client_id, self.client_secret = init["organization_id"], init["client_id"], init["client_secret"]
        self.demo_password = "demo-password-" + os.urandom(4).hex()
        run_cli(self.db, "user", "add", "demo", "--email", "demo@example.com", "--name", "Demo User",
                "--password-stdin", stdin=self.demo_password + "\n")
        subprocess.run([str(ROOT / "scripts" / "render-nginx"), str(state / "nginx"), str(self.port), str(self.socket), rate_limits],
                       check=True)
        self.log_path = state / "worker.log"
        self.worker = None
        self.nginx = None

    def start(self):
        self.log = open(self.log_path, "ab")
        env = dict(os.environ, LATCHKEY_DB=str(self.db))
        if self.log_level:
            env["LATCHKEY_LOG_LEVEL"] = self.log_level
        self.worker = subprocess.Popen([BIN, "serve", "--listen", f"unix:{self.socket}", "--workers", str(self.workers)],
                                       stdout=self.log, stderr=self.log, env=env)
        for _ in range(100):
            if self.socket.exists():
                break
            time.sleep(0.05)
        self.nginx = subprocess.Popen(["nginx", "-c", str(self.state / "nginx" / "nginx.conf"), "-p", str(self.state / "nginx"),
                                       "-g", "daemon off;"], stdout=self.log, stderr=self.log)
        for _ in range(100):
            try:
                if requests.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise AssertionError("Latchkey did not become healthy:\n" + self.log_path.read_text(errors="replace"))

    def stop(self):
        codes = {}
        if self.nginx:
            self.nginx.send_signal(signal.SIGQUIT)
            codes["nginx"] = self.nginx.wait(timeout=10)
        if self.worker:
            self.worker.send_signal(signal.SIGTERM)
            codes["worker"] = self.worker.wait(timeout=10)
        return codes

    def url(self, path):
        return self.base + path

    def token(self, client_id=None, secret=None, scope=None):
        data = {"grant_type": "client_credentials"}
        if scope:
            data["scope"] = scope
        r = requests.post(self.url("/oauth2/token"), data=data, auth=(client_id or self.client_id, secret or self.client_secret))
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def bearer(self, token=None):
        return {"Authorization": f"Bearer {token or self.token()}"}

    def logs(self):
        text = self.log_path.read_text(errors="replace")
        access = self.state / "nginx" / "logs" / "access.log"
        if access.exists():
            text += access.read_text(errors="replace")
        return text


@pytest.fixture(scope="session")
def stack():
    """The shared stack, rate limits off so that tests do not throttle each other."""
    with tempfile.TemporaryDirectory(prefix="latchkey-e2e-") as tmp:
        s = Stack(Path(tmp), rate_limits="off").start()
        yield s
        codes = s.stop()
        assert codes.get("worker") == 0, f"worker did not stop cleanly: {codes}"


@pytest.fixture(scope="session")
def limited_stack():
    """The production nginx configuration's rate limits, for the 429 tests."""
    with tempfile.TemporaryDirectory(prefix="latchkey-e2e-") as tmp:
        s = Stack(Path(tmp), rate_limits="on").start()
        yield s
        s.stop()


@pytest.fixture
def fresh_stack():
    """A separate stack for tests that change global state (keys) or stop the server."""
    with tempfile.TemporaryDirectory(prefix="latchkey-e2e-") as tmp:
        s = Stack(Path(tmp)).start()
        yield s
        s.stop()

"""End-to-end fixtures: a real Latchkey worker pool behind a real nginx on
loopback, initialized in a temporary state directory."""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
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


def fastcgi_get(host, port, path="/healthz", source=None, timeout=5.0) -> bytes:
    """One FastCGI request (a GET of `path`) straight to a node's TCP port, as nginx would send it, from `source`
    (an address of this host) when given: the bytes of its STDOUT records, b"" when the node closed the connection
    without answering."""
    def record(kind, content=b""):
        return bytes([1, kind, 0, 1, len(content) >> 8, len(content) & 0xFF, 0, 0]) + content

    def pair(name, value):
        return bytes([len(name), len(value)]) + name + value
    params = b"".join(pair(k.encode(), v.encode()) for k, v in {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": path, "REQUEST_URI": path, "DOCUMENT_URI": path, "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "192.0.2.1", "HTTP_HOST": "fastcgi.test", "CONTENT_LENGTH": ""}.items())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        s.connect((host, port))
        s.sendall(record(1, bytes([0, 1, 0, 0, 0, 0, 0, 0])) + record(4, params) + record(4) + record(5))
        raw = b""
        try:
            while chunk := s.recv(65536):
                raw += chunk
        except ConnectionResetError:
            pass
    out, i = b"", 0
    while i + 8 <= len(raw):
        length, padding = raw[i + 4] << 8 | raw[i + 5], raw[i + 6]
        if raw[i + 1] == 6:
            out += raw[i + 8:i + 8 + length]
        i += 8 + length + padding
    return out


def run_cli(db, *args, stdin=None, check=True):
    """Runs the CLI against a stack's database: a SQLite path, or a Stack
    (whose database may be PostgreSQL)."""
    env = dict(os.environ)
    if isinstance(db, Stack):
        env.update(db.db_env())
    else:
        env["LATCHKEY_DB"] = str(db)
    proc = subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"latchkey {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


# The store the end-to-end suite runs on (SPEC 9): every stack fixture is
# parametrized over these; `LATCHKEY_E2E_STORES=sqlite` narrows it.
STORES = [s for s in os.environ.get("LATCHKEY_E2E_STORES", "sqlite,postgres").split(",") if s]

# The OpenID checks also run over https (SPEC 10.1: certification tools and
# RP libraries insist on an https issuer): their modules get a third shared
# stack, SQLite behind nginx serving TLS with a CA made for it
# (`scripts/local-ca`), issuer https://localhost:PORT.
HTTPS_MODULES = {
    "test_user_flow", "test_oidc_claims", "test_oidc_id_token_alg", "test_oidc_registration", "test_oidc_logout", "test_oidc_backchannel_logout",
    "test_conformance_dynamic", "test_conformance_rp_initiated_logout", "test_conformance_form_post", "test_pushed_authorization_requests",
    "test_private_key_jwt", "test_dpop",
}
HTTPS = "https" if os.environ.get("LATCHKEY_E2E_HTTPS", "on") == "on" else None


def pytest_generate_tests(metafunc):
    """The shared `stack`: one per store, plus the https one for the OpenID modules."""
    if "stack" in metafunc.fixturenames:
        module = metafunc.module.__name__.rsplit(".", 1)[-1]
        params = STORES + ([HTTPS] if HTTPS and module in HTTPS_MODULES else [])
        metafunc.parametrize("stack", params, indirect=True, scope="session")


# What requests trusted before any test's CA, and the CAs trusted since (their stacks' directories may be gone).
_BASE_BUNDLE = os.environ.get("REQUESTS_CA_BUNDLE")
_TRUSTED_CAS: list[str] = []


def trust(ca: Path):
    """Makes requests (and the RP libraries over it) trust `ca` besides what they trusted."""
    import certifi
    _TRUSTED_CAS.append(ca.read_text())
    bundle = ca.parent / "bundle.pem"
    bundle.write_text("\n".join([Path(_BASE_BUNDLE or certifi.where()).read_text(), *_TRUSTED_CAS]))
    os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)


class PostgresCluster:
    """A throwaway PostgreSQL cluster (scripts/pg-cluster) shared by the
    session's stacks; each stack gets a database of its own."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.url = subprocess.run([str(ROOT / "scripts" / "pg-cluster"), "start", str(directory)], check=True,
                                  capture_output=True, text=True).stdout.strip()

    def database(self, name):
        subprocess.run(["psql", self.url, "-q", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
        return self.url.replace("postgresql:///postgres?", f"postgresql:///{name}?")

    def stop(self):
        subprocess.run([str(ROOT / "scripts" / "pg-cluster"), "stop", str(self.directory)], check=False)


_cluster = None


def postgres_cluster():
    global _cluster
    if _cluster is None:
        _cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="latchkey-e2e-pg-")))
    return _cluster


def pytest_sessionfinish(session, exitstatus):
    if _cluster is not None:
        _cluster.stop()
        # The session's own temporary cluster (about 170 MB): CI machines are reused.
        shutil.rmtree(_cluster.directory, ignore_errors=True)


class StaticPage:
    """One body served on 127.0.0.1 (a port of its own) for every GET, the paths asked for kept in `fetched`:
    another site's page, an RP's request object. `stop()` when done."""

    def __init__(self, body: str, content_type: str = "text/html"):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        self.fetched = []
        outer, data = self, body.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.fetched.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def chromium(*arguments: str, prefs: dict | None = None):
    """A headless Debian chromium driven by chromedriver (selenium), quit and
    cleaned up afterwards: its temporary files (the profile, the singleton
    socket directory that chromium leaves in TMPDIR) go to a directory of its
    own, removed once it has quit."""
    binary, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.fail("chromium and chromium-driver must be installed (scripts/test installs them)")
    from selenium import webdriver
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", *arguments):
        options.add_argument(argument)
    if prefs:
        options.add_experimental_option("prefs", prefs)
    scratch = tempfile.mkdtemp(prefix="latchkey-chromium-")
    service = webdriver.ChromeService(executable_path=driver_path, env={**os.environ, "TMPDIR": scratch})
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(scratch, ignore_errors=True)


class Stack:
    """A running worker pool + nginx: one node on SQLite, or `nodes` nodes
    sharing one PostgreSQL database behind one nginx upstream."""

    def __init__(self, state: Path, rate_limits: str = "on", workers: int = 4, log_level: str | None = "debug", store: str = "sqlite",
                 nodes: int | None = None, cluster: "PostgresCluster | None" = None, tls: bool = False, env: dict | None = None):
        self.state = state
        # Settings for the nodes (LATCHKEY_* variables), besides the database's.
        self.node_env = env or {}
        self.store = store
        self.port = free_port()
        self.tls = tls
        self.base = f"https://localhost:{self.port}" if tls else f"http://127.0.0.1:{self.port}"
        self.db = state / "latchkey.db"
        self.database_url = (cluster or postgres_cluster()).database("lk_" + os.urandom(6).hex()) if store == "postgres" else None
        self.nodes = nodes or (2 if store == "postgres" else 1)
        self.sockets = [state / "run" / f"latchkey-{n}.sock" for n in range(1, self.nodes + 1)]
        self.socket = self.sockets[0]
        self.rate_limits = rate_limits
        self.workers = workers
        # Tests log every request (debug), so that the log-secrecy checks see a line per request;
        # benchmarks pass None for the server's default.
        self.log_level = log_level
        (state / "run").mkdir(parents=True, exist_ok=True)
        init = json.loads(run_cli(self, "init", "--issuer", self.base, "--org", "E2E").stdout)
        self.org_id, self.client_id, self.client_secret = init["organization_id"], init["client_id"], init["client_secret"]
        self.demo_password = "demo-password-" + os.urandom(4).hex()
        run_cli(self, "user", "add", "demo", "--email", "demo@example.com", "--name", "Demo User",
                "--password-stdin", stdin=self.demo_password + "\n")
        nginx_env = dict(os.environ)
        if tls:
            subprocess.run([str(ROOT / "scripts" / "local-ca"), str(state / "tls")], check=True)
            nginx_env.update(LATCHKEY_TLS_CERT=str(state / "tls" / "cert.pem"), LATCHKEY_TLS_KEY=str(state / "tls" / "key.pem"))
            trust(state / "tls" / "ca.pem")
        subprocess.run([str(ROOT / "scripts" / "render-nginx"), str(state / "nginx"), str(self.port),
                        ",".join(str(s) for s in self.sockets), rate_limits], check=True, env=nginx_env)
        self.log_path = state / "worker.log"
        self.worker = None
        self.workers_procs = []
        self.nginx = None

    def db_env(self):
        """The environment that points the CLI and the nodes at this stack's database."""
        if self.database_url:
            return {"LATCHKEY_DATABASE_URL": self.database_url}
        return {"LATCHKEY_DB": str(self.db)}

    def start_node(self, n):
        """Starts node n (1-based) on its socket."""
        # Logout tokens go to public addresses only unless named (SPEC 7.1): the tests' receivers listen on loopback.
        env = dict(os.environ, **{"LATCHKEY_BACKCHANNEL_ALLOW": "127.0.0.0/8,::1", **self.db_env(), **self.node_env})
        if self.log_level:
            env["LATCHKEY_LOG_LEVEL"] = self.log_level
        socket = self.sockets[n - 1]
        proc = subprocess.Popen([BIN, "serve", "--listen", f"unix:{socket}", "--workers", str(self.workers)],
                                stdout=self.log, stderr=self.log, env=env)
        for _ in range(100):
            if socket.exists():
                break
            time.sleep(0.05)
        return proc

    def start(self):
        self.log = open(self.log_path, "ab")
        self.workers_procs = [self.start_node(n) for n in range(1, self.nodes + 1)]
        self.worker = self.workers_procs[0]
        self.nginx = subprocess.Popen(["nginx", "-c", str(self.state / "nginx" / "nginx.conf"), "-p", str(self.state / "nginx"),
                                       "-g", "daemon off;"], stdout=self.log, stderr=self.log)
        for _ in range(100):
            try:
                if requests.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        # Nothing left running behind a failed start (nginx and nodes outlive a caller that never got the stack).
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - the health failure is what to report
            pass
        raise AssertionError("Latchkey did not become healthy:\n" + self.log_path.read_text(errors="replace"))

    def stop(self):
        codes = {}
        if self.nginx:
            self.nginx.send_signal(signal.SIGQUIT)
            codes["nginx"] = self.nginx.wait(timeout=10)
        for proc in self.workers_procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
            codes["worker"] = code if codes.get("worker", 0) == 0 else codes["worker"]
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

    def cookie(self, name):
        """A browser cookie's name on this stack: over https Latchkey's are __Host- cookies."""
        return "__Host-" + name if self.tls else name

    def bearer(self, token=None):
        return {"Authorization": f"Bearer {token or self.token()}"}

    def logs(self):
        """The workers' log and nginx's access and error logs, as one text."""
        text = self.log_path.read_text(errors="replace")
        for name in ("access.log", "error.log"):
            path = self.state / "nginx" / "logs" / name
            if path.exists():
                text += path.read_text(errors="replace")
        return text


@pytest.fixture(scope="session")
def stack(request):
    """The shared stack, rate limits off so that tests do not throttle each
    other: one SQLite node, then two nodes on PostgreSQL (every test that
    uses it runs on both), and for the OpenID modules the https one
    (parametrized by `pytest_generate_tests`)."""
    if request.param == HTTPS:
        yield request.getfixturevalue("https_stack")
        return
    with tempfile.TemporaryDirectory(prefix="latchkey-e2e-") as tmp:
        s = Stack(Path(tmp), rate_limits="off", store=request.param).start()
        yield s
        codes = s.stop()
        assert codes.get("worker") == 0, f"worker did not stop cleanly: {codes}"


@pytest.fixture(scope="session")
def https_stack():
    """SQLite behind nginx serving TLS and HTTP/2, with a CA made for it: one
    for the whole session, whichever module asks (the `stack` of the OpenID
    modules, test_http2.py's own), so pytest's ordering never makes two."""
    with tempfile.TemporaryDirectory(prefix="latchkey-e2e-") as tmp:
        s = Stack(Path(tmp), rate_limits="off", store="sqlite", tls=True).start()
        yield s
        codes = s.stop()
        assert codes.get("worker") == 0, f"worker did not stop cleanly: {codes}"


@pytest.fixture(scope="session", params=STORES)
def limited_stack(request):
    """The production nginx configuration's rate limits, for the 429 tests."""
    with tempfile.TemporaryDirectory(prefix="latchkey-e2e-") as tmp:
        s = Stack(Path(tmp), rate_limits="on", store=request.param).start()
        yield s
        s.stop()


@pytest.fixture(params=STORES)
def fresh_stack(request):
    """A separate stack for tests that change global state (keys) or stop the server."""
    with tempfile.TemporaryDirectory(prefix="latchkey-e2e-") as tmp:
        s = Stack(Path(tmp), store=request.param).start()
        yield s
        s.stop()

"""SPEC 9 / issue 11: the production shape on one machine. Each node runs in
a network namespace of its own (its own host, as far as the network goes),
serving FastCGI over TCP on a veth link; nginx, on the "load balancer"
(the root namespace), reaches them over those links; PostgreSQL runs in a
third namespace and the nodes reach it over TCP with a password
(scram-sha-256), as they would on a private network.

It needs root and network namespaces (`ip netns`, a bridge, veth pairs);
where those are missing it skips and says why. Everything it creates
carries a random suffix and is removed at the end."""
import json
import os
import secrets
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from conftest import BIN, ROOT, fastcgi_get, free_port
from loadgen import Load

PASSWORD = "pw-" + secrets.token_hex(12)
# Debian puts the server programs outside PATH.
PGBIN = Path("/usr/lib/postgresql/15/bin")


def sh(*args, check=True, ns=None, **kw):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + [str(a) for a in args]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def namespaces_available():
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    probe = "lkprobe" + secrets.token_hex(3)
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"ip netns unavailable: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Hosts:
    """A bridge (the private network) with three namespaces on it: db, n1, n2."""

    def __init__(self, standby=False):
        self.tag = secrets.token_hex(3)
        self.net = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250) + 1}"
        self.bridge = f"lkbr{self.tag}"
        self.addr = {"lb": f"{self.net}.1", "db": f"{self.net}.10", "n1": f"{self.net}.11", "n2": f"{self.net}.12", "sb": f"{self.net}.13"}
        self.ns = {name: f"lk{self.tag}-{name}" for name in ("db", "n1", "n2") + (("sb",) if standby else ())}

    def up(self):
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.addr['lb']}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for name, ns in self.ns.items():
            outer, inner = f"lk{self.tag}{name}o", f"lk{self.tag}{name}i"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            sh("ip", "link", "set", inner, "netns", ns)
            sh("ip", "link", "set", outer, "master", self.bridge)
            sh("ip", "link", "set", outer, "up")
            sh("ip", "link", "set", "lo", "up", ns=ns)
            sh("ip", "link", "set", inner, "name", "eth0", ns=ns)
            sh("ip", "addr", "add", f"{self.addr[name]}/24", "dev", "eth0", ns=ns)
            sh("ip", "link", "set", "eth0", "up", ns=ns)
        return self

    def link(self, name, up):
        """Takes a host off the network (or back): packets to it vanish, nothing answers with a reset."""
        sh("ip", "link", "set", "eth0", "up" if up else "down", ns=self.ns[name])

    def down(self):
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


class MultiHost:
    def __init__(self, tmp: Path, standby=False):
        self.tmp = tmp
        self.standby = standby
        self.hosts = Hosts(standby)
        self.pgdir = tmp / "pg"
        self.sbdir = tmp / "pg-standby"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        if standby:
            # libpq tries the hosts in order and keeps the one that accepts writes (docs/scaling.md).
            hosts = f"{self.hosts.addr['db']}:5432,{self.hosts.addr['sb']}:5432"
            self.url = f"postgresql://latchkey:{PASSWORD}@{hosts}/latchkey?connect_timeout=3&target_session_attrs=read-write"
        else:
            self.url = f"postgresql://latchkey:{PASSWORD}@{self.hosts.addr['db']}:5432/latchkey?connect_timeout=3"
        self.nodes = {}
        self.nginx = None
        self.log = open(tmp / "nodes.log", "ab")

    def env(self, url=None):
        return dict(os.environ, LATCHKEY_DATABASE_URL=url or self.url, LATCHKEY_LOG_LEVEL="info")

    def cli(self, *args, url=None, check=True, stdin=None):
        r = subprocess.run([BIN, *args], env=self.env(url), capture_output=True, text=True, timeout=60, input=stdin)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    def start_postgres(self):
        pg = ROOT / "scripts" / "pg-cluster"
        # Created on the unix socket first, to make the role and its database; then listening on the private
        # network only, password required from it.
        local = sh(pg, "start", self.pgdir).stdout.strip()
        self.local = local
        sh("psql", local, "-q", "-c", f"CREATE ROLE latchkey LOGIN PASSWORD '{PASSWORD}'")
        sh("psql", local, "-q", "-c", "CREATE DATABASE latchkey OWNER latchkey")
        if self.standby:
            sh("psql", local, "-q", "-c", f"CREATE ROLE replicator REPLICATION LOGIN PASSWORD '{PASSWORD}'")
        sh(pg, "stop", self.pgdir)
        conf = self.pgdir / "data" / "postgresql.conf"
        conf.write_text(conf.read_text() + f"listen_addresses = '{self.hosts.addr['db']}'\npassword_encryption = scram-sha-256\n")
        hba = self.pgdir / "data" / "pg_hba.conf"
        hba.write_text(hba.read_text() + f"host latchkey latchkey {self.hosts.net}.0/24 scram-sha-256\n")
        if self.standby:
            hba.write_text(hba.read_text() + f"host replication replicator {self.hosts.net}.0/24 scram-sha-256\n")
        self.pg_start()
        if self.standby:
            self.start_standby()
            # Synchronous replication, once the standby streams: a commit is acknowledged only when the standby
            # has it, so a failover loses none (set before it streams, every commit would wait for it).
            sh("psql", local, "-q", "-c", "ALTER SYSTEM SET synchronous_standby_names = '*'")
            sh("psql", local, "-q", "-c", "SELECT pg_reload_conf()")
            deadline = time.monotonic() + 10
            while sh("psql", local, "-tAq", "-c", "SELECT sync_state FROM pg_stat_replication").stdout.strip() != "sync":
                assert time.monotonic() < deadline, "the standby did not become synchronous"
                time.sleep(0.1)

    def start_standby(self):
        """A streaming-replication standby on its own host, cloned from the primary over the network."""
        self.sbdir.mkdir()
        os.chmod(self.sbdir, 0o755)
        for d in ("run", "data"):
            (self.sbdir / d).mkdir(mode=0o700)
            subprocess.run(["chown", "postgres:postgres", str(self.sbdir / d)], check=True)
        sh("runuser", "-u", "postgres", "--", "env", f"PGPASSWORD={PASSWORD}", str(PGBIN / "pg_basebackup"), "-h", self.hosts.addr["db"], "-U", "replicator",
           "-D", self.sbdir / "data", "-R", "-X", "stream", "--checkpoint=fast", ns=self.hosts.ns["sb"])
        conf = self.sbdir / "data" / "postgresql.conf"
        conf.write_text(conf.read_text() + f"listen_addresses = '{self.hosts.addr['sb']}'\nunix_socket_directories = '{self.sbdir / 'run'}'\n"
                        "synchronous_standby_names = ''\n")
        (self.sbdir / "postgres.log").touch()
        subprocess.run(["chown", "postgres:postgres", str(self.sbdir / "postgres.log")], check=True)
        sh(ROOT / "scripts" / "pg-cluster", "start", self.sbdir, ns=self.hosts.ns["sb"])

    def pg_start(self):
        sh(ROOT / "scripts" / "pg-cluster", "start", self.pgdir, ns=self.hosts.ns["db"])

    def start_node(self, name):
        self.nodes[name] = subprocess.Popen(
            ["ip", "netns", "exec", self.hosts.ns[name], BIN, "serve", "--listen", f"{self.hosts.addr[name]}:9000", "--workers", "2",
             # FastCGI from the balancer only (docs/scaling.md).
             "--allow-from", self.hosts.addr["lb"]],
            env=self.env(), stdout=self.log, stderr=self.log)

    def start(self):
        self.hosts.up()
        self.start_postgres()
        init = json.loads(self.cli("init", "--issuer", self.base, "--org", "Multi-host").stdout)
        self.client = (init["client_id"], init["client_secret"])
        for name in ("n1", "n2"):
            self.start_node(name)
        nodes = ",".join(f"{self.hosts.addr[n]}:9000" for n in ("n1", "n2"))
        subprocess.run([str(ROOT / "scripts" / "render-nginx"), str(self.tmp / "nginx"), str(self.port), nodes, "off"], check=True)
        self.nginx = subprocess.Popen(["nginx", "-c", str(self.tmp / "nginx" / "nginx.conf"), "-p", str(self.tmp / "nginx"),
                                       "-g", "daemon off;"], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                # Both nodes up: two healthy answers in a row (nginx alternates).
                if all(requests.get(self.base + "/healthz", timeout=3).status_code == 200 for _ in range(2)):
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("the nodes did not become healthy:\n" + (self.tmp / "nodes.log").read_text(errors="replace"))

    def stop(self):
        if self.nginx:
            self.nginx.send_signal(signal.SIGQUIT)
            self.nginx.wait(timeout=10)
        for proc in self.nodes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        subprocess.run([str(ROOT / "scripts" / "pg-cluster"), "stop", str(self.pgdir)], capture_output=True)
        if self.standby:
            subprocess.run([str(ROOT / "scripts" / "pg-cluster"), "stop", str(self.sbdir)], capture_output=True)
        self.hosts.down()

    def token(self, timeout=10):
        return requests.post(self.base + "/oauth2/token", data={"grant_type": "client_credentials"}, auth=self.client, timeout=timeout)


@pytest.fixture(scope="module")
def hosts():
    reason = namespaces_available()
    if reason:
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="latchkey-e2e-hosts-") as tmp:
        os.chmod(tmp, 0o755)
        m = MultiHost(Path(tmp))
        try:
            yield m.start()
        finally:
            m.stop()


def scrape_token_counts(m, tries=20):
    """`/oauth2/token` 200s per node as far as `tries` scrapes reached: each node's metrics name its listen address
    (`latchkey_node_info`)."""
    counts = {}
    for _ in range(tries):
        text = requests.get(m.base + "/metrics").text
        node = "n1" if f'listen="{m.hosts.addr["n1"]}:9000"' in text else "n2" if f'listen="{m.hosts.addr["n2"]}:9000"' in text else None
        line = next((x for x in text.splitlines() if x.startswith('latchkey_requests_total{route="/oauth2/token",status="200"}')), None)
        if node:
            counts[node] = int(line.split()[1]) if line else 0
        if len(counts) == 2:
            break
    return counts


def per_node_token_counts(m):
    """[n1, n2] token counts; both nodes must answer."""
    counts = scrape_token_counts(m)
    assert len(counts) == 2, f"the scrapes did not reach both nodes: {counts}"
    return [counts["n1"], counts["n2"]]


def test_nodes_on_their_own_hosts_serve_over_tcp_and_share_postgresql(hosts):
    m = hosts
    tokens = [m.token() for _ in range(10)]
    assert all(r.status_code == 200 for r in tokens)
    # Both nodes issued tokens, and each verifies the other's (one database, one key ring).
    assert all(n > 0 for n in per_node_token_counts(m))
    for r in tokens[:4]:
        for _ in range(2):
            i = requests.post(m.base + "/oauth2/introspect", data={"token": r.json()["access_token"]}, auth=m.client)
            assert i.json()["active"] is True
    # A revocation through one node is refused by both at once: first every worker of both nodes (2 x 2) remembers
    # the token as not revoked, then none of them may answer from that memory.
    t = tokens[0].json()["access_token"]
    for _ in range(10):
        assert requests.post(m.base + "/oauth2/introspect", data={"token": t}, auth=m.client).json()["active"] is True
    assert requests.post(m.base + "/oauth2/revoke", data={"token": t}, auth=m.client).status_code == 200
    for _ in range(10):
        assert requests.post(m.base + "/oauth2/introspect", data={"token": t}, auth=m.client).json() == {"active": False}
    # The nodes listen on the private network only: the FastCGI port is not on loopback of the balancer.
    assert subprocess.run(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9000"], capture_output=True).returncode != 0


def test_a_node_answers_fastcgi_from_the_balancer_only(hosts):
    """Another host on the private network (here the database's) reaches a node's FastCGI port but is closed unread:
    without --allow-from it could speak for nginx (any REMOTE_ADDR, no rate limit)."""
    m = hosts
    node = m.hosts.addr["n1"]
    assert fastcgi_get(node, 9000).startswith(b"Status: 200"), "the balancer's own address is admitted"
    probe = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from conftest import fastcgi_get; "
             f"print(repr(fastcgi_get({node!r}, 9000)))")
    r = sh("python3", "-c", probe, ns=m.hosts.ns["db"], check=False)
    assert r.returncode == 0 and r.stdout.strip() == "b''", (r.stdout, r.stderr)
    assert "\nlatchkey_accept_refused_total 1\n" in fastcgi_get(node, 9000, path="/metrics").decode()


def test_postgresql_over_tcp_requires_the_password(hosts):
    m = hosts
    wrong = m.url.replace(PASSWORD, "not-the-password")
    r = m.cli("keys", "list", url=wrong, check=False)
    assert r.returncode != 0
    assert "password authentication failed" in r.stderr, r.stderr
    assert PASSWORD not in r.stderr and "not-the-password" not in r.stderr, "a password in an error message"
    assert m.cli("keys", "list").returncode == 0


def test_a_node_cut_off_the_network_costs_nothing_but_a_connect_timeout(hosts):
    """No reset comes back from a host that vanished: nginx's connect timeout (2 s) sends each request on to the
    other node; idempotent or not, nothing had reached a worker."""
    m = hosts
    n1_before = per_node_token_counts(m)[0]
    m.hosts.link("n1", up=False)
    try:
        for _ in range(4):
            started = time.monotonic()
            r = m.token(timeout=15)
            assert r.status_code == 200, r.text
            assert time.monotonic() - started < 5
    finally:
        m.hosts.link("n1", up=True)
    # Back on the network, it serves again (nginx tries it again once its fail_timeout has passed).
    deadline = time.monotonic() + 30
    while True:
        assert m.token().status_code == 200
        counts = scrape_token_counts(m, tries=4)
        if counts.get("n1", n1_before) > n1_before:
            break
        assert time.monotonic() < deadline, f"n1 issued no token since it came back: {n1_before} -> {counts}"
        time.sleep(0.5)


def test_postgresql_gone_from_the_network_costs_503s_within_the_deadline_then_recovers(hosts):
    """The database host vanishes (no reset, packets dropped): each node gives up on a round trip at its deadline
    (3 s) and answers 503 with Retry-After, never a 500 or a hang; when the host is back they reconnect."""
    m = hosts
    t = m.token().json()["access_token"]
    m.hosts.link("db", up=False)
    try:
        for _ in range(3):
            started = time.monotonic()
            r = requests.post(m.base + "/oauth2/introspect", data={"token": t}, auth=m.client, timeout=30)
            elapsed = time.monotonic() - started
            assert r.status_code == 503, r.text
            assert r.headers.get("Retry-After")
            assert elapsed < 8, f"answered after {elapsed:.1f} s"
    finally:
        m.hosts.link("db", up=True)
    deadline = time.monotonic() + 30
    while True:
        r = requests.post(m.base + "/oauth2/introspect", data={"token": t}, auth=m.client, timeout=30)
        if r.status_code == 200:
            break
        assert r.status_code == 503, r.text
        assert time.monotonic() < deadline, "the nodes did not reconnect"
        time.sleep(0.3)
    for _ in range(4):
        r = requests.post(m.base + "/oauth2/introspect", data={"token": t}, auth=m.client, timeout=30)
        assert r.status_code == 200 and r.json()["active"] is True


@pytest.fixture
def replicated():
    reason = namespaces_available()
    if reason:
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="latchkey-e2e-failover-") as tmp:
        os.chmod(tmp, 0o755)
        m = MultiHost(Path(tmp), standby=True)
        try:
            yield m.start()
        finally:
            m.stop()


def test_a_failover_to_the_standby_under_load_loses_no_acknowledged_write(replicated):
    """The primary dies (immediate shutdown: a crash); the nodes answer 503 with Retry-After while no server accepts
    writes; the standby is promoted; the nodes find it by themselves (libpq's host list with
    target_session_attrs=read-write) and every create acknowledged before, during or after is there."""
    m = replicated
    nodes = type("Nodes", (), {"url": lambda self, path: m.base + path, "client_id": m.client[0], "client_secret": m.client[1]})()
    org = json.loads(m.cli("org", "create", "Load", "--client-limit", "100000").stdout)
    with Load(nodes, (org["client_id"], org["client_secret"]), threads=3) as load:
        time.sleep(1.5)
        sh("runuser", "-u", "postgres", "--", PGBIN / "pg_ctl", "-D", m.pgdir / "data", "-m", "immediate", "-w", "stop")
        time.sleep(1.5)
        sh("runuser", "-u", "postgres", "--", PGBIN / "pg_ctl", "-D", m.sbdir / "data", "-w", "promote", ns=m.hosts.ns["sb"])
        deadline = time.monotonic() + 30
        while m.token().status_code != 200:
            assert time.monotonic() < deadline, "the nodes did not find the new primary"
            time.sleep(0.3)
        recovered_at = len(load.statuses)
        time.sleep(2)
    assert set(load.statuses) <= {200, 201, 503}, sorted(set(map(str, load.statuses)))
    assert 503 in load.statuses, "the failover was not seen"
    assert load.slow == []
    after = load.statuses[recovered_at + 6:]
    assert len(after) > 10 and 201 in after, f"writes did not go on after the failover: {load.statuses[recovered_at:]}"
    assert all(s in (200, 201) for s in after), load.statuses[recovered_at:]
    load.acknowledged_writes_all_exist()
    # What was written before the failover is there too, and writes go on.
    assert len(load.created) > 10

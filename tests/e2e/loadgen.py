"""A load of writes and tokens through nginx for the fault scenarios (SPEC 9): every answer recorded, every
acknowledged create kept, so a test can check that none was lost."""
import threading
import time

import requests


def token(stack, client_id=None, secret=None):
    r = requests.post(stack.url("/oauth2/token"), data={"grant_type": "client_credentials"},
                      auth=(client_id or stack.client_id, secret or stack.client_secret), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


class Load:
    """Writes (client creates) and token requests from several threads through nginx until stopped; every answer is
    recorded, and every acknowledged create's id kept (SPEC 9: no acknowledged write is lost)."""

    def __init__(self, stack, writer, threads=4):
        """`stack`: what answers `url(path)` and holds `client_id`/`client_secret` (tokens); `writer`: the
        (client_id, secret) of an organization's primary client with room for many clients."""
        self.stack, self.stop_flag = stack, False
        self.statuses, self.created, self.slow = [], [], []
        self.writer = writer
        self.headers = {"Authorization": f"Bearer {token(stack, *self.writer)}"}
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, i):
        session = requests.Session()
        n = 0
        while not self.stop_flag:
            n += 1
            started = time.monotonic()
            try:
                if n % 2:
                    r = session.post(self.stack.url("/api/v1/clients"), headers=self.headers, json={"client_name": f"load {i}-{n}"},
                                     timeout=15)
                    if r.status_code == 201:
                        self.created.append(r.json()["client_id"])
                else:
                    r = session.post(self.stack.url("/oauth2/token"), data={"grant_type": "client_credentials"},
                                     auth=(self.stack.client_id, self.stack.client_secret), timeout=15)
                # Recorded, not asserted here: an assertion in this thread would only end the thread.
                self.statuses.append("503 without Retry-After" if r.status_code == 503 and not r.headers.get("Retry-After") else r.status_code)
            except requests.RequestException as e:  # a connection nginx dropped: recorded, never expected
                self.statuses.append(repr(e))
            if time.monotonic() - started > 8:
                self.slow.append(time.monotonic() - started)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag = True
        for t in self.threads:
            t.join(timeout=30)

    def acknowledged_writes_all_exist(self):
        # Read through nginx with a fresh token: both nodes answer, so this also checks what each node sees.
        h = {"Authorization": f"Bearer {token(self.stack, *self.writer)}"}
        missing = [cid for cid in self.created if requests.get(self.stack.url(f"/api/v1/clients/{cid}"), headers=h).status_code != 200]
        assert missing == [], f"{len(missing)} acknowledged creates lost"

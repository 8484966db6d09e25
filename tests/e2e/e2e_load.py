"""A small, bounded load generator for the zero-downtime tests.

Each worker thread sends requests to one target through the ingress on
127.0.0.1:443 (SNI and certificate checked against our CA), a new TLS
connection per request so that no failure hides behind a kept-alive
connection, and counts every answer: 2xx, any other status, or a connection
error. Nothing is retried: a request that fails counts as lost.
"""
import collections
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse

from e2e_support import CA, INGRESS_ADDRESS


class Target:
    """One kind of request: method, host, path, body and headers (a callable
    may give the headers, e.g. a session cookie read at start)."""

    def __init__(self, name, host, path="/", method="GET", body=None, headers=None):
        self.name, self.host, self.path, self.method = name, host, path, method
        self.body, self.headers = body, headers or {}


def request(target, timeout=10):
    """Send one request; return its status, or raise on a connection error."""
    ctx = ssl.create_default_context(cafile=CA)
    sock = socket.create_connection((INGRESS_ADDRESS, 443), timeout=timeout)
    try:
        tls = ctx.wrap_socket(sock, server_hostname=target.host)
    except BaseException:
        sock.close()
        raise
    conn = http.client.HTTPSConnection(target.host, 443, timeout=timeout, context=ctx)
    conn.sock = tls
    try:
        headers = {"Host": target.host, "Connection": "close", **target.headers}
        body = target.body
        if isinstance(body, dict):
            form = headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
            body = urllib.parse.urlencode(body) if form else json.dumps(body)
        conn.request(target.method, target.path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders())
    finally:
        conn.close()


class Load:
    """Run workers against targets until stopped (or max_seconds, whichever
    comes first). Use as a context manager; read the counts afterwards."""

    def __init__(self, targets, workers=1, pause=0.1, max_seconds=600, timeout=10):
        self.targets, self.workers, self.pause = targets, workers, pause
        self.max_seconds, self.timeout = max_seconds, timeout
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = collections.Counter()
        self.failed = collections.defaultdict(collections.Counter)  # target -> {reason: count}
        self.started = self.ended = None
        self.threads = []

    def _run(self, target):
        deadline = self.started + self.max_seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                status, _headers = request(target, self.timeout)
                reason = None if 200 <= status < 300 else f"HTTP {status}"
            except (OSError, http.client.HTTPException) as e:
                reason = f"{type(e).__name__}: {e}"
            with self.lock:
                if reason is None:
                    self.ok[target.name] += 1
                else:
                    self.failed[target.name][reason] += 1
            self.stop.wait(self.pause)

    def __enter__(self):
        self.started = time.monotonic()
        for target in self.targets:
            for _ in range(self.workers):
                t = threading.Thread(target=self._run, args=(target,), daemon=True)
                t.start()
                self.threads.append(t)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(self.timeout + 5)
        self.ended = time.monotonic()
        print(self.summary())
        return False

    def total(self):
        return sum(self.ok.values()) + self.lost()

    def lost(self):
        return sum(sum(c.values()) for c in self.failed.values())

    def summary(self):
        seconds = (self.ended or time.monotonic()) - self.started
        lines = [f"{self.total()} requests in {seconds:.0f} s, {self.lost()} lost"]
        for target in self.targets:
            lost = self.failed.get(target.name, {})
            lines.append(f"  {target.name}: {self.ok[target.name]} ok, "
                         f"{sum(lost.values())} lost {dict(lost) if lost else ''}".rstrip())
        return "\n".join(lines)

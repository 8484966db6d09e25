"""Behaviour the platform relies on: readiness follows the database,
SIGTERM drains, migrations are idempotent under concurrency, a rotated
database credential is used by new connections.

These tests use their own PostgreSQL server, so stopping it never disturbs
the session's shared one.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import psycopg
import pytest

from apps_support import Service, create_database, db_credentials_secret, query, write_secret
from lib.servers import PostgresServer


@pytest.fixture(scope="module")
def own_postgres():
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def instance_on(own_postgres, stack, tmp_path):
    """Factory: an instance service with a fresh database on own_postgres."""
    started = []

    def make(start=True):
        name = f"lc{uuid.uuid4().hex[:6]}"
        database, role = f"{name}_db", f"{name}_owner"
        password = create_database(own_postgres, database, role)[role]
        secret = write_secret(str(tmp_path / f"{name}-db"),
                              db_credentials_secret(own_postgres, database, role, password))
        files = tmp_path / f"{name}-files"
        files.mkdir()
        env = {"DATABASE_HOST": own_postgres.host, "DATABASE_PORT": str(own_postgres.port),
               "DATABASE_NAME": database, "DATABASE_CREDENTIALS_DIR": secret,
               "INSTANCE_NAME": name, "FILES_DIR": str(files), "AUTH_URL": stack.auth.url}
        service = Service("instance", env, str(tmp_path))
        service.database, service.role, service.secret_dir = database, role, secret
        started.append(service)
        return service.start() if start else service
    yield make
    for service in started:
        if service.proc is not None:
            service.terminate()


def test_readiness_follows_the_database(own_postgres, instance_on):
    service = instance_on()
    late = instance_on(start=False)  # its database exists, it starts during the outage
    assert service.get("/readyz").status_code == 200
    own_postgres.kill()
    try:
        r = service.wait_for("/readyz", 503, 15)
        assert "database" in r.json()["failed"]
        # Liveness does not depend on the database: no restart storm.
        assert service.get("/healthz").status_code == 200
        assert service.get("/").status_code >= 500
        # A pod started during the outage listens, is alive, and says why
        # it is not ready: its migrations wait for the database.
        late.start(wait_ready=False)
        r = late.wait_for("/readyz", 503, 10)
        assert "startup" in r.json()["failed"] and "database" in r.json()["failed"]
    finally:
        own_postgres.restart()
    service.wait_for("/readyz", 200, 30)
    assert service.get("/").status_code == 200
    late.wait_for("/readyz", 200, 30)
    assert "Welcome to " + late.env["INSTANCE_NAME"] in late.get("/").text


def test_sigterm_lets_a_slow_request_finish(own_postgres, instance_on, user_token):
    service = instance_on()
    body = json.dumps({"title": "Slow upload", "body": "x" * 1000}).encode()
    head = (f"PUT /api/pages/slow HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {user_token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    client = socket.create_connection(("127.0.0.1", service.port), timeout=20)
    client.sendall(head + body[:100])  # the server now waits for the rest
    time.sleep(0.5)
    service.proc.send_signal(signal.SIGTERM)

    # The listener closes at once: new connections are refused...
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", service.port), timeout=1).close()
        except ConnectionRefusedError:
            break
        assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
        time.sleep(0.1)
    # ...while the request in flight is still being served.
    time.sleep(1.0)
    assert service.proc.poll() is None, "exited with a request in flight"
    client.sendall(body[100:])
    response = b""
    while chunk := client.recv(65536):
        response += chunk
    client.close()
    assert response.split(b"\r\n", 1)[0].endswith(b"201 Created"), response[:200]
    assert service.proc.wait(15) == 0
    assert query(own_postgres, service.database, "SELECT title FROM pages WHERE slug = 'slow'") == [("Slow upload",)]
    messages = [e["msg"] for e in service.log_entries()]
    assert messages.index("shutting down: closing the listener, finishing requests in flight") \
        < messages.index("page saved") < messages.index("stopped")


def test_migrations_are_applied_once_by_concurrent_replicas(own_postgres, instance_on):
    first = instance_on(start=False)
    second = Service("instance", first.env, os.path.dirname(first.log_path))
    # Both replicas start on an empty database at the same moment.
    first.start(wait_ready=False)
    second.start(wait_ready=False)
    try:
        first.wait_for("/readyz", 200, 30)
        second.wait_for("/readyz", 200, 30)
        rows = query(own_postgres, first.database, "SELECT version FROM instance_schema_migrations")
        assert rows == [(1,)]
        applied = [e for s in (first, second) for e in s.log_entries() if e["msg"] == "applied schema migrations"]
        assert len(applied) == 1
    finally:
        assert second.terminate() == 0
    # A restart finds nothing to do.
    assert first.terminate() == 0
    restarted = Service("instance", first.env, os.path.dirname(first.log_path)).start()
    assert restarted.terminate() == 0
    assert not any(e["msg"] == "applied schema migrations" for e in restarted.log_entries())


def test_rotated_database_credentials_are_used_by_new_connections(own_postgres, instance_on):
    service = instance_on()
    assert service.get("/").status_code == 200
    # Dual-user rotation: a second login role with the same rights...
    new_role, new_password = f"{service.role}_b", uuid.uuid4().hex
    with psycopg.connect(own_postgres.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{new_role}" LOGIN PASSWORD \'{new_password}\' IN ROLE "{service.role}"')
    # ...the Secret switches to it, and the old role's sessions are ended
    # (what retiring the old user does).
    write_secret(service.secret_dir, db_credentials_secret(own_postgres, service.database, new_role, new_password))
    with psycopg.connect(own_postgres.dsn(), autocommit=True) as conn:
        conn.execute("ALTER ROLE \"%s\" NOLOGIN" % service.role)
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                     (service.role,))
        deadline = time.monotonic() + 10
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                           (service.role,)).fetchone()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    # The pool notices the ended sessions: not even the next request fails.
    assert service.get("/").status_code == 200
    assert service.get("/readyz").status_code == 200
    users = query(own_postgres, "postgres",
                  "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = %s", (service.database,))
    assert users == [(new_role,)]


def debian_python():
    """/usr/bin/python3 when Debian's packages for the apps are installed."""
    probe = subprocess.run(["/usr/bin/python3", "-c", "import psycopg, redis, jwt, prometheus_client"],
                           capture_output=True)
    return "/usr/bin/python3" if probe.returncode == 0 else None


@pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("setpriv") is None or os.geteuid() != 0,
                    reason="needs root, unshare and setpriv (util-linux) to build the read-only root")
def test_runs_as_non_root_on_a_read_only_root(own_postgres, stack, user_token):
    """As in the pod: uid 10001, the whole filesystem read-only except
    FILES_DIR. Uses Debian's python3 and packages, what the image holds."""
    python = debian_python()
    if python is None:
        pytest.skip("Debian's packages from apps/debian-packages.txt are not installed")
    top = tempfile.mkdtemp(prefix="skx-ro-")
    try:
        os.chmod(top, 0o755)
        name = f"ro{uuid.uuid4().hex[:6]}"
        database, role = f"{name}_db", f"{name}_owner"
        password = create_database(own_postgres, database, role)[role]
        secret = write_secret(os.path.join(top, "db-credentials"),
                              db_credentials_secret(own_postgres, database, role, password))
        files = os.path.join(top, "files")
        os.mkdir(files)
        for path in (secret, files, *[os.path.join(secret, p) for p in os.listdir(secret)]):
            os.lchown(path, 10001, 10001)
        env = {"DATABASE_HOST": own_postgres.host, "DATABASE_PORT": str(own_postgres.port),
               "DATABASE_NAME": database, "DATABASE_CREDENTIALS_DIR": secret,
               "INSTANCE_NAME": name, "FILES_DIR": files, "AUTH_URL": stack.auth.url}
        # unshare execs the shell, the shell execs setpriv, setpriv execs
        # python: SIGTERM reaches the app itself.
        wrapper = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                   'mount --bind "$0" "$0" && mount -o remount,bind,ro / && '
                   'exec setpriv --reuid 10001 --regid 10001 --clear-groups "$@"', files]
        service = Service("instance", env, top, wrapper=wrapper, python=python).start()
        try:
            assert service.put("/api/assets/ro.txt", data=b"written by uid 10001",
                               headers={"Authorization": f"Bearer {user_token}"}).status_code == 201
            assert service.get("/assets/ro.txt").content == b"written by uid 10001"
            assert os.stat(os.path.join(files, "assets", "ro.txt")).st_uid == 10001
            assert service.get("/readyz").status_code == 200
        finally:
            assert service.terminate() == 0
        assert "Traceback" not in service.log_text()
    finally:
        shutil.rmtree(top, ignore_errors=True)

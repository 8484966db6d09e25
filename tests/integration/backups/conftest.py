"""Fixtures of the backup tests: the backup package run exactly as the
CronJobs run it (python3 -m skx_backup, a subprocess configured by
environment), a real Pushgateway and an S3-compatible server (moto) on free
loopback ports."""
import json
import os
import subprocess
import sys
import time
import uuid

import psycopg
import pytest

from backup_helpers import sql
from lib.monitoring_support import built_tools
from lib.servers import _wait_port, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FILES = os.path.join(ROOT, "roles", "backups", "files")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
# The toolbox image runs Debian's python3 with the standard library only: so
# do the tests (outside the virtualenv, -s -P, PYTHONPATH the directory of
# the package, as the pods run it).
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class BackupRun:
    """One run of the backup package: exit status, output, and the result
    it wrote to its result file (None when it wrote none)."""

    def __init__(self, proc, result_file):
        self.returncode = proc.returncode
        self.output = proc.stdout
        self.result = None
        if os.path.exists(result_file):
            with open(result_file, encoding="utf-8") as f:
                self.result = json.load(f)

    def __repr__(self):
        return f"BackupRun(rc={self.returncode}, output=\n{self.output})"


@pytest.fixture
def backup_dir(tmp_path):
    path = tmp_path / "backups"
    path.mkdir()
    return str(path)


@pytest.fixture
def run_backup(postgres_server, redis_server, backup_dir, tmp_path):
    """Run python3 -m skx_backup with the environment a CronJob gives it:
    libpq variables, credentials as files (as mounted from the Secrets), a
    result file (the pods' /dev/termination-log)."""
    creds = tmp_path / "pg-credentials"
    creds.mkdir()
    (creds / "username").write_text(postgres_server.superuser)
    (creds / "password").write_text(postgres_server.password)
    redis_pw = tmp_path / "redis-auth"
    redis_pw.mkdir()
    (redis_pw / "password").write_text(redis_server.password + "\n")

    def run(*args, env=None, timeout=120):
        result_file = tmp_path / f"result-{uuid.uuid4().hex[:8]}.json"
        full_env = {
            "PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "PGHOST": postgres_server.host, "PGPORT": str(postgres_server.port),
            "SKX_PG_CREDENTIALS_DIR": str(creds),
            "REDIS_HOST": redis_server.host, "REDIS_PORT": str(redis_server.port),
            "REDIS_PASSWORD_FILE": str(redis_pw / "password"),
            "SKX_BACKUP_DIR": backup_dir, "SKX_BACKUP_RETENTION_DAYS": "7",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": FILES,
            "SKX_RESULT_FILE": str(result_file),
        }
        full_env.update(env or {})
        proc = subprocess.run([PYTHON, "-s", "-P", "-m", "skx_backup", *args], env=full_env, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return BackupRun(proc, result_file)

    return run


@pytest.fixture
def tenant_db(postgres_server):
    """A database shaped like a tenant's: its own owner role, connect
    privilege revoked from PUBLIC, tables with timestamps and a sequence."""
    suffix = uuid.uuid4().hex[:8]
    name = f"t{suffix}_db"
    owner = f"t{suffix}_user"
    sql(postgres_server, "postgres", f"CREATE ROLE {owner} LOGIN PASSWORD 'pw-{suffix}'")
    # A locale other than the server's default (C.UTF-8): a restore must keep it.
    sql(postgres_server, "postgres", f"CREATE DATABASE {name} OWNER {owner} CONNECTION LIMIT 20 "
                                     "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    sql(postgres_server, "postgres", f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
    sql(postgres_server, "postgres", f"GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {owner}")
    sql(postgres_server, "postgres", f"ALTER DATABASE {name} SET statement_timeout TO '30s'")
    with psycopg.connect(postgres_server.dsn(name, owner, f"pw-{suffix}"), autocommit=True) as conn:
        conn.execute("CREATE TABLE pages (id serial PRIMARY KEY, slug text UNIQUE NOT NULL, "
                     "body text, updated_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("CREATE TABLE assets (id bigserial PRIMARY KEY, page_id int REFERENCES pages, "
                     "name text, size int, created date)")
        conn.execute("CREATE TABLE empty_log (id int, at timestamp)")
        conn.execute("INSERT INTO pages (slug, body, updated_at) SELECT 'p' || g, repeat('x', g), "
                     "timestamptz '2026-11-01 00:00:00+00' + g * interval '1 hour' "
                     "FROM generate_series(1, 120) g")
        conn.execute("INSERT INTO assets (page_id, name, size, created) SELECT 1 + g % 120, "
                     "'f' || g || '.png', g * 10, date '2026-10-01' + g % 30 "
                     "FROM generate_series(1, 300) g")
    yield {"name": name, "owner": owner, "password": f"pw-{suffix}"}
    rows = sql(postgres_server, "postgres",
               "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"t{suffix}_db%",))
    for (db,) in rows:
        sql(postgres_server, "postgres", f'DROP DATABASE "{db}" WITH (FORCE)')
    sql(postgres_server, "postgres", f"DROP ROLE {owner}")


def _serve(cmd, port, log_path):
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, timeout=60)
    except TimeoutError:
        proc.kill()
        raise
    return proc


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory):
    """The Pushgateway we ship (built from its Go module, install-tools.sh)."""
    binary = built_tools()["pushgateway"]
    port = free_port()
    proc = _serve([binary, f"--web.listen-address=127.0.0.1:{port}"], port,
                  tmp_path_factory.mktemp("pushgateway") / "log")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3-compatible server from the virtualenv."""
    port = free_port()
    proc = _serve([os.path.join(VENV_BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                  port, tmp_path_factory.mktemp("moto") / "log")
    time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(30)

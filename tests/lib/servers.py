"""Real servers for the test suite: PostgreSQL and Redis from Debian packages.

Each server runs as a child of the test session, with its own data directory
under a temporary folder and a free port on 127.0.0.1, so tests never touch a
system instance and can run side by side.
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def postgres_bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
    return os.path.dirname(found[-1])


def _as_postgres_user():
    """initdb refuses to run as root: drop to the 'postgres' system user."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")

    def demote():
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)

    return {"preexec_fn": demote}


@dataclass
class PostgresServer:
    """A PostgreSQL cluster with password authentication on 127.0.0.1."""

    superuser: str = "postgres"
    password: str = "test-superuser-pw"
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    datadir: str = ""
    proc: subprocess.Popen = None

    def start(self):
        bindir = postgres_bindir()
        self._tmp = tempfile.mkdtemp(prefix="skx-pg-")
        os.chmod(self._tmp, 0o755)
        self.datadir = os.path.join(self._tmp, "data")
        pwfile = os.path.join(self._tmp, "pw")
        with open(pwfile, "w") as f:
            f.write(self.password)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self._tmp, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        subprocess.run(
            [f"{bindir}/initdb", "-D", self.datadir, "-U", self.superuser,
             f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
             "--locale=C.UTF-8"],
            check=True, stdout=subprocess.DEVNULL, **_as_postgres_user())
        os.unlink(pwfile)
        self._spawn("w")
        # The port answers before the server accepts logins: wait for that too.
        deadline = time.monotonic() + 30
        while subprocess.run(
                ["pg_isready", "-h", self.host, "-p", str(self.port)],
                stdout=subprocess.DEVNULL).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError("PostgreSQL did not become ready")
            time.sleep(0.2)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(getattr(self, "_tmp", ""), ignore_errors=True)

    def kill(self):
        """Stop abruptly, keeping the data directory (to test outages)."""
        self.proc.kill()
        self.proc.wait(30)

    def restart(self):
        """Start again on the same data directory and port after stop/kill."""
        self._spawn("a")

    def _spawn(self, log_mode):
        self.proc = subprocess.Popen(
            [f"{postgres_bindir()}/postgres", "-D", self.datadir, "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self._tmp}",
             "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self._tmp, "log"), log_mode),
            **_as_postgres_user())
        _wait_port(self.port)

    def dsn(self, dbname="postgres", user=None, password=None):
        user = user or self.superuser
        password = self.password if password is None else password
        return f"host={self.host} port={self.port} dbname={dbname} user={user} password={password}"

    def env(self):
        """Environment for libpq command-line tools (psql, pg_dump)."""
        return {**os.environ, "PGHOST": self.host, "PGPORT": str(self.port),
                "PGUSER": self.superuser, "PGPASSWORD": self.password}


@dataclass
class RedisServer:
    """A Redis server with a password and AOF persistence on 127.0.0.1."""

    password: str = "test-redis-pw"
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    proc: subprocess.Popen = None

    def start(self):
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        self._tmp = tempfile.mkdtemp(prefix="skx-redis-")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--requirepass", self.password, "--dir", self._tmp,
             "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(getattr(self, "_tmp", ""), ignore_errors=True)

    def url(self, db=0):
        return f"redis://:{self.password}@{self.host}:{self.port}/{db}"

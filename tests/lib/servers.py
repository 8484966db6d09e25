"""Real servers for the test suite: PostgreSQL and Redis from Debian packages.

Each server runs as a child of the test session, with its own data directory
under a temporary folder and a free port on 127.0.0.1, so tests never touch a
system instance and can run side by side.
"""
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port, timeout=30.0, proc=None):
    """Wait until 127.0.0.1:port accepts connections; when proc is given,
    stop waiting as soon as it has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerExited(f"the server exited (status {proc.returncode}) before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _descendants(pid):
    """The process ids of every descendant of pid, read from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class ServerExited(RuntimeError):
    """The server process ended while it was expected to start."""


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
    """A PostgreSQL cluster with password authentication on 127.0.0.1.

    settings: more server settings (-c name=value); environ: variables added
    to the server's environment, which the programs it runs inherit (an
    archive_command, a restore_command)."""

    superuser: str = "postgres"
    password: str = "test-superuser-pw"
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    datadir: str = ""
    proc: subprocess.Popen = None
    settings: dict = field(default_factory=dict)
    environ: dict = field(default_factory=dict)

    def prepare(self):
        """Make the server's folder (its socket, log and data directory, owned
        by the postgres user) and return the data directory's path, still
        empty: start() runs initdb in it unless it holds a cluster already
        (a restored one, say)."""
        if not getattr(self, "_tmp", None):
            self._tmp = tempfile.mkdtemp(prefix="skx-pg-")
            os.chmod(self._tmp, 0o755)
            self.datadir = os.path.join(self._tmp, "data")
            os.mkdir(self.datadir, 0o700)
            if os.geteuid() == 0:
                pw = pwd.getpwnam("postgres")
                os.chown(self._tmp, pw.pw_uid, pw.pw_gid)
                os.chown(self.datadir, pw.pw_uid, pw.pw_gid)
        return self.datadir

    @property
    def socket_dir(self):
        return self._tmp

    def start(self, ready_timeout=30.0):
        bindir = postgres_bindir()
        self.prepare()
        if not os.path.exists(os.path.join(self.datadir, "PG_VERSION")):
            self._initdb(bindir)
        self._spawn("w")
        # The port answers before the server accepts logins: wait for that too.
        deadline = time.monotonic() + ready_timeout
        while subprocess.run(
                ["pg_isready", "-h", self.host, "-p", str(self.port)],
                stdout=subprocess.DEVNULL).returncode != 0:
            if self.proc.poll() is not None:
                raise ServerExited(f"PostgreSQL exited (status {self.proc.returncode}) while starting; "
                                   f"its log ends with:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError("PostgreSQL did not become ready")
            time.sleep(0.2)
        return self

    def _initdb(self, bindir):
        pwfile = os.path.join(self._tmp, "pw")
        with open(pwfile, "w") as f:
            f.write(self.password)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        subprocess.run(
            [f"{bindir}/initdb", "-D", self.datadir, "-U", self.superuser,
             f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
             "--locale=C.UTF-8"],
            check=True, stdout=subprocess.DEVNULL, **_as_postgres_user())
        os.unlink(pwfile)

    def log_tail(self, lines=20):
        """The last lines of the server's log (stderr)."""
        try:
            with open(os.path.join(self._tmp, "log"), encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # A shutdown waits for the archiver, whose archive_command may
                # hang: stop at once (immediate shutdown) and end what the
                # server had started and left behind.
                leftovers = _descendants(self.proc.pid)
                self.proc.send_signal(signal.SIGQUIT)
                self.proc.wait(30)
                for pid in leftovers:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        shutil.rmtree(getattr(self, "_tmp", ""), ignore_errors=True)

    def kill(self):
        """Stop abruptly, keeping the data directory (to test outages)."""
        self.proc.kill()
        self.proc.wait(30)

    def restart(self):
        """Start again on the same data directory and port after stop/kill."""
        self._spawn("a")

    def _spawn(self, log_mode):
        extra = [a for name, value in self.settings.items() for a in ("-c", f"{name}={value}")]
        with open(os.path.join(self._tmp, "log"), log_mode) as log:
            self.proc = subprocess.Popen(
                [f"{postgres_bindir()}/postgres", "-D", self.datadir, "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self._tmp}",
                 "-c", "fsync=off", "-c", "max_connections=200", *extra],
                stdout=subprocess.DEVNULL, stderr=log,
                env={**os.environ, **self.environ} if self.environ else None,
                **_as_postgres_user())
        try:
            _wait_port(self.port, proc=self.proc)
        except ServerExited as exc:
            raise ServerExited(f"PostgreSQL {exc}; its log ends with:\n{self.log_tail()}") from None

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

"""PostgreSQL access: a small connection pool and idempotent migrations.

Credentials come from DATABASE_CREDENTIALS_DIR (files ``username`` and
``password``) and are read again for every new connection. A credential
rotation alternates between two login roles: the Secret switches to the
other role, connections opened from then on use it, and pooled connections
older than MAX_CONNECTION_AGE are replaced, so the old role can be retired
shortly after without a restart.
"""
import logging
import os
import queue
import re
import select
import time
from contextlib import contextmanager

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from .config import ConfigError, env_dir, env_int, env_str, read_secret_file, secret_dir_snapshot

MAX_CONNECTION_AGE = 300.0
_ROLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
CONNECT_TIMEOUT = 2  # libpq's minimum; under the 3 s readiness probe timeout

log = logging.getLogger("skx.db")


class Database:
    def __init__(self, application_name, max_idle=8):
        self.host = env_str("DATABASE_HOST", required=True)
        self.port = env_int("DATABASE_PORT", 5432, 1, 65535)
        self.name = env_str("DATABASE_NAME", required=True)
        self.credentials_dir = env_dir("DATABASE_CREDENTIALS_DIR", required=True)
        # The NOLOGIN role that owns this service's tables: migrations run
        # as it (SET ROLE), requests as the login role with its own grants.
        # Unset, migrations run as the session's role (a tenant's login
        # roles start each session as their database's owner).
        self.migration_role = env_str("DATABASE_MIGRATION_ROLE")
        if self.migration_role is not None and not _ROLE_RE.match(self.migration_role):
            raise ConfigError("DATABASE_MIGRATION_ROLE must be a role name (lower-case letters, digits and _), "
                              f"got {self.migration_role!r}")
        self.application_name = application_name
        self._idle = queue.LifoQueue(max_idle)
        self._closed = False

    def credentials(self):
        directory = secret_dir_snapshot(self.credentials_dir)
        user = read_secret_file(os.path.join(directory, "username"), "DATABASE_CREDENTIALS_DIR")
        password = read_secret_file(os.path.join(directory, "password"), "DATABASE_CREDENTIALS_DIR")
        if not user:
            raise ConfigError("DATABASE_CREDENTIALS_DIR/username is empty")
        return user, password

    def connect(self):
        user, password = self.credentials()
        conn = psycopg.connect(
            host=self.host, port=self.port, dbname=self.name, user=user, password=password,
            connect_timeout=CONNECT_TIMEOUT, application_name=self.application_name,
            row_factory=dict_row)
        conn.skx_opened = time.monotonic()
        return conn

    def _take(self):
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return self.connect()
            if conn.closed or _server_hung_up(conn) or time.monotonic() - conn.skx_opened > MAX_CONNECTION_AGE:
                conn.close()
                continue
            return conn

    def _give_back(self, conn):
        if self._closed or conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.close()
            return
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def discard_idle(self):
        """Drop every pooled connection (after the server went away)."""
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    @contextmanager
    def transaction(self):
        """A connection inside a transaction, committed when the block ends."""
        conn = self._take()
        try:
            with conn.transaction():
                yield conn
        except psycopg.OperationalError:
            # The server restarted or the network broke: every idle
            # connection is as dead as this one.
            conn.close()
            self.discard_idle()
            raise
        finally:
            self._give_back(conn)

    def ping(self):
        """Readiness: the database answers a query. Connections the server
        has ended are dropped before use, so one attempt tells the truth;
        CONNECT_TIMEOUT keeps it under the probe's timeout."""
        with self.transaction() as conn:
            conn.execute("SELECT 1")

    def close(self):
        self._closed = True
        self.discard_idle()


def _server_hung_up(conn):
    """An idle connection has nothing to read unless the server ended it
    (restart, pg_terminate_backend when a rotated role is retired): then it
    is readable, and is dropped before a request trips over it."""
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


_LOCK_KEY = 0x736B78  # "skx": serialises migrations of every replica


def migrate(db, component, migrations):
    """Apply the missing migrations of ``component``, once, in order.

    Runs at start-up in every replica: ``pg_advisory_xact_lock`` makes the
    replicas take turns, the first applies, the others find nothing to do.
    Each component keeps its own ``<component>_schema_migrations`` table, so
    services sharing a database (auth and payment in superkube) may log in as
    different roles. Everything is one transaction: a failed migration
    leaves the schema as it was.

    With DATABASE_MIGRATION_ROLE (``db.migration_role``) the transaction
    runs as that role (``SET LOCAL ROLE``, which the login role may do as its
    member): the tables it creates belong to it, and the login role's own,
    narrower grants apply again to every later transaction.
    """
    table = f"{component}_schema_migrations"
    with db.transaction() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        if db.migration_role:
            conn.execute(pgsql.SQL("SET LOCAL ROLE {}").format(pgsql.Identifier(db.migration_role)))
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())")
        done = {row["version"] for row in conn.execute(f"SELECT version FROM {table}")}
        applied = []
        for version, name, sql in migrations:
            if version in done:
                continue
            conn.execute(sql)
            conn.execute(f"INSERT INTO {table} (version, name) VALUES (%s, %s)", (version, name))
            applied.append(version)
    if applied:
        log.info("applied schema migrations", extra={"fields": {"component": component, "versions": applied}})
    return applied

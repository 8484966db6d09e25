#!/usr/bin/env python3
"""Backups of the platform's PostgreSQL databases and Redis, their
verification and their restore.

The same file runs in the backup CronJobs (toolbox image: python3,
postgresql-client, redis-tools) and in the test suite against real servers.
Standard library only. Configuration comes from the environment (set by the
CronJob manifests), command-line options override it:

  PGHOST, PGPORT                  PostgreSQL server (libpq variables)
  SKX_PG_CREDENTIALS_DIR          directory with files `username`, `password`
                                  (PGUSER/PGPASSWORD are used when it is unset)
  REDIS_HOST, REDIS_PORT          Redis server
  REDIS_PASSWORD_FILE             file holding the Redis password
  SKX_BACKUP_DIR                  backup volume (default /backups)
  SKX_BACKUP_RETENTION_DAYS       age after which local backups are removed (7)
  SKX_PUSHGATEWAY_URL             Pushgateway base URL; empty: no metrics
  SKX_S3_ENDPOINT, SKX_S3_BUCKET  optional S3-compatible export
  SKX_S3_PREFIX, SKX_S3_REGION
  SKX_S3_CREDENTIALS_DIR          files `access_key_id`, `secret_access_key`
  SKX_S3_CA_FILE                  CA bundle for a private endpoint
  SKX_S3_RETENTION_DAYS           age after which exported backups are removed

Layout of the backup volume:
  postgres/<db>/<db>-<YYYYmmddTHHMMSSZ>.dump         pg_dump -Fc
  postgres/<db>/<db>-<...>.dump.sha256               sha256sum -c compatible
  postgres/<db>/<db>-<...>.dump.json                 table row counts and newest
                                                     timestamp, same snapshot
  redis/redis-<YYYYmmddTHHMMSSZ>.rdb (+ .sha256)

Exit status: 0 success, 1 failure, 2 refused (bad input, missing backup,
checksum mismatch): nothing was changed.
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import ssl
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skx_s3  # noqa: E402  (shipped next to this file)

DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,37}$")
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
DUMP_RE = re.compile(r"^(?P<db>[a-z_][a-z0-9_]*)-(?P<stamp>\d{8}T\d{6}Z)\.dump$")
RDB_RE = re.compile(r"^redis-(?P<stamp>\d{8}T\d{6}Z)\.rdb$")
SIDECARS = (".sha256", ".json")
METRIC_JOB = "skx-backup"
EXIT_FAILED = 1
EXIT_REFUSED = 2


class Refused(Exception):
    """Bad input or an unusable backup: refuse before touching anything."""


class Failed(Exception):
    """The operation started and did not complete."""


def log(message):
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ} {message}", flush=True)


def utc_stamp(now=None):
    return (now or datetime.datetime.now(datetime.timezone.utc)).strftime(STAMP_FORMAT)


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value):
    return "'" + str(value).replace("'", "''") + "'"


def check_db_name(name, option="--database"):
    if not DB_NAME_RE.match(name or ""):
        raise Refused(f"{option}: {name!r} is not a database name this tool manages "
                      "(lower-case letters, digits and '_', at most 38 characters, so that the restore names fit in 63)")
    return name


def read_secret_file(directory, name):
    path = os.path.join(directory, name)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as exc:
        raise Refused(f"cannot read credential file {path}: {exc.strerror}") from None


# --------------------------------------------------------------------- files

def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksum(path):
    digest = sha256_file(path)
    with open(path + ".sha256", "w", encoding="utf-8") as f:
        f.write(f"{digest}  {os.path.basename(path)}\n")
    return digest


def verify_checksum(path):
    """Return the sha256 of path after checking it against path.sha256."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise Refused(f"backup {name} does not exist in {os.path.dirname(path)}")
    try:
        with open(path + ".sha256", encoding="utf-8") as f:
            recorded = f.read().split()[0].lower()
    except (OSError, IndexError):
        raise Refused(f"backup {name} has no readable checksum file {name}.sha256: "
                      "it cannot be trusted") from None
    actual = sha256_file(path)
    if actual != recorded:
        raise Refused(f"backup {name} is corrupted: its sha256 is {actual}, "
                      f"the checksum file recorded {recorded}")
    return actual


def pg_dir(root, database):
    return os.path.join(root, "postgres", database)


def list_dumps(root, database):
    """Dump file names of a database, oldest first."""
    directory = pg_dir(root, database)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = [n for n in names if (m := DUMP_RE.match(n)) and m.group("db") == database]
    return sorted(found, key=lambda n: DUMP_RE.match(n).group("stamp"))


def resolve_dump(root, database, backup):
    """Path of the named dump (or the newest for 'latest'), checksum verified."""
    check_db_name(database)
    dumps = list_dumps(root, database)
    if backup in (None, "", "latest"):
        if not dumps:
            raise Refused(f"no backup of database {database} in {pg_dir(root, database)}")
        name = dumps[-1]
    else:
        m = DUMP_RE.match(backup)
        if not m:
            raise Refused(f"--backup: {backup!r} is neither 'latest' nor a backup name like "
                          f"{database}-20260101T023000Z.dump")
        if m.group("db") != database:
            raise Refused(f"--backup: {backup} is a backup of {m.group('db')}, not of {database}")
        if backup not in dumps:
            available = ", ".join(dumps[-5:]) or "none"
            raise Refused(f"backup {backup} does not exist; newest backups of {database}: {available}")
        name = backup
    path = os.path.join(pg_dir(root, database), name)
    digest = verify_checksum(path)
    return path, digest


def prune(directory, pattern, retention_days, now=None):
    """Remove the backups (and their sidecar files) whose modification time is
    older than the retention window. The newest backup is always kept: when
    the jobs have been failing for longer than the window, the last good
    backup is the one that matters most. Returns the removed names."""
    now = now if now is not None else time.time()
    limit = now - retention_days * 86400
    try:
        names = sorted(n for n in os.listdir(directory) if pattern.match(n))
    except FileNotFoundError:
        return []
    newest = max(names, key=lambda n: pattern.match(n).group("stamp"), default=None)
    removed = []
    for name in names:
        path = os.path.join(directory, name)
        if name == newest or os.path.getmtime(path) >= limit:
            continue
        for suffix in ("",) + SIDECARS:
            try:
                os.unlink(path + suffix)
            except FileNotFoundError:
                pass
        removed.append(name)
    # Leftovers of interrupted runs.
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.endswith(".partial") and os.path.getmtime(path) < now - 86400:
            os.unlink(path)
    for name in removed:
        log(f"retention: removed {name} (older than {retention_days} days)")
    return removed


# ------------------------------------------------------------------ postgres

class PgConfig:
    def __init__(self, args):
        env = dict(os.environ)
        if getattr(args, "pg_credentials_dir", None):
            env["PGUSER"] = read_secret_file(args.pg_credentials_dir, "username")
            env["PGPASSWORD"] = read_secret_file(args.pg_credentials_dir, "password")
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        # Notices on stderr could fill the pipe of a long psql session.
        env.setdefault("PGOPTIONS", "-c client_min_messages=warning")
        env["PGAPPNAME"] = "skx-backup"
        self.env = env

    def run(self, cmd, **kwargs):
        """Run a libpq tool; its stderr is kept for the error message."""
        proc = subprocess.run(cmd, env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, **kwargs)
        if proc.returncode != 0:
            raise Failed(f"{os.path.basename(cmd[0])} failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def psql(self, database, sql):
        """Run SQL through psql; return rows as lists of fields."""
        out = self.run(["psql", "-X", "-q", "-A", "-t", "-F", "\x1f", "-v", "ON_ERROR_STOP=1",
                        "-d", database, "-c", sql])
        # split("\n"), not splitlines(): the latter also splits on \x1e.
        return [line.split("\x1f") for line in out.split("\n") if line != ""]

    def session(self, database):
        return PsqlSession(database, self.env)


class PsqlSession:
    """A psql process kept open, to hold a transaction (and its exported
    snapshot) across several statements."""

    def __init__(self, database, env):
        self.proc = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "-d", database],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env)

    def query(self, sql):
        marker = f"__skx_{uuid.uuid4().hex}__"
        self.proc.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo " + marker + "\n")
        self.proc.stdin.flush()
        rows = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(10)
                raise Failed(f"psql failed: {self.proc.stderr.read().strip()[-2000:]}")
            line = line.rstrip("\n")
            if line == marker:
                return rows
            if line:
                rows.append(line.split("\x1f"))

    def close(self):
        try:
            self.proc.stdin.write("COMMIT;\n\\q\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        self.proc.wait(30)


# Tables of the database, with the columns whose maximum says how recent the
# data is. Partitioned parents are skipped: their partitions are counted.
TABLES_SQL = r"""
SELECT n.nspname, c.relname,
       coalesce(string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum)
                FILTER (WHERE a.atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype,
                                            'date'::regtype)), '')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
GROUP BY n.nspname, c.relname
ORDER BY 1, 2
"""


def inspect_database(query):
    """Row count per table and newest timestamp (epoch seconds, or None) of a
    database, through `query` (a function running SQL and returning rows)."""
    tables = query(TABLES_SQL)
    if not tables:
        return {"tables": {}, "newest_timestamp": None}
    parts = []
    for schema, table, ts_cols in tables:
        newest = "NULL::float8"
        if ts_cols:
            maxes = ", ".join(f"max(extract(epoch FROM {c}::timestamptz)) FILTER (WHERE isfinite({c}))"
                              for c in ts_cols.split(","))
            newest = f"greatest({maxes})::float8"
        parts.append(f"SELECT {quote_literal(schema + '.' + table)}, count(*), {newest} "
                     f"FROM {quote_ident(schema)}.{quote_ident(table)}")
    counts = {}
    newest_all = None
    for name, count, newest in query("\nUNION ALL\n".join(parts)):
        counts[name] = int(count)
        if newest:
            newest_all = max(newest_all or float("-inf"), float(newest))
    return {"tables": counts, "newest_timestamp": newest_all}


def pg_dump(args):
    """Dump one database (custom format) with a checksum and a manifest of row
    counts taken in the same snapshot as the dump."""
    database = check_db_name(args.database)
    pg = PgConfig(args)
    directory = pg_dir(args.backup_dir, database)
    os.makedirs(directory, exist_ok=True)
    stamp = utc_stamp()
    name = f"{database}-{stamp}.dump"
    while os.path.exists(os.path.join(directory, name)):
        time.sleep(1)
        stamp = utc_stamp()
        name = f"{database}-{stamp}.dump"
    final = os.path.join(directory, name)
    partial = final + ".partial"
    log(f"pg_dump: dumping {database} to {final}")
    session = pg.session(database)
    try:
        session.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = session.query("SELECT pg_export_snapshot()")[0][0]
        manifest = inspect_database(session.query)
        pg.run(["pg_dump", "-Fc", f"--snapshot={snapshot}", "-f", partial, "-d", database])
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    finally:
        session.close()
    os.rename(partial, final)
    digest = write_checksum(final)
    size = os.path.getsize(final)
    manifest.update({"database": database, "backup": name, "created": stamp,
                     "size_bytes": size, "sha256": digest})
    with open(final + ".json", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    log(f"pg_dump: {name}: {size} bytes, {len(manifest['tables'])} tables, "
        f"{sum(manifest['tables'].values())} rows, sha256 {digest}")
    prune(directory, DUMP_RE, args.retention_days)
    s3_export(args, f"postgres/{database}", final, digest, DUMP_RE)
    return {"size": size, "backup": name}


def toc_tables(pg, path):
    """Tables whose data the dump carries ('schema.table'), from its table of
    contents."""
    out = pg.run(["pg_restore", "-l", path])
    tables = set()
    for line in out.splitlines():
        # "215; 0 16390 TABLE DATA public pages owner"
        m = re.match(r"^\d+; \d+ \d+ TABLE DATA (\S+) (\S+) ", line)
        if m:
            tables.add(f"{m.group(1)}.{m.group(2)}")
    return tables


def create_scratch(pg, name):
    pg.psql("postgres", f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    pg.psql("postgres", f"CREATE DATABASE {quote_ident(name)}")
    # Nobody but the superuser connects to a scratch copy.
    pg.psql("postgres", f"REVOKE ALL ON DATABASE {quote_ident(name)} FROM PUBLIC")


def check_restored(pg, database, path, manifest):
    """Compare a restored database with the dump's table of contents and its
    manifest. Returns the inspection; raises Failed on any difference."""
    found = inspect_database(lambda sql: pg.psql(database, sql))
    expected_tables = toc_tables(pg, path)
    missing = sorted(expected_tables - set(found["tables"]))
    if missing:
        raise Failed(f"tables missing after restore: {', '.join(missing)}")
    if manifest:
        want = manifest.get("tables", {})
        diffs = [f"{t}: {found['tables'].get(t)} rows, backup recorded {n}"
                 for t, n in sorted(want.items()) if found["tables"].get(t) != n]
        if diffs:
            raise Failed("row counts differ after restore: " + "; ".join(diffs))
        if manifest.get("newest_timestamp") != found["newest_timestamp"]:
            raise Failed(f"newest timestamp after restore is {found['newest_timestamp']}, "
                         f"the backup recorded {manifest.get('newest_timestamp')}")
    return found


def read_manifest(path):
    try:
        with open(path + ".json", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def verify_restore(args):
    """Restore the newest dump of each database into a scratch database,
    check it, record the result and drop the scratch database."""
    pg = PgConfig(args)
    failures = 0
    for database in args.database:
        started = time.time()
        scratch = f"skx_verify_{database}"[:63]
        size = 0
        try:
            path, _ = resolve_dump(args.backup_dir, database, "latest")
            size = os.path.getsize(path)
            manifest = read_manifest(path)
            log(f"verify: restoring {os.path.basename(path)} into scratch database {scratch}")
            create_scratch(pg, scratch)
            pg.run(["pg_restore", "--exit-on-error", "--single-transaction", "--no-owner",
                    "--no-acl", "-d", scratch, path])
            found = check_restored(pg, scratch, path, manifest)
            rows = sum(found["tables"].values())
            newest = found["newest_timestamp"]
            log(f"verify: {database} OK: {len(found['tables'])} tables, {rows} rows, newest "
                f"timestamp {fmt_epoch(newest)}"
                + ("" if manifest else " (no manifest: tables checked, counts not compared)"))
            push_metrics(args, database, "restore_verify", ok=True, started=started, size=size,
                         extra={"skx_backup_restore_verify_tables": len(found["tables"]),
                                "skx_backup_restore_verify_rows": rows,
                                "skx_backup_data_newest_timestamp_seconds": newest or 0})
        except (Refused, Failed) as exc:
            failures += 1
            log(f"verify: {database} FAILED: {exc}")
            push_metrics(args, database, "restore_verify", ok=False, started=started)
        finally:
            try:
                pg.psql("postgres", f"DROP DATABASE IF EXISTS {quote_ident(scratch)} WITH (FORCE)")
            except Failed as exc:
                log(f"verify: could not drop scratch database {scratch}: {exc}")
    if failures:
        raise Failed(f"restore verification failed for {failures} of {len(args.database)} databases")
    return {}


def fmt_epoch(value):
    if value is None:
        return "none"
    return datetime.datetime.fromtimestamp(value, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_restore(args):
    """Resolve and check the backup to restore; print what restoring it does."""
    path, digest = resolve_dump(args.backup_dir, check_db_name(args.database), args.backup)
    manifest = read_manifest(path) or {}
    result = {"database": args.database, "backup": os.path.basename(path),
              "sha256": digest, "size_bytes": os.path.getsize(path),
              "created": manifest.get("created"),
              "rows": sum(manifest.get("tables", {}).values()) if manifest else None,
              "available": list(reversed(list_dumps(args.backup_dir, args.database)))[:30]}
    log(f"restore plan: {args.database} from {result['backup']} ({result['size_bytes']} bytes, "
        f"checksum OK)")
    return result


# Owner, connection limit, privileges and settings of a database, as
# statements with @DB@ standing for the database they are applied to.
DATABASE_PROPERTIES_SQL = """
SELECT pg_get_userbyid(d.datdba), d.datconnlimit,
       coalesce((SELECT string_agg(format('GRANT %s ON DATABASE @DB@ TO %s%s', a.privilege_type,
                        CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                        CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END), chr(30))
                 FROM aclexplode(d.datacl) a), ''),
       d.datacl IS NULL,
       coalesce((SELECT string_agg(CASE WHEN s.setrole = 0
                        THEN format('ALTER DATABASE @DB@ SET %s TO %L', split_part(c, '=', 1),
                                    substr(c, strpos(c, '=') + 1))
                        ELSE format('ALTER ROLE %I IN DATABASE @DB@ SET %s TO %L',
                                    pg_get_userbyid(s.setrole), split_part(c, '=', 1),
                                    substr(c, strpos(c, '=') + 1)) END, chr(30))
                 FROM pg_db_role_setting s, unnest(s.setconfig) c WHERE s.setdatabase = d.oid), ''),
       pg_encoding_to_char(d.encoding), d.datcollate, d.datctype
FROM pg_database d WHERE d.datname = :datname
"""


def restore(args):
    """Restore a dump into a fresh database (same owner, privileges, limits
    and settings as the current one), check it, and with --swap put it in
    place of the current database, which is kept as <db>_pre_<stamp>."""
    plan = plan_restore(args)
    database = args.database
    pg = PgConfig(args)
    path = os.path.join(pg_dir(args.backup_dir, database), plan["backup"])
    stamp = utc_stamp().lower()
    fresh = f"{database}_restore_{stamp}"
    previous = f"{database}_pre_{stamp}"
    rows = pg.psql("postgres", DATABASE_PROPERTIES_SQL.replace(":datname", quote_literal(database)))
    if not rows:
        raise Refused(f"database {database} does not exist on the server: nothing to restore over "
                      "(create it first, e.g. by running the platform playbook)")
    owner, connlimit, grants, default_acl, settings, encoding, collate, ctype = rows[0]
    started = time.time()
    log(f"restore: creating {fresh} owned by {owner}")
    # The same encoding and locale as the database it replaces: they cannot
    # change in place, and the platform checks them on every run.
    pg.psql("postgres", f"CREATE DATABASE {quote_ident(fresh)} OWNER {quote_ident(owner)} "
                        f"CONNECTION LIMIT {int(connlimit)} TEMPLATE template0 ENCODING {quote_literal(encoding)} "
                        f"LC_COLLATE {quote_literal(collate)} LC_CTYPE {quote_literal(ctype)}")
    try:
        statements = []
        if default_acl != "t":
            statements.append(f"REVOKE ALL ON DATABASE {quote_ident(fresh)} FROM PUBLIC")
            statements += [g.replace("@DB@", quote_ident(fresh)) for g in grants.split("\x1e") if g]
        statements += [s.replace("@DB@", quote_ident(fresh)) for s in settings.split("\x1e") if s]
        for statement in statements:
            pg.psql("postgres", statement)
        log(f"restore: pg_restore {plan['backup']} into {fresh}")
        pg.run(["pg_restore", "--exit-on-error", "--single-transaction", "-d", fresh, path])
        found = check_restored(pg, fresh, path, read_manifest(path))
        log(f"restore: {fresh} checked: {len(found['tables'])} tables, "
            f"{sum(found['tables'].values())} rows")
        if args.swap:
            swap(pg, database, fresh, previous)
    except BaseException:
        log(f"restore: dropping the incomplete {fresh}; {database} is unchanged")
        pg.psql("postgres", f"DROP DATABASE IF EXISTS {quote_ident(fresh)} WITH (FORCE)")
        raise
    plan.update({"restored_into": fresh if not args.swap else database,
                 "previous_database": previous if args.swap else None,
                 "seconds": round(time.time() - started, 1)})
    return plan


def swap(pg, database, fresh, previous):
    """Rename the restored database into place in one transaction. New
    connections to the current database are refused first and the remaining
    ones closed (the instance's workloads are scaled down by then)."""
    log(f"restore: swapping {fresh} in as {database}; the current one becomes {previous}")
    pg.psql("postgres", f"ALTER DATABASE {quote_ident(database)} WITH ALLOW_CONNECTIONS false")
    try:
        for attempt in range(5):
            pg.psql("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                f"WHERE datname IN ({quote_literal(database)}, {quote_literal(fresh)}) "
                                "AND pid <> pg_backend_pid()")
            try:
                pg.psql("postgres", f"BEGIN; ALTER DATABASE {quote_ident(database)} RENAME TO "
                                    f"{quote_ident(previous)}; ALTER DATABASE {quote_ident(fresh)} "
                                    f"RENAME TO {quote_ident(database)}; COMMIT")
                break
            except Failed as exc:
                if attempt == 4:
                    raise
                log(f"restore: rename not possible yet ({exc}); retrying")
                time.sleep(1)
    except BaseException:
        pg.psql("postgres", f"ALTER DATABASE {quote_ident(database)} WITH ALLOW_CONNECTIONS true")
        raise
    # Nothing uses the previous database by its new name: let an operator
    # connect to it to compare or to copy rows back.
    pg.psql("postgres", f"ALTER DATABASE {quote_ident(previous)} WITH ALLOW_CONNECTIONS true")


# --------------------------------------------------------------------- redis

def redis_cli(args, *command, timeout=60):
    cmd = ["redis-cli", "--no-auth-warning", "-h", args.redis_host, "-p", str(args.redis_port)]
    env = dict(os.environ)
    if args.redis_password_file:
        env["REDISCLI_AUTH"] = read_secret_file(os.path.dirname(args.redis_password_file),
                                                os.path.basename(args.redis_password_file))
    proc = subprocess.run(cmd + list(command), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)
    out = proc.stdout.strip()
    if proc.returncode != 0 or out.startswith(("ERR", "NOAUTH", "WRONGPASS", "Could not connect")):
        raise Failed(f"redis-cli {command[0]} failed: {(out or proc.stderr.strip())[-500:]}")
    return out


def redis_rdb(args):
    """BGSAVE, wait until LASTSAVE moves (the server persisted a fresh RDB on
    its own volume), then copy an RDB over the network and check it."""
    directory = os.path.join(args.backup_dir, "redis")
    os.makedirs(directory, exist_ok=True)
    before = int(redis_cli(args, "LASTSAVE"))
    if before >= int(redis_cli(args, "TIME").split()[0]):
        time.sleep(1)  # LASTSAVE has a one-second resolution
    answer = redis_cli(args, "BGSAVE", "SCHEDULE")
    log(f"redis: BGSAVE: {answer}")
    deadline = time.time() + args.redis_save_timeout
    while int(redis_cli(args, "LASTSAVE")) <= before:
        info = redis_cli(args, "INFO", "persistence")
        if "rdb_last_bgsave_status:err" in info and "rdb_bgsave_in_progress:0" in info:
            raise Failed("redis: BGSAVE failed on the server (rdb_last_bgsave_status:err)")
        if time.time() > deadline:
            raise Failed(f"redis: LASTSAVE did not move within {args.redis_save_timeout}s")
        time.sleep(0.5)
    stamp = utc_stamp()
    final = os.path.join(directory, f"redis-{stamp}.rdb")
    partial = final + ".partial"
    try:
        redis_cli(args, "--rdb", partial, timeout=args.redis_save_timeout)
        with open(partial, "rb") as f:
            if f.read(5) != b"REDIS":
                raise Failed("redis: the copied file is not an RDB (no REDIS header)")
        if shutil.which("redis-check-rdb"):
            check = subprocess.run(["redis-check-rdb", partial], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
            if check.returncode != 0:
                raise Failed(f"redis: redis-check-rdb rejects the copy: {check.stdout[-500:]}")
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    os.rename(partial, final)
    digest = write_checksum(final)
    size = os.path.getsize(final)
    log(f"redis: {os.path.basename(final)}: {size} bytes, sha256 {digest}")
    prune(directory, RDB_RE, args.retention_days)
    s3_export(args, "redis", final, digest, RDB_RE)
    return {"size": size, "backup": os.path.basename(final)}


# ------------------------------------------------------------------------ s3

def s3_client(args):
    if not args.s3_endpoint:
        return None
    if not args.s3_bucket:
        raise Refused("SKX_S3_ENDPOINT is set but SKX_S3_BUCKET is empty: name the bucket")
    if args.s3_credentials_dir:
        access = read_secret_file(args.s3_credentials_dir, "access_key_id")
        secret = read_secret_file(args.s3_credentials_dir, "secret_access_key")
    else:
        access = os.environ.get("AWS_ACCESS_KEY_ID", "")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not access or not secret:
        raise Refused("S3 export: no credentials (SKX_S3_CREDENTIALS_DIR with files "
                      "access_key_id and secret_access_key)")
    return skx_s3.S3Client(args.s3_endpoint, args.s3_bucket, access, secret,
                           region=args.s3_region, ca_file=args.s3_ca_file or None)


def s3_key(args, *parts):
    return "/".join(p.strip("/") for p in (args.s3_prefix,) + parts if p and p.strip("/"))


def s3_export(args, subdir, path, digest, pattern):
    """Upload a backup and its checksum file, then download it back and
    compare checksums: an export that cannot be read back is a failure."""
    client = s3_client(args)
    if client is None:
        return
    name = os.path.basename(path)
    key = s3_key(args, subdir, name)
    size = os.path.getsize(path)
    try:
        client.put_file(key, path, digest, size, metadata={"sha256": digest})
        remote, remote_size = client.sha256_of(key)
        if remote != digest or remote_size != size:
            raise Failed(f"S3 export of {name} does not read back identical: sha256 {remote} "
                         f"({remote_size} bytes), expected {digest} ({size} bytes)")
        with open(path + ".sha256", "rb") as f:
            client.put_bytes(key + ".sha256", f.read())
        if os.path.exists(path + ".json"):
            with open(path + ".json", "rb") as f:
                client.put_bytes(key + ".json", f.read(), "application/json")
    except (skx_s3.S3Error, OSError) as exc:
        raise Failed(f"S3 export of {name} to {args.s3_bucket}/{key} failed: {exc}") from None
    log(f"s3: exported {name} to {args.s3_bucket}/{key}, read back with sha256 {digest}")
    s3_prune(args, client, subdir, pattern)


def s3_prune(args, client, subdir, pattern, now=None):
    """Remove exported backups older than the S3 retention (by the time in
    their name), always keeping the newest."""
    days = args.s3_retention_days
    if days <= 0:
        return []
    now = now or datetime.datetime.now(datetime.timezone.utc)
    prefix = s3_key(args, subdir) + "/"
    backups = {}
    for key, _ in client.list(prefix):
        m = pattern.match(key[len(prefix):])
        if m:
            backups[key] = datetime.datetime.strptime(m.group("stamp"), STAMP_FORMAT).replace(
                tzinfo=datetime.timezone.utc)
    newest = max(backups, key=backups.get, default=None)
    removed = []
    for key, created in sorted(backups.items()):
        if key != newest and created < now - datetime.timedelta(days=days):
            for suffix in ("",) + SIDECARS:
                client.delete(key + suffix)
            removed.append(key)
            log(f"s3 retention: removed {key}")
    return removed


# ----------------------------------------------------------------- snapshots

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SNAPSHOT_API = "/apis/snapshot.storage.k8s.io/v1"
SNAPSHOT_LABEL = "superkubernetex.com/snapshot-of"


def snapshot_body(namespace, pvc, snapshot_class, stamp):
    """The VolumeSnapshot of one PVC, labelled so the retention finds it."""
    return {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {
            "name": f"{pvc}-{stamp.lower()}"[:253],
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "backup",
                       "app.kubernetes.io/part-of": "superkubernetex",
                       "app.kubernetes.io/managed-by": "superkubernetex",
                       SNAPSHOT_LABEL: pvc},
        },
        "spec": {"volumeSnapshotClassName": snapshot_class,
                 "source": {"persistentVolumeClaimName": pvc}},
    }


def expired_snapshots(items, retention_days, now):
    """Names of the snapshots older than the window, never the newest."""
    dated = []
    for item in items:
        created = datetime.datetime.strptime(item["metadata"]["creationTimestamp"],
                                             "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        dated.append((created, item["metadata"]["name"]))
    dated.sort()
    limit = now - datetime.timedelta(days=retention_days)
    return [name for created, name in dated[:-1] if created < limit]


def kube_request(method, path, body=None):
    with open(os.path.join(SA_DIR, "token"), encoding="utf-8") as f:
        token = f.read().strip()
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    request = urllib.request.Request(
        f"https://{host}:{port}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 "Accept": "application/json"})
    context = ssl.create_default_context(cafile=os.path.join(SA_DIR, "ca.crt"))
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise Failed(f"Kubernetes API {method} {path}: HTTP {exc.code} "
                     f"{exc.read(500).decode('utf-8', 'replace')}") from None


def snapshots(args):
    """Snapshot each PVC through the CSI snapshot API, wait until the
    snapshot is ready, and apply the retention to earlier snapshots."""
    if not args.snapshot_class:
        log("snapshots: no VolumeSnapshotClass configured; PVC snapshots skipped "
            "(the pg_dump and Redis backups do not depend on them)")
        return {}
    stamp = utc_stamp()
    failures = []
    for target in args.pvc:
        namespace, _, pvc = target.partition("/")
        started = time.time()
        base = f"{SNAPSHOT_API}/namespaces/{namespace}/volumesnapshots"
        try:
            body = snapshot_body(namespace, pvc, args.snapshot_class, stamp)
            kube_request("POST", base, body)
            name = body["metadata"]["name"]
            deadline = time.time() + args.snapshot_timeout
            while True:
                status = kube_request("GET", f"{base}/{name}").get("status") or {}
                if status.get("readyToUse"):
                    break
                if status.get("error"):
                    raise Failed(f"snapshot {namespace}/{name}: {status['error'].get('message')}")
                if time.time() > deadline:
                    raise Failed(f"snapshot {namespace}/{name} not ready after {args.snapshot_timeout}s")
                time.sleep(5)
            size = status.get("restoreSize", "")
            log(f"snapshots: {namespace}/{name} ready ({size})")
            listing = kube_request("GET", f"{base}?labelSelector={SNAPSHOT_LABEL}%3D{pvc}")
            for old in expired_snapshots(listing.get("items", []), args.retention_days,
                                         datetime.datetime.now(datetime.timezone.utc)):
                kube_request("DELETE", f"{base}/{old}")
                log(f"snapshots: retention removed {namespace}/{old}")
            push_metrics(args, pvc, "volume_snapshot", ok=True, started=started,
                         group={"namespace": namespace})
        except (Failed, OSError) as exc:
            log(f"snapshots: {target} FAILED: {exc}")
            failures.append(target)
            push_metrics(args, pvc, "volume_snapshot", ok=False, started=started,
                         group={"namespace": namespace})
    if failures:
        raise Failed(f"snapshots failed for {', '.join(failures)}")
    return {}


# ------------------------------------------------------------------- metrics

def push_metrics(args, database, kind, ok, started, size=None, extra=None, group=None):
    """Push the outcome to the Pushgateway (POST: a failure replaces status and
    duration but keeps the last success time and size)."""
    if not args.pushgateway_url:
        log("metrics: SKX_PUSHGATEWAY_URL is empty, outcome not pushed")
        return
    values = {"skx_backup_last_status": 1 if ok else 0,
              "skx_backup_last_duration_seconds": round(time.time() - started, 3)}
    if ok:
        values["skx_backup_last_success_timestamp_seconds"] = round(time.time(), 3)
        if size is not None:
            values["skx_backup_last_size_bytes"] = size
        values.update(extra or {})
    body = "".join(f"# TYPE {name} gauge\n{name} {value}\n" for name, value in values.items())
    url = (args.pushgateway_url.rstrip("/") + f"/metrics/job/{METRIC_JOB}"
           f"/database/{urllib.parse.quote(database, safe='')}/kind/{kind}")
    for label, value in (group or {}).items():
        url += f"/{label}/{urllib.parse.quote(value, safe='')}"
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"Content-Type": "text/plain; version=0.0.4"})
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            resp.read()
    except OSError as exc:
        # The backup itself is on the volume; a missing metric fires the
        # "last success too old" alert instead.
        log(f"metrics: push to {args.pushgateway_url} failed: {exc}")
        return
    log(f"metrics: pushed {kind} outcome of {database} ({'ok' if ok else 'failed'})")


# ----------------------------------------------------------------------- cli

def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backup-dir", default=os.environ.get("SKX_BACKUP_DIR", "/backups"))
    p.add_argument("--retention-days", type=int, default=env_int("SKX_BACKUP_RETENTION_DAYS", 7))
    p.add_argument("--pg-credentials-dir", default=os.environ.get("SKX_PG_CREDENTIALS_DIR"))
    p.add_argument("--redis-host", default=os.environ.get("REDIS_HOST", "127.0.0.1"))
    p.add_argument("--redis-port", type=int, default=env_int("REDIS_PORT", 6379))
    p.add_argument("--redis-password-file", default=os.environ.get("REDIS_PASSWORD_FILE"))
    p.add_argument("--redis-save-timeout", type=int, default=env_int("SKX_REDIS_SAVE_TIMEOUT", 300))
    p.add_argument("--pushgateway-url", default=os.environ.get("SKX_PUSHGATEWAY_URL", ""))
    p.add_argument("--s3-endpoint", default=os.environ.get("SKX_S3_ENDPOINT", ""))
    p.add_argument("--s3-bucket", default=os.environ.get("SKX_S3_BUCKET", ""))
    p.add_argument("--s3-prefix", default=os.environ.get("SKX_S3_PREFIX", ""))
    p.add_argument("--s3-region", default=os.environ.get("SKX_S3_REGION", "") or "us-east-1")
    p.add_argument("--s3-credentials-dir", default=os.environ.get("SKX_S3_CREDENTIALS_DIR"))
    p.add_argument("--s3-ca-file", default=os.environ.get("SKX_S3_CA_FILE", ""))
    p.add_argument("--s3-retention-days", type=int,
                   default=env_int("SKX_S3_RETENTION_DAYS", env_int("SKX_BACKUP_RETENTION_DAYS", 7)))
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("pg-dump", help="dump one database")
    s.add_argument("--database", required=True)
    sub.add_parser("redis-rdb", help="back up Redis")
    s = sub.add_parser("verify-restore", help="restore the newest dumps into scratch databases")
    s.add_argument("--database", action="append", required=True)
    for name in ("plan-restore", "restore"):
        s = sub.add_parser(name, help="check a backup" if name == "plan-restore"
                           else "restore a backup into a fresh database")
        s.add_argument("--database", required=True)
        s.add_argument("--backup", default="latest", help="backup file name or 'latest'")
        if name == "restore":
            s.add_argument("--swap", action="store_true",
                           help="rename the restored database into place")
    s = sub.add_parser("snapshots", help="take VolumeSnapshots of PVCs")
    s.add_argument("--pvc", action="append", default=[], help="namespace/name")
    s.add_argument("--snapshot-class", default=os.environ.get("SKX_SNAPSHOT_CLASS", ""))
    s.add_argument("--snapshot-timeout", type=int, default=env_int("SKX_SNAPSHOT_TIMEOUT", 600))
    s = sub.add_parser("prune", help="apply the retention to the backup volume")
    s.add_argument("--database", action="append", default=[])
    return p


def wait_for_server(host, port, timeout):
    """Wait until host:port accepts a TCP connection.

    A new pod's address reaches the NetworkPolicy sets a few seconds after
    the pod starts (kube-router, as k3s embeds it): until then connections
    are refused. A job must not fail for that."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=3).close()
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise Failed(f"{host}:{port} did not accept a connection within {timeout}s: {exc}") from None
            time.sleep(1)


def main(argv=None):
    args = parser().parse_args(argv)
    started = time.time()
    kind = {"pg-dump": "pg_dump", "redis-rdb": "redis_rdb"}.get(args.command)
    database = getattr(args, "database", None) if args.command != "redis-rdb" else "redis"
    try:
        wait = env_int("SKX_CONNECT_TIMEOUT", 60)
        if args.command == "redis-rdb":
            wait_for_server(args.redis_host, args.redis_port, wait)
        elif args.command in ("pg-dump", "verify-restore", "restore") \
                and not os.environ.get("PGHOST", "127.0.0.1").startswith("/"):
            wait_for_server(os.environ.get("PGHOST", "127.0.0.1"), env_int("PGPORT", 5432), wait)
        if args.command == "pg-dump":
            result = pg_dump(args)
        elif args.command == "redis-rdb":
            result = redis_rdb(args)
        elif args.command == "verify-restore":
            for name in args.database:
                check_db_name(name)
            result = verify_restore(args)
        elif args.command == "snapshots":
            result = snapshots(args)
        elif args.command == "plan-restore":
            result = plan_restore(args)
        elif args.command == "restore":
            result = restore(args)
        else:
            result = {"removed": [n for db in args.database
                                  for n in prune(pg_dir(args.backup_dir, check_db_name(db)),
                                                 DUMP_RE, args.retention_days)]}
    except Refused as exc:
        log(f"REFUSED: {exc}")
        print("SKX_RESULT " + json.dumps({"ok": False, "refused": True, "msg": str(exc)}), flush=True)
        if kind:
            push_metrics(args, database, kind, ok=False, started=started)
        return EXIT_REFUSED
    except (Failed, OSError, subprocess.SubprocessError) as exc:
        log(f"FAILED: {exc}")
        print("SKX_RESULT " + json.dumps({"ok": False, "refused": False, "msg": str(exc)}), flush=True)
        if kind:
            push_metrics(args, database, kind, ok=False, started=started)
        return EXIT_FAILED
    if kind:
        push_metrics(args, database, kind, ok=True, started=started, size=result.get("size"))
    print("SKX_RESULT " + json.dumps({"ok": True, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PostgreSQL: the dump with its manifest, the nightly restore
verification, the plan and the restore of one database (and its swap)."""
import datetime
import json
import os
import re
import subprocess
import time
import uuid

from .common import (DUMP_RE, Failed, Refused, check_db_name, log, quote_ident, quote_literal, read_secret_file,
                     utc_stamp)
from .files import list_dumps, pg_dir, prune, resolve_dump, write_checksum
from .metrics import push_metrics
from .s3 import s3_export


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

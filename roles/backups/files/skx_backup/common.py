"""What every module of the package shares: the two errors, the log line,
the names and stamps of backups, SQL quoting, credential files."""
import datetime
import os
import re

DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,37}$")
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
DUMP_RE = re.compile(r"^(?P<db>[a-z_][a-z0-9_]*)-(?P<stamp>\d{8}T\d{6}Z)\.dump$")
RDB_RE = re.compile(r"^redis-(?P<stamp>\d{8}T\d{6}Z)\.rdb$")
# Files that go with a backup: its checksum and its manifest.
SIDECARS = (".sha256", ".json")
EXIT_OK = 0
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

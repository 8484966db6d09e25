"""pgBackRest (Debian's 2.45) for continuous WAL archiving and base backups
to an S3-compatible repository: the configuration file, the environment
its commands need and the options of a restore to a point in time.

Pure functions, no I/O: the caller writes the file and runs pgbackrest.

Secrets never go into the file. pgBackRest reads every option from the
environment too, and these three from there only here (every pgbackrest
command needs them, the archive-push that PostgreSQL's archive_command
runs included, so the PostgreSQL server's environment carries them):

  PGBACKREST_REPO1_CIPHER_PASS      repository passphrase (aes-256-cbc)
  PGBACKREST_REPO1_S3_KEY           S3 access key id
  PGBACKREST_REPO1_S3_KEY_SECRET    S3 secret access key

The repository is always encrypted (repo1-cipher-type=aes-256-cbc): it
lives off the cluster, with a provider. Losing the passphrase loses every
backup in it.

Bad settings raise Refused with a message that starts with the setting's
name, like the options of the command line.
"""
import datetime
import re
import urllib.parse

from .common import Refused

CIPHER_TYPE = "aes-256-cbc"
CIPHER_PASS_ENV = "PGBACKREST_REPO1_CIPHER_PASS"
S3_KEY_ENV = "PGBACKREST_REPO1_S3_KEY"
S3_KEY_SECRET_ENV = "PGBACKREST_REPO1_S3_KEY_SECRET"
SECRET_ENV = (CIPHER_PASS_ENV, S3_KEY_ENV, S3_KEY_SECRET_ENV)
# A passphrase anyone could guess protects nothing: `openssl rand -base64 48`
# gives 64 characters.
CIPHER_PASS_MIN = 32

COMPRESS_TYPES = ("zst", "lz4", "gz", "bz2", "none")
URI_STYLES = ("path", "host")
# A stanza is an INI section name and a path in the repository.
STANZA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
# S3 bucket names (AWS rules, which the S3-compatible servers follow).
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
PG_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _text(setting, value):
    if not isinstance(value, str) or not value:
        raise Refused(f"{setting}: {value!r} must be a non-empty string")
    if _CONTROL_RE.search(value):
        raise Refused(f"{setting}: {value!r} contains a control character (a line break would "
                      "end the setting in the configuration file)")
    return value


def _absolute_path(setting, value):
    _text(setting, value)
    if not value.startswith("/"):
        raise Refused(f"{setting}: {value!r} must be an absolute path")
    if value != "/" and value.endswith("/"):
        raise Refused(f"{setting}: {value!r} must not end with '/'")
    return value


def _int(setting, value, low, high, unit=""):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused(f"{setting}: {value!r} must be a whole number from {low} to {high}{unit}")
    return value


def _flag(setting, value):
    if not isinstance(value, bool):
        raise Refused(f"{setting}: {value!r} must be true or false")
    return "y" if value else "n"


def _choice(setting, value, choices):
    if value not in choices:
        raise Refused(f"{setting}: {value!r} is not one of {', '.join(choices)}")
    return value


def parse_endpoint(endpoint, setting="s3_endpoint"):
    """(host, port or None) of an https:// URL with no path: pgBackRest talks
    to S3 over HTTPS only."""
    _text(setting, endpoint)
    url = urllib.parse.urlsplit(endpoint)
    if url.scheme != "https":
        raise Refused(f"{setting}: {endpoint!r} must be an https:// URL "
                      "(pgBackRest talks to S3 over HTTPS only)")
    try:
        port = url.port
    except ValueError:
        raise Refused(f"{setting}: {endpoint!r} has an invalid port") from None
    if not url.hostname or not HOST_RE.match(url.hostname) or url.username or url.password:
        raise Refused(f"{setting}: {endpoint!r} must name a host (https://host[:port])")
    if url.path not in ("", "/") or url.query or url.fragment:
        raise Refused(f"{setting}: {endpoint!r} must have no path: the bucket and repo_path "
                      "say where the repository is")
    return url.hostname, port


def render_config(*, stanza, pg_path, s3_endpoint, s3_bucket, s3_region="us-east-1",
                  pg_port=5432, pg_socket_path="/var/run/postgresql", pg_user="postgres",
                  repo_path="/pgbackrest", s3_uri_style="path", verify_tls=True, ca_file=None,
                  retention_full_count=None, retention_days=None, compress_type="zst", bundle=True,
                  process_max=1, start_fast=True, log_path=None, lock_path="/tmp/pgbackrest"):
    """The text of pgbackrest.conf for one PostgreSQL cluster (the stanza)
    and one S3 repository (repo1).

    s3_endpoint     https://host[:port] (no path); the port becomes
                    repo1-storage-port
    s3_uri_style    path (https://host/bucket/key, any S3-compatible server)
                    or host (https://bucket.host/key)
    verify_tls      false only for a test server; ca_file: the CA bundle of
                    a private endpoint
    retention       exactly one of retention_full_count (keep that many full
                    backups) and retention_days (keep full backups, and the
                    WAL to restore from them, for that many days; pgBackRest
                    keeps the newest full backup however old)
    bundle          small files of a backup go into bundles (repo1-bundle):
                    one object for many, against the per-request cost and
                    latency of object storage
    log_path        None: no log file, the log goes to the console only
    """
    stanza = _text("stanza", stanza)
    if not STANZA_RE.match(stanza):
        raise Refused(f"stanza: {stanza!r} must be letters, digits, '-' and '_', "
                      "starting with a letter or digit, at most 63 characters")
    host, port = parse_endpoint(s3_endpoint)
    if not BUCKET_RE.match(_text("s3_bucket", s3_bucket)) or ".." in s3_bucket:
        raise Refused(f"s3_bucket: {s3_bucket!r} is not an S3 bucket name "
                      "(3 to 63 lower-case letters, digits, '.' and '-')")
    if not REGION_RE.match(_text("s3_region", s3_region)):
        raise Refused(f"s3_region: {s3_region!r} is not a region name like eu-west-3")
    if not PG_USER_RE.match(_text("pg_user", pg_user)):
        raise Refused(f"pg_user: {pg_user!r} is not a PostgreSQL role name")

    if (retention_full_count is None) == (retention_days is None):
        raise Refused("retention_full_count, retention_days: set exactly one "
                      f"(got {retention_full_count!r} and {retention_days!r})")
    if retention_days is not None:
        retention = [("repo1-retention-full-type", "time"),
                     ("repo1-retention-full", _int("retention_days", retention_days, 1, 9999, " days"))]
    else:
        retention = [("repo1-retention-full-type", "count"),
                     ("repo1-retention-full", _int("retention_full_count", retention_full_count, 1, 9999))]

    repo = [("repo1-type", "s3"),
            ("repo1-path", _absolute_path("repo_path", repo_path)),
            ("repo1-s3-endpoint", host)]
    if port is not None:
        repo.append(("repo1-storage-port", _int("s3_endpoint port", port, 1, 65535)))
    repo += [("repo1-s3-bucket", s3_bucket),
             ("repo1-s3-region", s3_region),
             ("repo1-s3-uri-style", _choice("s3_uri_style", s3_uri_style, URI_STYLES)),
             ("repo1-storage-verify-tls", _flag("verify_tls", verify_tls))]
    if ca_file is not None:
        repo.append(("repo1-storage-ca-file", _absolute_path("ca_file", ca_file)))
    repo += [("repo1-cipher-type", CIPHER_TYPE)] + retention
    repo.append(("repo1-bundle", _flag("bundle", bundle)))

    general = [("archive-async", "n"),
               ("compress-type", _choice("compress_type", compress_type, COMPRESS_TYPES)),
               ("process-max", _int("process_max", process_max, 1, 64)),
               ("start-fast", _flag("start_fast", start_fast)),
               ("lock-path", _absolute_path("lock_path", lock_path)),
               ("log-level-console", "info")]
    if log_path is None:
        general.append(("log-level-file", "off"))
    else:
        general += [("log-path", _absolute_path("log_path", log_path)), ("log-level-file", "detail")]

    cluster = [("pg1-path", _absolute_path("pg_path", pg_path)),
               ("pg1-port", _int("pg_port", pg_port, 1, 65535)),
               ("pg1-socket-path", _absolute_path("pg_socket_path", pg_socket_path)),
               ("pg1-user", pg_user)]

    lines = ["# pgBackRest configuration rendered by skx_backup.pgbackrest.",
             f"# Secrets are not in this file: {', '.join(SECRET_ENV)}",
             "# come from the environment.",
             "[global]"]
    lines += [f"{k}={v}" for k, v in repo + general]
    lines += ["", f"[{stanza}]"]
    lines += [f"{k}={v}" for k, v in cluster]
    return "\n".join(lines) + "\n"


def check_environment(environ):
    """Refuse unless the environment carries the repository's secrets (a
    command without them fails later, with pgBackRest's less clear words)."""
    missing = [name for name in SECRET_ENV if not environ.get(name)]
    if missing:
        raise Refused(f"{', '.join(missing)}: not set; pgBackRest reads the repository's "
                      "secrets from the environment")
    if len(environ[CIPHER_PASS_ENV]) < CIPHER_PASS_MIN:
        raise Refused(f"{CIPHER_PASS_ENV}: at least {CIPHER_PASS_MIN} characters "
                      "(openssl rand -base64 48 makes one)")


def archive_command(config_path, stanza):
    """PostgreSQL's archive_command pushing each WAL segment to the
    repository (%p: the segment's path, which PostgreSQL fills in)."""
    _absolute_path("config_path", config_path)
    if not STANZA_RE.match(_text("stanza", stanza)):
        raise Refused(f"stanza: {stanza!r} must be letters, digits, '-' and '_'")
    if re.search(r"[\s'\"\\$`%;&|<>()*?]", config_path):
        raise Refused(f"config_path: {config_path!r} must not need quoting in a shell command")
    return f"pgbackrest --config={config_path} --stanza={stanza} archive-push %p"


def parse_target(target, setting="target"):
    """The time a restore recovers to: 'latest' (the end of the archive) or
    a date and time with its UTC offset (PostgreSQL would otherwise read it
    in the server's time zone). Returns None for latest, else an aware
    datetime. Nothing, not even an empty string, stands for latest: a
    restore goes where it is told."""
    text = _text(setting, target).strip()
    if text == "latest":
        return None
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise Refused(f"{setting}: {target!r} is neither 'latest' nor a time like "
                      "'2026-12-01 10:42:00+00'") from None
    if when.tzinfo is None:
        raise Refused(f"{setting}: {target!r} has no UTC offset: write it like "
                      "'2026-12-01 10:42:00+00'")
    return when


def restore_options(target, setting="target"):
    """The options of `pgbackrest restore` for a target: to the end of the
    archive, or to a time, after which the server is promoted (it serves
    writes on a new timeline)."""
    when = parse_target(target, setting)
    if when is None:
        return ["--type=default"]
    return ["--type=time", f"--target={when.isoformat(sep=' ')}", "--target-action=promote"]

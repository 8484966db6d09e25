"""pgBackRest's configuration rendered by skx_backup.pgbackrest, without a
server: the file for an S3 repository, the settings it refuses (each
refusal names the setting), the secrets kept out of it, the
archive_command and the restore options for a target time.

pgBackRest itself reads these files in tests/integration/backups/test_pitr.py
(archiving, backup and restores against a real PostgreSQL and S3 server).
"""
import configparser
import datetime

import pytest

from skx_backup import pgbackrest
from skx_backup.common import Refused

BASE = {"stanza": "skx", "pg_path": "/var/lib/postgresql/data",
        "s3_endpoint": "https://s3.eu-west-3.amazonaws.com", "s3_bucket": "skx-backups",
        "s3_region": "eu-west-3", "retention_days": 14}


def render(**overrides):
    return pgbackrest.render_config(**{**BASE, **overrides})


def parsed(text):
    ini = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    ini.optionxform = str
    ini.read_string(text)
    return {name: dict(ini[name]) for name in ini.sections()}


def test_the_file_for_an_s3_repository():
    assert render() == """\
# pgBackRest configuration rendered by skx_backup.pgbackrest.
# Secrets are not in this file: PGBACKREST_REPO1_CIPHER_PASS, PGBACKREST_REPO1_S3_KEY, PGBACKREST_REPO1_S3_KEY_SECRET
# come from the environment.
[global]
repo1-type=s3
repo1-path=/pgbackrest
repo1-s3-endpoint=s3.eu-west-3.amazonaws.com
repo1-s3-bucket=skx-backups
repo1-s3-region=eu-west-3
repo1-s3-uri-style=path
repo1-storage-verify-tls=y
repo1-cipher-type=aes-256-cbc
repo1-retention-full-type=time
repo1-retention-full=14
repo1-bundle=y
archive-async=n
compress-type=zst
process-max=1
start-fast=y
lock-path=/tmp/pgbackrest
log-level-console=info
log-level-file=off

[skx]
pg1-path=/var/lib/postgresql/data
pg1-port=5432
pg1-socket-path=/var/run/postgresql
pg1-user=postgres
"""


def test_every_setting_reaches_its_option():
    conf = parsed(render(stanza="prod-db", pg_path="/data/pg", pg_port=5433, pg_socket_path="/tmp/pg",
                         pg_user="backup_admin", s3_endpoint="https://minio.minio.svc:9000/",
                         s3_bucket="my.backups", s3_region="us-east-1", repo_path="/skx/prod",
                         s3_uri_style="host", verify_tls=False, ca_file="/etc/skx/ca.crt",
                         retention_days=None, retention_full_count=3, compress_type="lz4", bundle=False,
                         process_max=4, start_fast=False, log_path="/var/log/pgbackrest",
                         lock_path="/run/pgbackrest"))
    assert conf == {
        "global": {
            "repo1-type": "s3", "repo1-path": "/skx/prod", "repo1-s3-endpoint": "minio.minio.svc",
            "repo1-storage-port": "9000", "repo1-s3-bucket": "my.backups", "repo1-s3-region": "us-east-1",
            "repo1-s3-uri-style": "host", "repo1-storage-verify-tls": "n",
            "repo1-storage-ca-file": "/etc/skx/ca.crt", "repo1-cipher-type": "aes-256-cbc",
            "repo1-retention-full-type": "count", "repo1-retention-full": "3", "repo1-bundle": "n",
            "archive-async": "n",
            "compress-type": "lz4", "process-max": "4", "start-fast": "n", "lock-path": "/run/pgbackrest",
            "log-level-console": "info", "log-path": "/var/log/pgbackrest", "log-level-file": "detail"},
        "prod-db": {"pg1-path": "/data/pg", "pg1-port": "5433", "pg1-socket-path": "/tmp/pg",
                    "pg1-user": "backup_admin"},
    }


def test_secrets_are_never_in_the_file():
    text = render()
    for option in ("cipher-pass", "s3-key", "s3-token", "secret"):
        assert all(option not in line.split("=")[0] for line in text.splitlines() if "=" in line)
    # No setting takes them: a caller cannot put them in by mistake.
    with pytest.raises(TypeError):
        render(cipher_pass="x" * 40)
    with pytest.raises(TypeError):
        render(s3_key_secret="secret")


@pytest.mark.parametrize("overrides, message", [
    ({"stanza": ""}, "stanza: '' must be a non-empty string"),
    ({"stanza": "my stanza"}, "stanza: 'my stanza' must be letters, digits"),
    ({"stanza": "skx]\n[global"}, "stanza: 'skx]\\n[global' contains a control character"),
    ({"stanza": "-skx"}, "stanza: '-skx' must be letters"),
    ({"pg_path": "data"}, "pg_path: 'data' must be an absolute path"),
    ({"pg_path": "/data/"}, "pg_path: '/data/' must not end with '/'"),
    ({"pg_path": None}, "pg_path: None must be a non-empty string"),
    ({"pg_port": 0}, "pg_port: 0 must be a whole number from 1 to 65535"),
    ({"pg_port": "5432"}, "pg_port: '5432' must be a whole number"),
    ({"pg_port": True}, "pg_port: True must be a whole number"),
    ({"pg_socket_path": "run/pg"}, "pg_socket_path: 'run/pg' must be an absolute path"),
    ({"pg_user": "bad user"}, "pg_user: 'bad user' is not a PostgreSQL role name"),
    ({"s3_endpoint": "http://minio:9000"}, "s3_endpoint: 'http://minio:9000' must be an https:// URL"),
    ({"s3_endpoint": "s3.amazonaws.com"}, "s3_endpoint: 's3.amazonaws.com' must be an https:// URL"),
    ({"s3_endpoint": "https://minio:99999"}, "s3_endpoint: 'https://minio:99999' has an invalid port"),
    ({"s3_endpoint": "https://minio:0"}, "s3_endpoint port: 0 must be a whole number from 1 to 65535"),
    ({"s3_endpoint": "https://minio/bucket"}, "s3_endpoint: 'https://minio/bucket' must have no path"),
    ({"s3_endpoint": "https://user:pw@minio"}, "s3_endpoint: 'https://user:pw@minio' must name a host"),
    ({"s3_endpoint": "https://"}, "s3_endpoint: 'https://' must name a host"),
    ({"s3_endpoint": "https://minio\n"}, "s3_endpoint: 'https://minio\\n' contains a control character"),
    ({"s3_bucket": "Backups"}, "s3_bucket: 'Backups' is not an S3 bucket name"),
    ({"s3_bucket": "ab"}, "s3_bucket: 'ab' is not an S3 bucket name"),
    ({"s3_bucket": "a..b"}, "s3_bucket: 'a..b' is not an S3 bucket name"),
    ({"s3_region": "EU West"}, "s3_region: 'EU West' is not a region name"),
    ({"s3_uri_style": "virtual"}, "s3_uri_style: 'virtual' is not one of path, host"),
    ({"verify_tls": "no"}, "verify_tls: 'no' must be true or false"),
    ({"ca_file": "ca.crt"}, "ca_file: 'ca.crt' must be an absolute path"),
    ({"repo_path": "pgbackrest"}, "repo_path: 'pgbackrest' must be an absolute path"),
    ({"retention_days": None}, "retention_full_count, retention_days: set exactly one (got None and None)"),
    ({"retention_full_count": 2}, "retention_full_count, retention_days: set exactly one (got 2 and 14)"),
    ({"retention_days": 0}, "retention_days: 0 must be a whole number from 1 to 9999 days"),
    ({"retention_days": 7.5}, "retention_days: 7.5 must be a whole number"),
    ({"retention_days": None, "retention_full_count": -1}, "retention_full_count: -1 must be a whole number"),
    ({"compress_type": "xz"}, "compress_type: 'xz' is not one of zst, lz4, gz, bz2, none"),
    ({"process_max": 0}, "process_max: 0 must be a whole number from 1 to 64"),
    ({"start_fast": 1}, "start_fast: 1 must be true or false"),
    ({"bundle": "y"}, "bundle: 'y' must be true or false"),
    ({"log_path": "logs"}, "log_path: 'logs' must be an absolute path"),
    ({"lock_path": ""}, "lock_path: '' must be a non-empty string"),
])
def test_bad_settings_are_refused_naming_the_setting(overrides, message):
    with pytest.raises(Refused) as exc:
        render(**overrides)
    assert str(exc.value).startswith(message)


# ------------------------------------------------------------- environment

GOOD_ENV = {"PGBACKREST_REPO1_CIPHER_PASS": "p" * 64, "PGBACKREST_REPO1_S3_KEY": "AKIA",
            "PGBACKREST_REPO1_S3_KEY_SECRET": "secret"}


def test_an_environment_with_the_secrets_is_accepted():
    pgbackrest.check_environment(GOOD_ENV)


@pytest.mark.parametrize("drop, message", [
    (("PGBACKREST_REPO1_CIPHER_PASS",), "PGBACKREST_REPO1_CIPHER_PASS: not set"),
    (("PGBACKREST_REPO1_S3_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET"),
     "PGBACKREST_REPO1_S3_KEY, PGBACKREST_REPO1_S3_KEY_SECRET: not set"),
])
def test_missing_secrets_are_named(drop, message):
    env = {k: v for k, v in GOOD_ENV.items() if k not in drop}
    with pytest.raises(Refused, match="^" + message):
        pgbackrest.check_environment(env)
    with pytest.raises(Refused, match="^" + message):
        pgbackrest.check_environment({**env, **{k: "" for k in drop}})


def test_a_short_passphrase_is_refused():
    with pytest.raises(Refused, match=r"^PGBACKREST_REPO1_CIPHER_PASS: at least 32 characters"):
        pgbackrest.check_environment({**GOOD_ENV, "PGBACKREST_REPO1_CIPHER_PASS": "password"})


# ---------------------------------------------------------- archive_command

def test_the_archive_command():
    assert pgbackrest.archive_command("/etc/pgbackrest/pgbackrest.conf", "skx") == (
        "pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=skx archive-push %p")


@pytest.mark.parametrize("path, stanza, message", [
    ("pgbackrest.conf", "skx", "config_path: 'pgbackrest.conf' must be an absolute path"),
    ("/etc/my conf", "skx", "config_path: '/etc/my conf' must not need quoting"),
    ("/etc/a;rm -rf", "skx", "config_path: '/etc/a;rm -rf' must not need quoting"),
    ("/etc/pgbackrest.conf", "a b", "stanza: 'a b' must be letters"),
])
def test_a_bad_archive_command_is_refused(path, stanza, message):
    with pytest.raises(Refused) as exc:
        pgbackrest.archive_command(path, stanza)
    assert str(exc.value).startswith(message)


# ----------------------------------------------------------------- targets

def test_latest_restores_to_the_end_of_the_archive():
    assert pgbackrest.restore_options("latest") == ["--type=default"]
    assert pgbackrest.restore_options(" latest ") == ["--type=default"]


@pytest.mark.parametrize("target, option", [
    ("2026-12-01 10:42:00+00", "--target=2026-12-01 10:42:00+00:00"),
    ("2026-12-01T10:42:00.250000+01:00", "--target=2026-12-01 10:42:00.250000+01:00"),
    ("2026-12-01 10:42:00Z", "--target=2026-12-01 10:42:00+00:00"),
])
def test_a_time_restores_to_it_and_promotes(target, option):
    assert pgbackrest.restore_options(target) == ["--type=time", option, "--target-action=promote"]
    assert pgbackrest.parse_target(target).tzinfo is not None


def test_a_parsed_target_is_the_same_instant():
    assert pgbackrest.parse_target("2026-12-01 11:42:00+01") == datetime.datetime(
        2026, 12, 1, 10, 42, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("target, message", [
    ("2026-12-01 10:42:00", "has no UTC offset"),
    ("2026-12-01", "has no UTC offset"),
    ("yesterday", "is neither 'latest' nor a time like '2026-12-01 10:42:00+00'"),
    ("2026-13-01 10:42:00+00", "is neither 'latest' nor a time"),
    ("", "must be a non-empty string"),
    (None, "must be a non-empty string"),
])
def test_other_targets_are_refused(target, message):
    with pytest.raises(Refused) as exc:
        pgbackrest.restore_options(target, setting="skx_restore_cluster_to")
    assert str(exc.value).startswith(f"skx_restore_cluster_to: {target!r} {message}")

"""Point-in-time recovery with pgBackRest against a real PostgreSQL 15 and
an S3-compatible server (moto) over HTTPS on loopback, configured by
skx_backup.pgbackrest as the Kubernetes side will be.

One scenario for the module: a primary archives its WAL (archive_command
archive-push), a full backup, rows committed a second or so apart, a target
time taken from the database's clock between two commits, a WAL switch
archived, then the primary is stopped and its data directory removed.
Each test restores from the bucket alone into a new, empty data directory:
to the target time (exactly the rows committed before it), to the end of
the archive (every row), to a time before the backup or after the end of
the archive (a clear failure each). The repository's objects are encrypted.

Figures (backup and restore seconds, sizes) are printed: run with -s.
"""
import datetime
import ipaddress
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import types
import uuid

import boto3
import psycopg
import pytest

from lib.servers import PostgresServer, ServerExited, _as_postgres_user, _wait_port, free_port
from skx_backup import pgbackrest

VENV_BIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), ".venv", "bin")
TLS_S3_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls_s3_server.py")
STANZA = "skx"
DB = "pitr"
KEY_ID, KEY_SECRET = "AKIAEXAMPLEPITR", "pitr-secret-key-for-tests"
# What pgBackRest's aes-256-cbc writes first (OpenSSL's salted format).
SALTED = b"Salted__"
# Filler rows before the backup: a database of some 37 MB, so that the
# figures mean something.
FILLER_ROWS = 250_000
# Transactions after the backup; the target time falls after the third.
COMMITS, TARGET_AFTER, ROWS_PER_COMMIT = 5, 3, 4
WAIT_SECONDS = 120


def pgbackrest_binary():
    binary = shutil.which("pgbackrest")
    if not binary:
        raise RuntimeError("pgbackrest not found: apt-get install pgbackrest (install.sh does)")
    return binary


def postgres_owned_dir(prefix):
    """A folder the postgres user owns: pgBackRest and the archive_command
    run as that user and read and write their files there."""
    path = tempfile.mkdtemp(prefix=prefix)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


# ------------------------------------------------------------ S3 over TLS

def write_certificates(directory):
    """A CA and a certificate for 127.0.0.1 it signs: pgBackRest verifies
    the server against the CA file, as it would a private endpoint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "skx pitr test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       key_cert_sign=True, crl_sign=True, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            # The address twice: as an IP address for Python's ssl (boto3),
            # as a name for pgBackRest 2.45, which matches the host it was
            # given against the certificate's DNS names only.
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("127.0.0.1")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {name: os.path.join(directory, name) for name in ("ca.crt", "server.crt", "server.key")}
    with open(paths["ca.crt"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["server.crt"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths["server.key"], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def tls_s3_server():
    """moto's S3 server on 127.0.0.1 over HTTPS with a certificate of our
    own CA (pgBackRest speaks HTTPS only; tls_s3_server.py says why not
    moto_server itself)."""
    directory = postgres_owned_dir("skx-pitr-tls-")
    os.chmod(directory, 0o755)
    paths = write_certificates(directory)
    os.chmod(paths["ca.crt"], 0o644)
    port = free_port()
    log = open(os.path.join(directory, "moto.log"), "w")
    proc = subprocess.Popen([os.path.join(VENV_BIN, "python"), TLS_S3_SERVER, "127.0.0.1", str(port),
                             paths["server.crt"], paths["server.key"]],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, timeout=60, proc=proc)
        yield types.SimpleNamespace(endpoint=f"https://127.0.0.1:{port}", ca_file=paths["ca.crt"])
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def s3_client(s3):
    return boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1", verify=s3.ca_file,
                        aws_access_key_id=KEY_ID, aws_secret_access_key=KEY_SECRET)


# ---------------------------------------------------------------- helpers

def run_pgbackrest(ctx, *args, timeout=300, env=None):
    """One pgbackrest command as the postgres user, with the repository's
    secrets in its environment only."""
    return subprocess.run([pgbackrest_binary(), f"--config={ctx.config}", f"--stanza={STANZA}", *args],
                          env=env or ctx.env, capture_output=True, text=True, errors="replace", timeout=timeout,
                          cwd=ctx.workdir, **_as_postgres_user())


def ok(proc):
    assert proc.returncode == 0, f"{proc.args}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "invalid option" not in proc.stdout + proc.stderr
    return proc


def info(ctx):
    [stanza] = json.loads(ok(run_pgbackrest(ctx, "--output=json", "info", timeout=60)).stdout)
    return stanza


def query(server, statement, dbname=DB):
    with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else None


def events_state(server):
    """(ids, md5 over every row in id order) of the events table."""
    [(ids, digest)] = query(server, "SELECT coalesce(array_agg(id ORDER BY id), '{}'), "
                                    "md5(coalesce(string_agg(id || ':' || note, ',' ORDER BY id), '')) FROM events")
    return list(ids), digest


def filler_state(server):
    return query(server, "SELECT count(*), md5(string_agg(g || ':' || v, ',' ORDER BY g)) FROM filler")[0]


def bucket_objects(ctx):
    client = s3_client(ctx.s3)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=ctx.bucket)
    return [(o["Key"], o["Size"]) for page in pages for o in page.get("Contents", [])]


def wait_until_archived(ctx, segment):
    """Until pgBackRest lists the segment in the repository (bounded in
    count and time)."""
    deadline = time.monotonic() + WAIT_SECONDS
    for _ in range(WAIT_SECONDS):
        archive = info(ctx)["archive"]
        newest = max((a.get("max") or "" for a in archive), default="")
        if newest >= segment:
            return newest
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    pytest.fail(f"WAL segment {segment} not archived after {WAIT_SECONDS}s (newest: {newest!r})")


def wait_until_promoted(server):
    """Until the restored server has finished recovery and accepts writes.
    Returns None, or the server's exit status and log when it stopped."""
    deadline = time.monotonic() + WAIT_SECONDS
    for _ in range(WAIT_SECONDS * 2):
        if server.proc.poll() is not None:
            return server.proc.returncode
        try:
            if query(server, "SELECT pg_is_in_recovery()", "postgres") == [(False,)]:
                return None
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    pytest.fail(f"the restored server is still in recovery after {WAIT_SECONDS}s:\n{server.log_tail()}")


# --------------------------------------------------------------- scenario

@pytest.fixture(scope="module")
def workdir():
    """pgBackRest's configuration, log and lock folders (the postgres
    user's)."""
    path = postgres_owned_dir("skx-pitr-")
    os.chmod(path, 0o755)
    for sub in ("log", "lock"):
        os.mkdir(os.path.join(path, sub))
        if os.geteuid() == 0:
            shutil.chown(os.path.join(path, sub), "postgres", "postgres")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def archived(tls_s3_server, workdir):
    """The scenario up to the loss of the primary; what the restores check
    against."""
    pgbackrest_binary()
    s3 = tls_s3_server
    bucket = f"skx-pitr-{uuid.uuid4().hex[:8]}"
    s3_client(s3).create_bucket(Bucket=bucket)
    secrets = {pgbackrest.CIPHER_PASS_ENV: f"pitr-{uuid.uuid4().hex}{uuid.uuid4().hex}",
               pgbackrest.S3_KEY_ENV: KEY_ID, pgbackrest.S3_KEY_SECRET_ENV: KEY_SECRET}
    pgbackrest.check_environment(secrets)
    primary = PostgresServer(environ=secrets)
    ctx = types.SimpleNamespace(s3=s3, bucket=bucket, workdir=workdir, secrets=secrets,
                                config=os.path.join(workdir, "pgbackrest.conf"))
    ctx.env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": workdir, "PGPASSWORD": primary.password,
               **secrets}
    try:
        datadir = primary.prepare()
        with open(ctx.config, "w", encoding="utf-8") as f:
            f.write(pgbackrest.render_config(
                stanza=STANZA, pg_path=datadir, pg_port=primary.port, pg_socket_path=primary.socket_dir,
                pg_user=primary.superuser, s3_endpoint=s3.endpoint, s3_bucket=bucket, s3_region="us-east-1",
                repo_path="/pitr-test", s3_uri_style="path", verify_tls=True, ca_file=s3.ca_file,
                retention_full_count=2, compress_type="zst", log_path=os.path.join(workdir, "log"),
                lock_path=os.path.join(workdir, "lock")))
        os.chmod(ctx.config, 0o644)
        primary.settings = {"archive_mode": "on", "archive_timeout": "5s",
                            "archive_command": pgbackrest.archive_command(ctx.config, STANZA),
                            "track_commit_timestamp": "on", "wal_level": "replica", "TimeZone": "UTC"}
        primary.start()

        with psycopg.connect(primary.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DB}")
        with psycopg.connect(primary.dsn(DB), autocommit=True) as conn:
            conn.execute("CREATE TABLE filler (g int PRIMARY KEY, v text NOT NULL)")
            conn.execute("INSERT INTO filler SELECT g, md5(g::text) || md5((g * 7)::text) "
                         "FROM generate_series(1, %s) g", (FILLER_ROWS,))
            conn.execute("CREATE TABLE events (id int PRIMARY KEY, note text NOT NULL)")
            # A time before the backup, from the database's clock.
            ctx.before_backup = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        time.sleep(1.1)

        ok(run_pgbackrest(ctx, "stanza-create", timeout=120))
        ok(run_pgbackrest(ctx, "check", timeout=180))
        started = time.monotonic()
        ok(run_pgbackrest(ctx, "--type=full", "backup", timeout=600))
        ctx.backup_seconds = time.monotonic() - started
        [ctx.backup] = info(ctx)["backup"]
        assert ctx.backup["type"] == "full"

        # Rows in transactions a second or so apart; the target between two.
        with psycopg.connect(primary.dsn(DB)) as conn:
            next_id = 1
            for commit in range(1, COMMITS + 1):
                time.sleep(1.1)
                with conn.transaction():
                    for _ in range(ROWS_PER_COMMIT):
                        conn.execute("INSERT INTO events VALUES (%s, %s)",
                                     (next_id, f"commit {commit} row {next_id} {uuid.uuid4().hex}"))
                        next_id += 1
                if commit == TARGET_AFTER:
                    time.sleep(0.5)
                    ctx.target = conn.execute("SELECT clock_timestamp()").fetchone()[0]
                    conn.commit()
            rows = conn.execute("SELECT id, pg_xact_commit_timestamp(xmin) FROM events ORDER BY id").fetchall()
        ctx.committed = {i: at for i, at in rows}
        ctx.before_target = [i for i, at in rows if at < ctx.target]
        assert ctx.before_target == list(range(1, TARGET_AFTER * ROWS_PER_COMMIT + 1))
        assert min(at for at in ctx.committed.values() if at > ctx.target) - ctx.target > datetime.timedelta(
            seconds=0.5)
        ctx.all_events = events_state(primary)
        [(ctx.events_before_target,)] = query(
            primary, "SELECT md5(string_agg(id || ':' || note, ',' ORDER BY id)) FROM events "
                     f"WHERE id <= {len(ctx.before_target)}")
        ctx.filler = filler_state(primary)
        [(ctx.db_size, ctx.db_size_text)] = query(
            primary, "SELECT pg_database_size(current_database()), "
                     "pg_size_pretty(pg_database_size(current_database()))")

        [(segment,)] = query(primary, "SELECT pg_walfile_name(pg_switch_wal())")
        ctx.last_segment = wait_until_archived(ctx, segment)
    finally:
        # The disaster: the primary and its data directory are gone; only
        # the bucket is left.
        primary.stop()
    objects = bucket_objects(ctx)
    print(f"\npitr: database {ctx.db_size_text} ({ctx.db_size} bytes), full backup {ctx.backup_seconds:.1f} s, "
          f"last archived WAL {ctx.last_segment}, repository {sum(size for _, size in objects)} bytes "
          f"in {len(objects)} objects")
    return ctx


@pytest.fixture
def restore(archived):
    """Restore from the repository into a new, empty data directory and
    start PostgreSQL there (without archiving: the restored servers must not
    add timelines to the repository the next test restores from)."""
    servers = []

    def run(*options):
        server = PostgresServer(environ=archived.secrets,
                                settings={"archive_mode": "off", "track_commit_timestamp": "on",
                                          "TimeZone": "UTC"})
        servers.append(server)
        datadir = server.prepare()
        assert os.listdir(datadir) == []
        started = time.monotonic()
        proc = run_pgbackrest(archived, f"--pg1-path={datadir}", "restore", *options, timeout=600)
        result = types.SimpleNamespace(server=server, restore=proc, exit_status=None, error=None)
        if proc.returncode != 0:
            return result
        try:
            server.start(ready_timeout=WAIT_SECONDS)
            result.exit_status = wait_until_promoted(server)
        except ServerExited as exc:
            result.error = str(exc)
            result.exit_status = server.proc.returncode
        result.seconds = time.monotonic() - started
        result.log = server.log_tail(40)
        return result

    yield run
    for server in servers:
        server.stop()


def test_restore_to_a_time_between_two_commits(archived, restore):
    options = pgbackrest.restore_options(archived.target.isoformat(sep=" "))
    assert options[0] == "--type=time"
    result = restore(*options)
    ok(result.restore)
    assert result.exit_status is None, result.log
    assert "recovery stopping before commit of transaction" in result.log
    server = result.server
    ids, digest = events_state(server)
    assert ids == archived.before_target
    assert digest == archived.events_before_target
    # The commit timestamps came through too: all before the target.
    rows = query(server, "SELECT id, pg_xact_commit_timestamp(xmin) FROM events ORDER BY id")
    assert rows == [(i, archived.committed[i]) for i in archived.before_target]
    assert all(at < archived.target for _, at in rows)
    assert filler_state(server) == archived.filler
    # Promoted: it takes writes, on a new timeline.
    query(server, "INSERT INTO events VALUES (1000, 'after the restore')")
    [(timeline,)] = query(server, "SELECT timeline_id FROM pg_control_checkpoint()")
    print(f"\npitr: restore to {archived.target} ({len(ids)} of {len(archived.committed)} rows) "
          f"{result.seconds:.1f} s, timeline {timeline}")


def test_restore_to_latest_has_every_row(archived, restore):
    result = restore(*pgbackrest.restore_options("latest"))
    ok(result.restore)
    assert result.exit_status is None, result.log
    assert events_state(result.server) == archived.all_events
    assert events_state(result.server)[0] == sorted(archived.committed)
    assert filler_state(result.server) == archived.filler
    print(f"\npitr: restore to latest ({len(archived.committed)} rows) {result.seconds:.1f} s")


def test_a_target_before_the_backup_is_refused(archived, restore):
    """No backup ended before that time: pgBackRest refuses and writes
    nothing (it would otherwise take the newest backup, later than the
    target)."""
    target = archived.before_backup.isoformat(sep=" ")
    result = restore(*pgbackrest.restore_options(target))
    assert result.restore.returncode == 75, (result.restore.stdout, result.restore.stderr)
    assert f"ERROR: [075]: unable to find backup set with stop time less than '{target}'" in result.restore.stderr
    assert os.listdir(result.server.datadir) == []
    assert result.server.proc is None


def test_a_target_after_the_archive_is_refused(archived, restore):
    """A time the archive does not reach: the files are restored, then
    PostgreSQL replays every archived segment, does not reach the target
    and stops rather than open a database short of it."""
    later = archived.committed[max(archived.committed)] + datetime.timedelta(hours=1)
    result = restore(*pgbackrest.restore_options(later.isoformat(sep=" ")))
    ok(result.restore)
    assert result.exit_status not in (None, 0), result.log
    assert "FATAL:  recovery ended before configured recovery target was reached" in result.log


def test_the_repository_is_encrypted(archived):
    """Every object in the bucket is ciphertext (OpenSSL's salted format,
    which pgBackRest's aes-256-cbc writes), with neither the passphrase nor
    the data in clear; the passphrase is in no file; a wrong passphrase
    reads nothing."""
    client = s3_client(archived.s3)
    objects = bucket_objects(archived)
    keys = [key for key, _ in objects]
    prefix = "pitr-test/"
    assert f"{prefix}backup/{STANZA}/backup.info" in keys and f"{prefix}archive/{STANZA}/archive.info" in keys
    segments = [k for k in keys if k.startswith(f"{prefix}archive/{STANZA}/15-1/0000000100000000/")]
    assert f"{archived.last_segment}" in " ".join(segments)
    passphrase = archived.secrets[pgbackrest.CIPHER_PASS_ENV].encode()
    clear = [passphrase, KEY_SECRET.encode(), b"commit 1 row 1 ", b"PostgreSQL", b"pg_control"]
    for key in keys:
        body = client.get_object(Bucket=archived.bucket, Key=key)["Body"].read()
        assert body.startswith(SALTED), key
        assert not any(text in body for text in clear), key
    # What a WAL segment starts with in clear (XLOG_PAGE_MAGIC of 15, then
    # the first page's info): not what the bucket holds.
    wal = client.get_object(Bucket=archived.bucket, Key=segments[-1])["Body"].read()
    assert not wal.startswith(b"\x10\xd1") and len(wal) < 16 * 1024 * 1024
    assert info(archived)["cipher"] == "aes-256-cbc"
    with open(archived.config, encoding="utf-8") as f:
        config = f.read()
    assert "repo1-cipher-type=aes-256-cbc" in config
    assert passphrase.decode() not in config and KEY_SECRET not in config and "cipher-pass" not in config

    wrong = {**archived.env, pgbackrest.CIPHER_PASS_ENV: "wrong-" + "x" * 40}
    # (Its message quotes the garbage it decrypted: JSON with control characters.)
    [stanza] = json.loads(run_pgbackrest(archived, "--output=json", "info", env=wrong, timeout=60).stdout,
                          strict=False)
    assert stanza["status"]["code"] != 0 and stanza["backup"] == [] and stanza["archive"] == [], stanza
    message = "".join(c for c in stanza["repo"][0]["status"]["message"] if c.isprintable())
    print(f"\npitr: {len(keys)} objects in the bucket ({sum(size for _, size in objects)} bytes), every one "
          f"encrypted; {len(segments)} WAL segments archived; a wrong passphrase reads nothing: {message[:160]}")

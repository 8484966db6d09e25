"""The command line: options with their defaults from the environment,
the wait for the server, the command, its exit status, its metrics and its
result (JSON in the result file, a last human-readable log line)."""
import argparse
import json
import os
import socket
import subprocess
import time

from . import __doc__ as PACKAGE_DOC
from .common import DUMP_RE, EXIT_FAILED, EXIT_OK, EXIT_REFUSED, Failed, Refused, check_db_name, log
from .files import pg_dir, prune
from .metrics import push_metrics
from .postgres import pg_dump, plan_restore, restore, verify_restore
from .redis import redis_rdb
from .snapshots import snapshots

# The most a container's termination message keeps (Kubernetes truncates
# /dev/termination-log there): the result file never holds more.
RESULT_LIMIT = 4096


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def parser():
    p = argparse.ArgumentParser(prog="skx_backup", description=PACKAGE_DOC.split("\n\n")[0])
    p.add_argument("--result-file", default=os.environ.get("SKX_RESULT_FILE", ""),
                   help="file that receives the result as JSON (default: $SKX_RESULT_FILE; none when empty)")
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


def run(args):
    """Run the command of args; return its result (a dict, small)."""
    wait = env_int("SKX_CONNECT_TIMEOUT", 60)
    if args.command == "redis-rdb":
        wait_for_server(args.redis_host, args.redis_port, wait)
    elif args.command in ("pg-dump", "verify-restore", "restore") \
            and not os.environ.get("PGHOST", "127.0.0.1").startswith("/"):
        wait_for_server(os.environ.get("PGHOST", "127.0.0.1"), env_int("PGPORT", 5432), wait)
    if args.command == "pg-dump":
        return pg_dump(args)
    if args.command == "redis-rdb":
        return redis_rdb(args)
    if args.command == "verify-restore":
        for name in args.database:
            check_db_name(name)
        return verify_restore(args)
    if args.command == "snapshots":
        return snapshots(args)
    if args.command == "plan-restore":
        return plan_restore(args)
    if args.command == "restore":
        return restore(args)
    return {"removed": [n for db in args.database
                        for n in prune(pg_dir(args.backup_dir, check_db_name(db)),
                                       DUMP_RE, args.retention_days)]}


def encode_result(result, limit=RESULT_LIMIT):
    """The result as JSON (ASCII) of at most `limit` bytes: a message too
    long for it is cut at its end (the log keeps it whole)."""
    text = json.dumps(result)
    msg = result.get("msg")
    if len(text) <= limit:
        return text
    if not isinstance(msg, str):
        # A result too large without a message to cut (a success listing
        # much): its scalar fields, and that the rest is only in the log.
        small = {k: v for k, v in result.items() if isinstance(v, (bool, int, float, str)) and len(str(v)) < 256}
        return json.dumps({**small, "truncated": True})[:limit]
    # The longest beginning of the message that fits.
    low, high = 0, len(msg)
    while low < high:
        middle = (low + high + 1) // 2
        if len(json.dumps({**result, "msg": msg[:middle] + "..."})) <= limit:
            low = middle
        else:
            high = middle - 1
    return json.dumps({**result, "msg": msg[:low] + "..."})


def write_result(path, result):
    """Write the result file (for a Job: its termination message, which the
    playbook reads from the pod's status)."""
    if not path:
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(encode_result(result))
    except OSError as exc:
        log(f"result: cannot write {path}: {exc}")


def summary(command, result):
    """The last log line of a successful run."""
    details = ", ".join(f"{key} {value}" for key, value in result.items()
                        if key != "ok" and isinstance(value, (str, int, float)) and not isinstance(value, bool))
    return f"OK: {command}" + (f" ({details})" if details else "")


def main(argv=None):
    args = parser().parse_args(argv)
    started = time.time()
    kind = {"pg-dump": "pg_dump", "redis-rdb": "redis_rdb"}.get(args.command)
    database = getattr(args, "database", None) if args.command != "redis-rdb" else "redis"
    try:
        result = {"ok": True, **run(args)}
        status, last_line = EXIT_OK, summary(args.command, result)
    except Refused as exc:
        result = {"ok": False, "refused": True, "msg": str(exc)}
        status, last_line = EXIT_REFUSED, f"REFUSED: {exc}"
    except (Failed, OSError, subprocess.SubprocessError) as exc:
        result = {"ok": False, "refused": False, "msg": str(exc)}
        status, last_line = EXIT_FAILED, f"FAILED: {exc}"
    if kind:
        push_metrics(args, database, kind, ok=result["ok"], started=started, size=result.get("size"))
    write_result(args.result_file, result)
    log(last_line)
    return status

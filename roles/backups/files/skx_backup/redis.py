"""Redis: a fresh RDB copied over the network with redis-cli, checked."""
import os
import shutil
import subprocess
import time

from .common import RDB_RE, Failed, log, read_secret_file, utc_stamp
from .files import prune, write_checksum
from .s3 import s3_export


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

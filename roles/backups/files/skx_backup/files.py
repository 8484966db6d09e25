"""Files of the backup volume: checksums, the dumps of a database, the
resolution of the backup to restore, the retention."""
import hashlib
import os
import time

from .common import DUMP_RE, SIDECARS, Refused, check_db_name, log


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

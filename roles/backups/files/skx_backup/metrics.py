"""The outcome of a job, pushed to the Pushgateway."""
import time
import urllib.parse
import urllib.request

from .common import log

METRIC_JOB = "skx-backup"


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

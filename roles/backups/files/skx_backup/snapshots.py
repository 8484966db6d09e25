"""VolumeSnapshots of PVCs through the CSI snapshot API of the cluster,
with their retention (the only part that calls the Kubernetes API)."""
import datetime
import json
import os
import ssl
import time
import urllib.error
import urllib.request

from .common import Failed, log, utc_stamp
from .metrics import push_metrics

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

"""The app namespace's quota admits its HPAs at their maximum, on the testbed.

Every HPA of skx-app is held at its maximum at once (minReplicas raised to
maxReplicas, so the real HPA controller scales every Deployment out). The
ResourceQuota admission must refuse none of those pods: no FailedCreate
event mentioning the quota, every Deployment at its maximum.

Then every Deployment is restarted there. The quota counts one surge pod per
Deployment, but a pod being terminated keeps its share until it is gone, so
a rollout at the maximum may be slowed by refusals (the ReplicaSet retries):
the test requires that it completes, and prints how many refusals it saw.
The HPAs get their minimum back afterwards.
"""
import json
import time

from e2e_support import kubectl, wait

NAMESPACE = "skx-app"


def get(kind, name=None):
    args = ["-n", NAMESPACE, "get", kind] + ([name] if name else []) + ["-o", "json"]
    return json.loads(kubectl(*args).stdout)


def quota_refusals(since):
    events = get("events")["items"]
    return [f"{e['involvedObject']['name']}: {e['message']}" for e in events
            if "quota" in e.get("message", "").lower() and e.get("reason") == "FailedCreate"
            and (e.get("lastTimestamp") or e.get("eventTime") or "") >= since]


def test_every_app_hpa_at_its_maximum_fits_the_quota_and_a_rollout_there_completes():
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    hpas = {h["metadata"]["name"]: h["spec"] for h in get("hpa")["items"]}
    assert hpas, "no HPA in skx-app"
    quota = get("resourcequota")["items"]
    assert quota, "skx-app has no ResourceQuota"
    try:
        for name, spec in hpas.items():
            kubectl("-n", NAMESPACE, "patch", "hpa", name, "--type=merge",
                    "-p", json.dumps({"spec": {"minReplicas": spec["maxReplicas"]}}))
        started = time.monotonic()

        def at_max():
            return all(get("deployment", spec["scaleTargetRef"]["name"])["status"].get("readyReplicas", 0)
                       >= spec["maxReplicas"] for spec in hpas.values())
        wait(at_max, 600, interval=5, what="every Deployment of skx-app at its HPA maximum")
        print(f"skx-app at its maximum ({ {n: s['maxReplicas'] for n, s in hpas.items()} }) "
              f"after {time.monotonic() - started:.0f} s")
        assert quota_refusals(since) == [], "the quota refused pods of the HPAs at their maximum"
        rollout_since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for spec in hpas.values():
            kubectl("-n", NAMESPACE, "rollout", "restart", "deployment", spec["scaleTargetRef"]["name"])
        for spec in hpas.values():
            kubectl("-n", NAMESPACE, "rollout", "status", "deployment", spec["scaleTargetRef"]["name"],
                    "--timeout=600s", timeout=660)
        used = {q["metadata"]["name"]: q["status"].get("used", {}) for q in get("resourcequota")["items"]}
        print(f"quota used at the maximum after the rollout: {used}; "
              f"pods refused then retried during the rollout: {len(quota_refusals(rollout_since))}")
    finally:
        for name, spec in hpas.items():
            kubectl("-n", NAMESPACE, "patch", "hpa", name, "--type=merge",
                    "-p", json.dumps({"spec": {"minReplicas": spec["minReplicas"]}}))

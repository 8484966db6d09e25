"""The rendered Alertmanager configuration, run by a real Alertmanager
(Debian's 0.25, as platform_images.alertmanager): alerts reach a
Slack-compatible webhook sink (URL read from the Secret file), an SMTP sink
(team and tenant recipients) and the dead man's switch (bearer token read
from its file), resolve, and a tenant's critical alert inhibits its warnings.
Only the timers are shortened and the addresses pointed at the sinks."""
import datetime
import os
import socket
import subprocess
import time

import pytest
import requests

from lib.monitoring_support import SMTPSink as _SMTP, WebhookSink as _Webhooks, configmap_data, start_sinks, wait_ready

SECRET_DIR = "/var/run/secrets/superkubernetex/alertmanager-receivers"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def alertmanager(rendered, tools, tmp_path_factory):
    binary = tools["alertmanager"]
    tmp = tmp_path_factory.mktemp("alertmanager")
    hooks, smtp = start_sinks("127.0.0.1", 0, 0)
    hook_url = f"http://127.0.0.1:{hooks.server_address[1]}"
    secrets = tmp / "secrets"
    secrets.mkdir()
    (secrets / "slack_webhook_url").write_text(f"{hook_url}/slack")
    (secrets / "smtp_password").write_text("unused-by-the-sink")
    (secrets / "deadmansswitch_token").write_text("dms-token-from-file")
    (secrets / "deadmansswitch_url").write_text(f"{hook_url}/deadman")
    config = configmap_data(rendered, "monitoring", "alertmanager-config.yaml", "alertmanager.yml")
    for old, new in ((SECRET_DIR, str(secrets)),
                     ("smtp.superkubernetex.test:587", f"127.0.0.1:{smtp.server_address[1]}"),
                     ("smtp_require_tls: true", "smtp_require_tls: false"),
                     ("group_wait: 30s", "group_wait: 1s"),
                     ("group_interval: 5m", "group_interval: 2s"),
                     ("group_interval: 1m", "group_interval: 2s")):
        assert old in config, old
        config = config.replace(old, new)
    (tmp / "alertmanager.yml").write_text(config)
    port = _free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'alertmanager.yml'}", f"--storage.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "log", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, tmp / "log", "Alertmanager")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        hooks.shutdown()
        smtp.shutdown()


def _post(url, labels, summary, ends=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    alert = {"labels": labels,
             "annotations": {"summary": summary, "runbook_url": f"docs/runbooks/{labels['alertname']}.md"},
             "startsAt": (now - datetime.timedelta(minutes=1)).isoformat()}
    if ends is not None:
        alert["endsAt"] = ends.isoformat()
    resp = requests.post(f"{url}/api/v2/alerts", json=[alert], timeout=10)
    assert resp.status_code == 200, resp.text


def _wait(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    return None


def test_a_tenant_outage_reaches_slack_and_email_then_resolves(alertmanager):
    labels = {"alertname": "KubeDeploymentUnavailable", "severity": "critical",
              "instance": "instance2", "namespace": "skx-instance2", "deployment": "instance"}
    summary = "Deployment skx-instance2/instance has no available replica."
    _post(alertmanager, labels, summary)

    slack = _wait(lambda: [m for m in _Webhooks.received if m["path"] == "/slack"
                           and "KubeDeploymentUnavailable" in m["json"]["attachments"][0]["title"]])
    assert slack, f"nothing reached the Slack sink: {_Webhooks.received}"
    attachment = slack[0]["json"]["attachments"][0]
    assert slack[0]["json"]["channel"] == "#alerts"
    assert attachment["title"].startswith("[superkubernetex.com] FIRING:1 KubeDeploymentUnavailable instance2")
    assert summary in attachment["text"]

    mail = _wait(lambda: [m for m in _SMTP.mails if "KubeDeploymentUnavailable" in m["data"]])
    assert mail, "nothing reached the SMTP sink"
    assert sorted(mail[0]["rcpt"]) == ["oncall@superkubernetex.test", "tenant2@superkubernetex.test"]
    assert "Subject: [superkubernetex.com] FIRING critical: KubeDeploymentUnavailable instance2" in mail[0]["data"]

    _post(alertmanager, labels, summary, ends=datetime.datetime.now(datetime.timezone.utc))
    resolved = _wait(lambda: [m for m in _Webhooks.received if m["path"] == "/slack"
                              and m["json"]["attachments"][0]["title"].startswith(
                                  "[superkubernetex.com] RESOLVED KubeDeploymentUnavailable")])
    assert resolved, "no resolved notification on Slack"
    assert _wait(lambda: [m for m in _SMTP.mails if "RESOLVED" in m["data"]
                          and "KubeDeploymentUnavailable" in m["data"]]), "no resolved e-mail"


def test_a_tenant_critical_inhibits_its_warnings_only(alertmanager):
    _post(alertmanager, {"alertname": "BackupFailed", "severity": "critical", "instance": "instance3",
                         "database": "instance3_db", "kind": "pg_dump"}, "The last pg_dump backup of instance3_db failed.")
    for tenant in ("instance3", "instance1"):
        _post(alertmanager, {"alertname": "HTTPLatencyP95High", "severity": "warning", "instance": tenant,
                             "service": "instance"}, f"p95 response time of instance for {tenant} is above 500ms.")

    def states():
        alerts = requests.get(f"{alertmanager}/api/v2/alerts", timeout=10).json()
        got = {a["labels"]["instance"]: a["status"] for a in alerts
               if a["labels"]["alertname"] == "HTTPLatencyP95High"}
        return got if len(got) == 2 and got["instance3"]["inhibitedBy"] else None

    got = _wait(states)
    assert got, "instance3's warning was not inhibited by its critical alert"
    assert got["instance3"]["state"] == "suppressed"
    assert got["instance1"]["state"] == "active" and not got["instance1"]["inhibitedBy"]
    # The uninhibited warning goes to the warning channel.
    assert _wait(lambda: [m for m in _Webhooks.received if m["path"] == "/slack"
                          and m["json"]["channel"] == "#alerts-warning"
                          and "instance1" in m["json"]["attachments"][0]["title"]])


def test_the_watchdog_pings_the_dead_mans_switch_with_the_token_from_its_file(alertmanager):
    _post(alertmanager, {"alertname": "Watchdog", "severity": "none"},
          "The alerting pipeline is working (this alert always fires).")
    pings = _wait(lambda: [m for m in _Webhooks.received if m["path"] == "/deadman"])
    assert pings, "the dead man's switch received nothing"
    assert pings[0]["auth"] == "Bearer dms-token-from-file"
    assert pings[0]["json"]["commonLabels"]["alertname"] == "Watchdog"
    assert not [m for m in _Webhooks.received if m["path"] == "/slack"
                and "Watchdog" in m["json"]["attachments"][0]["title"]], "the Watchdog must not page"

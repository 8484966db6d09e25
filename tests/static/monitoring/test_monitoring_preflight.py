"""Bad settings stop the run in the preflight, with a message naming the
variable and what is expected, before anything is written."""
import json
import os

import pytest

from lib.monitoring_support import render


@pytest.mark.parametrize("extra,message", [
    ({"monitoring_prometheus_retention_time": "15 days"},
     "monitoring_prometheus_retention_time must be a Prometheus duration such as '15d' (got '15 days')"),
    ({"monitoring_alertmanager_email_to": "ops@example.com"},
     "set monitoring_alertmanager_smtp_smarthost to host:port"),
    ({"monitoring_alertmanager_instance_email_to": {"instance9": "x@example.com"}},
     "monitoring_alertmanager_instance_email_to must map names of platform_instances (instance1, instance2, instance3)"),
    ({"logging_instance_label": "app instance"},
     "logging_instance_label must be a label key such as 'app.kubernetes.io/instance' (got 'app instance')"),
])
def test_bad_settings_fail_before_anything_is_written(tmp_path, extra, message):
    proc = render(str(tmp_path), "--tags", "monitoring_preflight,logging_preflight",
                  "-e", json.dumps(extra), check=False)
    assert proc.returncode != 0
    assert message in " ".join(proc.stdout.split()), proc.stdout[-3000:]
    assert not [f for _, _, files in os.walk(tmp_path) for f in files], "a manifest was written"


def test_grafana_disabled_renders_no_grafana_object(rendered_defaults):
    names = os.listdir(os.path.join(rendered_defaults, "monitoring"))
    assert "alertmanager-config.yaml" in names and "networkpolicies.yaml" in names
    assert not [n for n in names if n.startswith("grafana")]
    with open(os.path.join(rendered_defaults, "monitoring", "networkpolicies.yaml")) as f:
        assert "name: grafana\n" not in f.read()

"""What every service owes the platform: probes, metrics, JSON logs with a
request id, configuration errors that name the setting."""
import os
import subprocess
import sys
import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps_support import APPS_DIR

SERVICES = ["auth", "payment", "frontend", "instance"]


@pytest.mark.parametrize("name", SERVICES)
def test_probes_answer(stack, name):
    service = stack.services[name]
    health = service.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    ready = service.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready"}


@pytest.mark.parametrize("name", SERVICES)
def test_the_public_port_does_not_serve_probes_or_metrics(stack, name):
    """They live on OPS_PORT (the kubelet and Prometheus): the port a Service
    and an Ingress route answers 404 there."""
    service = stack.services[name]
    for path in ("/healthz", "/readyz", "/metrics"):
        r = service.get_public(path)
        assert r.status_code == 404, f"{name} {path}: {r.status_code}"
        assert "http_requests_total" not in r.text


def samples(service, metric):
    text = service.get("/metrics").text
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric:
                found.append(sample)
    return found


@pytest.mark.parametrize("name", SERVICES)
def test_metrics_carry_service_instance_route_and_code(stack, name):
    service = stack.services[name]
    service.get("/healthz")
    service.get(f"/no-such-page-{uuid.uuid4().hex}")
    counts = {(s.labels["route"], s.labels["code"]): s for s in samples(service, "http_requests_total")}
    ok = counts[("/healthz", "200")]
    assert ok.labels["service"] == name
    assert ok.labels["instance"] == ("instance1" if name == "instance" else "")
    assert ok.value >= 1
    # Unknown paths share one label value: the series count stays bounded.
    assert counts[("unmatched", "404")].value >= 1
    assert not any(route.startswith("/no-such-page") for route, _ in counts)
    buckets = [s for s in samples(service, "http_request_duration_seconds_bucket")
               if s.labels["route"] == "/healthz"]
    assert buckets and buckets[-1].labels["le"] == "+Inf" and buckets[-1].value >= 1


@pytest.mark.parametrize("name", SERVICES)
def test_logs_are_json_with_the_request_id(stack, name):
    service = stack.services[name]
    request_id = f"test-{uuid.uuid4().hex}"
    r = service.get("/readyz", headers={"X-Request-ID": request_id})
    assert r.headers["X-Request-ID"] == request_id
    # The access line is written once the answer is sent: give the server a
    # moment to flush it before reading its output.
    deadline = time.monotonic() + 5
    while True:
        entries = [e for e in service.log_entries() if e.get("request_id") == request_id]
        if entries or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert entries, "no log line carries the request id"
    access = entries[-1]
    assert access["msg"] == "request" and access["route"] == "/readyz" and access["code"] == 200
    assert access["service"] == name
    # A request without an id gets a fresh one, returned to the caller.
    generated = service.get("/healthz").headers["X-Request-ID"]
    assert len(generated) == 32 and generated != request_id


def test_a_bad_request_id_is_replaced(stack):
    r = stack.auth.get("/healthz", headers={"X-Request-ID": "bad id with spaces\u00e9"})
    assert r.headers["X-Request-ID"] != "bad id with spaces\u00e9"


@pytest.mark.parametrize("env, expected", [
    ({"SERVICE_NAME": "auth"}, "JWT_KEYS_DIR is required"),
    ({"SERVICE_NAME": "payment", "STRIPE_SECRET_KEY_FILE": "/nonexistent/key"}, "STRIPE_WEBHOOK_SECRETS_FILE is required"),
    ({"SERVICE_NAME": "payment", "STRIPE_API_BASE": "api.stripe.com"}, "STRIPE_API_BASE must be an http:// or https:// URL"),
    ({"SERVICE_NAME": "auth", "DATABASE_HOST": "127.0.0.1", "DATABASE_NAME": "superkube",
      "DATABASE_CREDENTIALS_DIR": "/nonexistent", "JWT_KEYS_DIR": "/tmp"},
     "DATABASE_CREDENTIALS_DIR must name an existing directory"),
    ({"SERVICE_NAME": "auth", "PORT": "http"}, "PORT must be an integer"),
    ({"SERVICE_NAME": "auth", "PORT": "9090"}, "OPS_PORT must differ from PORT"),
    ({"SERVICE_NAME": "instance", "INSTANCE_NAME": "Bad_Name"}, "INSTANCE_NAME must be a DNS label"),
    ({"SERVICE_NAME": "billing"}, "SERVICE_NAME must be one of"),
])
def test_configuration_errors_name_the_setting(env, expected):
    result = subprocess.run(
        [os.environ.get("SKX_APPS_PYTHON", sys.executable), "-m", "skx_apps"],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": APPS_DIR, "PYTHONDONTWRITEBYTECODE": "1", **env},
        capture_output=True, text=True, timeout=20, cwd="/")
    assert result.returncode == 2
    assert expected in result.stderr

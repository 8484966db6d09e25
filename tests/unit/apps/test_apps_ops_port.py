"""The reference apps' two listeners (apps/skx_apps/web.py): the public port
(PORT, the one the Service and the Ingress route) serves the application's
routes and answers 404 on /metrics, /readyz and /healthz; the operations
port (OPS_PORT, platform_app_ops_port) serves those three and nothing else.
In process, on loopback ports: no server of another program, no subprocess."""
import json
import logging
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lib.servers import free_port
from skx_apps import web
from skx_apps.config import ConfigError

OPS_PATHS = ["/metrics", "/readyz", "/healthz"]


def get(port, path):
    """(status, content type, body) of one GET on 127.0.0.1:port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


@pytest.fixture
def root_logging():
    """web.App replaces the root logger's handlers (JSON on stdout): put
    pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def app(monkeypatch, root_logging):
    """An App with one route of its own, both listeners serving in threads."""
    port, ops_port = free_port(), free_port()
    monkeypatch.setenv("PORT", str(port))
    monkeypatch.setenv("OPS_PORT", str(ops_port))
    monkeypatch.setenv("BIND_ADDRESS", "127.0.0.1")
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    app = web.App("unit-svc")

    @app.route("GET", "/hello")
    def hello(req):
        return web.json_response({"hello": "world"})

    public, ops = app.listen()
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
               for s in (public, ops)]
    for t in threads:
        t.start()
    app.public_port, app.ops_port = public.server_address[1], ops.server_address[1]
    assert (app.public_port, app.ops_port) == (port, ops_port)
    yield app
    for server in (public, ops):
        server.shutdown()
        server.server_close()
    for t in threads:
        t.join(5)


@pytest.mark.parametrize("path", OPS_PATHS)
def test_the_public_port_answers_404_on_the_ops_endpoints(app, path):
    app.started.set()
    status, content_type, body = get(app.public_port, path)
    assert status == 404
    assert content_type == "application/json"
    assert json.loads(body)["error"] == "not found"
    assert "http_requests_total" not in body


def test_the_public_port_serves_the_application(app):
    assert get(app.public_port, "/hello")[0] == 200
    assert json.loads(get(app.public_port, "/hello")[2]) == {"hello": "world"}


def test_the_ops_port_serves_metrics_readiness_and_health(app):
    status, content_type, body = get(app.ops_port, "/readyz")
    assert status == 503, "start-up not finished yet: not ready"
    assert "startup" in json.loads(body)["failed"]
    app.started.set()
    assert get(app.ops_port, "/readyz")[:1] == (200,)
    assert json.loads(get(app.ops_port, "/readyz")[2]) == {"status": "ready"}
    status, _, body = get(app.ops_port, "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok", "service": "unit-svc"}
    status, content_type, body = get(app.ops_port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(body)}
    assert {"http_requests", "http_request_duration_seconds"} <= names


def test_the_ops_port_serves_nothing_else(app):
    assert get(app.ops_port, "/hello")[0] == 404
    assert get(app.ops_port, "/")[0] == 404


def test_refused_requests_on_the_public_port_are_counted_as_unmatched(app):
    """The route label stays bounded: a probe of /metrics from outside is an
    unmatched 404, never the /metrics route."""
    get(app.public_port, "/metrics")
    _, _, text = get(app.ops_port, "/metrics")
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "http_requests_total" and s.labels["service"] == "unit-svc"]
    assert any(s.labels["route"] == "unmatched" and s.labels["code"] == "404" for s in samples)
    assert not any(s.labels["route"] == "/metrics" and s.labels["code"] == "404" for s in samples)


def test_the_ports_default_to_8080_and_9090(monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("OPS_PORT", raising=False)
    assert web.listen_ports() == (8080, 9090)


@pytest.mark.parametrize("env, message", [
    ({"PORT": "8080", "OPS_PORT": "8080"}, "OPS_PORT must differ from PORT"),
    ({"OPS_PORT": "metrics"}, "OPS_PORT must be an integer"),
    ({"OPS_PORT": "70000"}, "OPS_PORT must be between 1 and 65535"),
])
def test_a_bad_ops_port_is_a_configuration_error(monkeypatch, capsys, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        web.listen_ports()

    def build():
        raise AssertionError("the service must not be built with a bad port")

    assert web.run(build) == 2
    assert message in capsys.readouterr().err

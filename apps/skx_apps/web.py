"""The small HTTP layer every service shares.

Threaded stdlib server (Debian ships it with python3, nothing to add), JSON
logs on stdout carrying a request id, Prometheus metrics, the /healthz,
/readyz and /metrics endpoints, and a graceful stop on SIGTERM: the
listening socket closes, requests in flight finish, then the process exits 0.

Two listeners: PORT (8080) serves the application's routes only, and is the
one a Service and an Ingress route; OPS_PORT (9090) serves only /healthz,
/readyz and /metrics, for the kubelet's probes and Prometheus, and is never
exposed outside the cluster. The public port answers 404 on those paths, so
no one on the internet reads a service's metrics or probe state.
"""
import contextvars
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from .config import ConfigError, env_int, env_str

_request_id = contextvars.ContextVar("request_id", default=None)
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# The operations endpoints, served on OPS_PORT only. Probes and scrapes hit
# them every few seconds: they log at debug only.
OPS_ROUTES = ("/healthz", "/readyz", "/metrics")
_QUIET_ROUTES = set(OPS_ROUTES)
DEFAULT_PORT = 8080
DEFAULT_OPS_PORT = 9090

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests served.",
    ["service", "instance", "route", "code"])
HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "Time to serve an HTTP request.",
    ["service", "instance", "route", "code"])
IN_FLIGHT = Gauge(
    "skx_http_requests_in_flight", "HTTP requests being served now.",
    ["service", "instance"])


# --------------------------------------------------------------------- logs
class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors parse without rules."""

    def __init__(self, service, instance):
        super().__init__()
        self.service = service
        self.instance = instance

    def format(self, record):
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "msg": record.getMessage(),
        }
        if self.instance:
            entry["instance"] = self.instance
        request_id = _request_id.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = "".join(traceback.format_exception_only(*record.exc_info[:2])).strip()
        return json.dumps(entry, separators=(",", ":"))


def setup_logging(service, instance=""):
    level = env_str("LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, got {level!r}")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service, instance))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return logging.getLogger(f"skx.{service}")


def log_fields(logger, level, msg, **fields):
    logger.log(level, msg, extra={"fields": fields})


def current_request_id():
    return _request_id.get()


# ------------------------------------------------------------ request/reply
class HTTPError(Exception):
    def __init__(self, status, message, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class Request:
    def __init__(self, method, target, headers, body, client, request_id):
        parsed = urllib.parse.urlsplit(target)
        self.method = method
        self.path = parsed.path
        self.query = {k: v[0] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        self.headers = headers
        self.body = body
        self.client = client
        self.request_id = request_id
        self.params = {}
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("Cookie", ""))
        except Exception:  # a malformed cookie header is treated as no cookie
            cookie = SimpleCookie()
        self.cookies = {k: m.value for k, m in cookie.items()}

    def json(self):
        try:
            data = json.loads(self.body or b"null")
        except ValueError:
            raise HTTPError(400, "the request body must be JSON") from None
        if not isinstance(data, dict):
            raise HTTPError(400, "the request body must be a JSON object")
        return data

    def form(self):
        parsed = urllib.parse.parse_qs(self.body.decode("utf-8", "replace"))
        return {k: v[0] for k, v in parsed.items()}

    def bearer_token(self):
        value = self.headers.get("Authorization", "")
        if value[:7].lower() == "bearer " and value[7:].strip():
            return value[7:].strip()
        return None


class Response:
    def __init__(self, status=200, body=b"", content_type="text/plain; charset=utf-8",
                 headers=None):
        self.status = status
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.headers = [("Content-Type", content_type)] + list(headers or [])


def json_response(obj, status=200, headers=None):
    return Response(status, json.dumps(obj, separators=(",", ":")) + "\n",
                    "application/json", headers)


def html_response(text, status=200, headers=None):
    return Response(status, text, "text/html; charset=utf-8", headers)


def redirect(location, status=303, headers=None):
    return Response(status, "", headers=[("Location", location)] + list(headers or []))


# ------------------------------------------------------------- outbound HTTP
class UpstreamError(Exception):
    """A service we depend on could not be reached."""


def call(method, url, payload=None, headers=None, timeout=5.0, form=False):
    """Call another service or API; returns (status, parsed JSON or None).

    The current request id travels along, so one id follows a request
    through frontend, auth and payment logs.
    """
    headers = dict(headers or {})
    data = None
    if payload is not None:
        if form:
            data = urllib.parse.urlencode(payload).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
    if _request_id.get():
        headers["X-Request-ID"] = _request_id.get()
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UpstreamError(f"{method} {_redact_url(url)} failed: {reason}") from None
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return status, parsed


def _redact_url(url):
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':%d' % parts.port if parts.port else ''}{parts.path}"


# --------------------------------------------------------------------- app
class App:
    """Routes, probes, metrics and the server loop of one service."""

    def __init__(self, service, instance=""):
        self.service = service
        self.instance = instance
        self.log = setup_logging(service, instance)
        self.routes = []
        self.ops_routes = []
        self.ready_checks = []
        self.on_shutdown = []
        self.extra_headers = []
        self.draining = threading.Event()
        self.started = threading.Event()
        self.route("GET", "/healthz", ops=True)(self._healthz)
        self.route("GET", "/readyz", ops=True)(self._readyz)
        self.route("GET", "/metrics", ops=True)(self._metrics)

    def route(self, method, pattern, max_body=1 << 20, ops=False):
        """Register a handler; ``{name}`` in the pattern matches one path segment.
        The pattern itself is the ``route`` metric label (bounded cardinality).
        ``ops`` routes are served on the operations port only, the others on
        the public port only."""
        regex = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern)) + "$")

        def register(fn):
            (self.ops_routes if ops else self.routes).append((method, regex, pattern, fn, max_body))
            return fn
        return register

    def ready_check(self, name):
        def register(fn):
            self.ready_checks.append((name, fn))
            return fn
        return register

    # built-in endpoints ------------------------------------------------
    def _healthz(self, req):
        return json_response({"status": "ok", "service": self.service,
                              **({"instance": self.instance} if self.instance else {})})

    def _readyz(self, req):
        failed = {}
        if not self.started.is_set():
            failed["startup"] = "start-up (schema migrations) not finished"
        if self.draining.is_set():
            failed["shutdown"] = "shutting down"
        for name, check in self.ready_checks:
            try:
                check()
            except Exception as exc:  # any failure means not ready
                failed[name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        if failed:
            log_fields(self.log, logging.WARNING, "not ready", failed=failed)
            return json_response({"status": "not ready", "failed": failed}, 503)
        return json_response({"status": "ready"})

    def _metrics(self, req):
        return Response(200, generate_latest(), CONTENT_TYPE_LATEST)

    # dispatch -----------------------------------------------------------
    def match(self, method, path, ops=False):
        """(route label, handler, path parameters, body limit) for a request
        on the public port, or on the operations port when ``ops``."""
        allowed = False
        for m, regex, pattern, fn, max_body in self.ops_routes if ops else self.routes:
            found = regex.match(path)
            if found:
                if m == method:
                    return pattern, fn, found.groupdict(), max_body
                allowed = True
        status, message = (405, "method not allowed") if allowed else (404, "not found")

        def unmatched(req):
            raise HTTPError(status, message)
        return "unmatched", unmatched, {}, 1 << 20

    def error_response(self, req, status, message, extra):
        return json_response({"error": message, **extra, "request_id": req.request_id}, status)

    # server loop ----------------------------------------------------------
    def listen(self):
        """Bind both listeners: (public server, operations server), each
        dispatching to its own routes. Raises ConfigError on bad ports and
        OSError (with ``port`` set) when a port cannot be bound."""
        port, ops_port = listen_ports()
        address = env_str("BIND_ADDRESS", "0.0.0.0")
        servers = []
        for number, ops in ((port, False), (ops_port, True)):
            try:
                server = _Server((address, number), _Handler)
            except OSError as exc:
                for other in servers:
                    other.server_close()
                exc.port, exc.address = number, address
                raise
            server.app, server.ops = self, ops
            servers.append(server)
        return tuple(servers)

    def serve(self, startup=None):
        """Listen on PORT and OPS_PORT; run ``startup`` (migrations...) in the
        background, retrying until it succeeds, so /healthz answers while a
        dependency is still down and /readyz says why the pod is not ready yet."""
        try:
            server, ops_server = self.listen()
        except OSError as exc:
            log_fields(self.log, logging.ERROR, "cannot listen", address=exc.address, port=exc.port,
                       error=exc.strerror)
            return 1
        # The operations listener outlives the public one: probes and scrapes
        # keep their answers (/readyz: 503 shutting down) while it drains.
        ops_thread = threading.Thread(target=ops_server.serve_forever, kwargs={"poll_interval": 0.2},
                                      daemon=True)
        ops_thread.start()

        def stop(signum, frame):
            if not self.draining.is_set():
                self.draining.set()
                log_fields(self.log, logging.INFO,
                           "shutting down: closing the listener, finishing requests in flight",
                           signal=signal.Signals(signum).name)
                threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if startup is None:
            self.started.set()
        else:
            threading.Thread(target=self._run_startup, args=(startup,), daemon=True).start()
        log_fields(self.log, logging.INFO, "listening", port=server.server_address[1],
                   ops_port=ops_server.server_address[1])
        server.serve_forever(poll_interval=0.2)
        # server_close closes the listening socket, then joins every handler
        # thread: requests in flight finish before the process goes.
        server.server_close()
        for fn in self.on_shutdown:
            try:
                fn()
            except Exception:
                self.log.exception("clean-up at shutdown failed")
        ops_server.shutdown()
        ops_server.server_close()
        log_fields(self.log, logging.INFO, "stopped")
        return 0

    def _run_startup(self, startup):
        delay = 0.5
        while not self.draining.is_set():
            try:
                startup()
                self.started.set()
                log_fields(self.log, logging.INFO, "start-up finished")
                return
            except Exception as exc:
                log_fields(self.log, logging.WARNING, "start-up failed, retrying",
                           error=f"{type(exc).__name__}: {str(exc).strip()[:300]}",
                           retry_in_seconds=delay)
                time.sleep(delay)
                delay = min(delay * 2, 10)


class _Server(ThreadingHTTPServer):
    # Handler threads are joined at shutdown (graceful drain), not abandoned.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    server_version = "skx"
    sys_version = ""
    # A stalled client cannot hold a thread (or the shutdown drain) forever.
    timeout = 30

    def log_message(self, fmt, *args):  # access logs are written as JSON below
        pass

    def do_GET(self):
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _serve(self):
        app = self.server.app
        started = time.monotonic()
        incoming = self.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        token = _request_id.set(request_id)
        path = urllib.parse.urlsplit(self.path).path
        route, fn, params, max_body = app.match(self.command, path, ops=self.server.ops)
        labels = {"service": app.service, "instance": app.instance}
        IN_FLIGHT.labels(**labels).inc()
        req = None
        try:
            req = Request(self.command, self.path, self.headers, b"",
                          self.client_address[0], request_id)
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length < 0:
                    raise HTTPError(400, "Content-Length must not be negative")
                if length > max_body:
                    raise HTTPError(413, f"request body larger than {max_body} bytes")
                req.body = self.rfile.read(length) if length else b""
                if len(req.body) < length:
                    raise HTTPError(400, "request body shorter than Content-Length")
                req.params = {k: urllib.parse.unquote(v) for k, v in params.items()}
                resp = fn(req)
            except HTTPError as exc:
                resp = app.error_response(req, exc.status, exc.message, exc.extra)
            except UpstreamError as exc:
                log_fields(app.log, logging.ERROR, "upstream unavailable", error=str(exc))
                resp = app.error_response(req, 502, "a service this one depends on is unavailable", {})
            except Exception:
                app.log.exception("request failed")
                resp = app.error_response(req, 500, "internal error", {})
            self.send_response(resp.status)
            for name, value in resp.headers + app.extra_headers:
                self.send_header(name, value)
            self.send_header("X-Request-ID", request_id)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)
            code = resp.status
        except (ConnectionError, TimeoutError) as exc:
            code = 499
            log_fields(app.log, logging.INFO, "client went away", error=type(exc).__name__)
        finally:
            elapsed = time.monotonic() - started
            IN_FLIGHT.labels(**labels).dec()
        HTTP_REQUESTS.labels(route=route, code=str(code), **labels).inc()
        HTTP_DURATION.labels(route=route, code=str(code), **labels).observe(elapsed)
        log_fields(app.log, logging.DEBUG if route in _QUIET_ROUTES else logging.INFO, "request",
                   method=self.command, route=route, path=path, code=code,
                   duration_ms=round(elapsed * 1000, 1))
        _request_id.reset(token)


def listen_ports():
    """(PORT, OPS_PORT): the public and the operations port, two different ones."""
    port = env_int("PORT", DEFAULT_PORT, 1, 65535)
    ops_port = env_int("OPS_PORT", DEFAULT_OPS_PORT, 1, 65535)
    if ops_port == port:
        raise ConfigError(f"OPS_PORT must differ from PORT (both {port}): /healthz, /readyz and /metrics "
                          "are served on OPS_PORT only, never on the public port")
    return port, ops_port


def run(build):
    """Entry point shared by the services: configuration errors end the
    process with a message naming the setting, before anything is touched."""
    try:
        listen_ports()
        app, startup = build()
    except ConfigError as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        return 2
    return app.serve(startup)


def service_identity(default_service):
    service = env_str("SERVICE_NAME", default_service)
    if service != default_service:
        raise ConfigError(f"SERVICE_NAME is {service!r} but this is the {default_service} module")
    return service


def files_dir_writable(path):
    probe = os.path.join(path, f".ready-{os.getpid()}")
    with open(probe, "w") as f:
        f.write("ok")
    os.unlink(probe)

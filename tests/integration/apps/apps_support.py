"""Helpers and fixtures for the reference apps: the four services run as real processes
(``python3 -m skx_apps.<service>``) against the session's real PostgreSQL and
Redis, with Secrets laid out on disk the way the kubelet mounts them, and
stripe-mock (built from its Go module) standing in for the Stripe API.

SKX_APPS_PYTHON picks the interpreter the services run with (default: the
test interpreter); point it at /usr/bin/python3 with Debian's python3-*
packages installed to prove the apps on the versions the images ship.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid

import psycopg
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from lib.modrun import ensure_collection_link, run_module
from lib.servers import free_port
from lib.superkube import superkube_args

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
APPS_DIR = os.path.join(ROOT, "apps")
# The same version as platform_images.stripe_mock in roles/platform/defaults.
STRIPE_MOCK_VERSION = "v0.197.0"
STRIPE_MOCK_BIN_DIR = os.environ.get("SKX_BIN_DIR", "/var/cache/skx/bin")


# The endpoints the apps serve on their operations port (OPS_PORT) only.
OPS_PATHS = ("/healthz", "/readyz", "/metrics")


# ------------------------------------------------------------------ secrets
def write_secret(directory, files):
    """Write a Secret as the kubelet does: a fresh timestamped directory, an
    atomic swap of the ``..data`` symlink, one symlink per key."""
    os.makedirs(directory, exist_ok=True)
    version = os.path.join(directory, f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{uuid.uuid4().hex[:8]}")
    os.mkdir(version)
    for name, content in files.items():
        with open(os.path.join(version, name), "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
    old = os.path.realpath(os.path.join(directory, "..data")) if os.path.islink(
        os.path.join(directory, "..data")) else None
    tmp_link = os.path.join(directory, "..data_tmp")
    os.symlink(os.path.basename(version), tmp_link)
    os.replace(tmp_link, os.path.join(directory, "..data"))
    for name in files:
        link = os.path.join(directory, name)
        if not os.path.islink(link):
            os.symlink(os.path.join("..data", name), link)
    for name in os.listdir(directory):  # keys that left the Secret
        if not name.startswith("..") and name not in files:
            os.unlink(os.path.join(directory, name))
    if old:
        shutil.rmtree(old)
    return directory


def make_key(kind, kid):
    """(private PEM, public JWK) for an Ed25519 or RSA signing key."""
    if kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
        jwk["alg"] = "EdDSA"
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        jwk["alg"] = "RS256"
    jwk.update(kid=kid, use="sig")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, jwk


def jwt_secret(current_pem, current_kid, jwks):
    return {"current.kid": current_kid, "current.pem": current_pem,
            "jwks.json": json.dumps({"keys": jwks})}


# ---------------------------------------------------------------- databases
def create_database(pg, name, owner):
    """A database owned by a new login role (a tenant's, in short)."""
    password = secrets.token_hex(16)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{owner}" LOGIN PASSWORD \'{password}\'')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    return {owner: password}


def db_credentials_secret(pg, database, user, password):
    return {"username": user, "password": password, "database": database,
            "host": pg.host, "port": str(pg.port)}


def query(pg, database, sql, params=()):
    with psycopg.connect(pg.dsn(database)) as conn:
        return conn.execute(sql, params).fetchall()


# ---------------------------------------------------------------- payments
def completed_event(session_id, user_id, plan):
    """A checkout.session.completed event as Stripe sends it."""
    return json.dumps({
        "id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": "checkout.session.completed",
        "data": {"object": {"id": session_id, "object": "checkout.session", "mode": "subscription",
                            "client_reference_id": user_id, "metadata": {"user_id": user_id, "plan": plan},
                            "subscription": f"sub_{uuid.uuid4().hex[:14]}",
                            "customer": f"cus_{uuid.uuid4().hex[:14]}"}}}).encode()


def post_event(stack, payload, signature):
    return stack.payment.post("/webhook", data=payload, headers={
        "Content-Type": "application/json", **({"Stripe-Signature": signature} if signature else {})})



# ---------------------------------------------------------------- services
class Service:
    """One app as a child process on two free loopback ports: the public one
    (url) and the operations one (ops_url: /healthz, /readyz, /metrics, to
    which get() and wait_for() send those paths)."""

    def __init__(self, module, env, workdir, wrapper=(), python=None):
        self.module = module
        self.wrapper = list(wrapper)
        self.python = python
        self.port = free_port()
        self.ops_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ops_url = f"http://127.0.0.1:{self.ops_port}"
        self.log_path = os.path.join(workdir, f"{module}-{self.port}.log")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": APPS_DIR,
            # The image's root filesystem is read-only: write no bytecode.
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "SERVICE_NAME": module,
            "BIND_ADDRESS": "127.0.0.1",
            "LOG_LEVEL": "DEBUG",
            **env,
            "PORT": str(self.port),
            "OPS_PORT": str(self.ops_port),
        }
        self.proc = None

    def start(self, wait_ready=True):
        python = self.python or os.environ.get("SKX_APPS_PYTHON", sys.executable)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*self.wrapper, python, "-m", f"skx_apps.{self.module}"], env=self.env,
                                     cwd="/", stdout=self._log, stderr=subprocess.STDOUT)
        self.wait_for("/healthz", 200, 20)
        if wait_ready:
            self.wait_for("/readyz", 200, 30)
        return self

    def wait_for(self, path, status, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.module} exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                last = requests.get(self.url_of(path), timeout=2)
                if last.status_code == status:
                    return last
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.module} {path} did not answer {status} in {timeout}s "
                             f"(last: {last.status_code if last is not None else 'no answer'}: "
                             f"{last.text if last is not None else ''})\n{self.log_text()[-3000:]}")

    def url_of(self, path):
        """The URL of path: on the operations port for the probe and metrics endpoints."""
        return (self.ops_url if urllib.parse.urlsplit(path).path in OPS_PATHS else self.url) + path

    def get(self, path, **kw):
        return requests.get(self.url_of(path), timeout=10, allow_redirects=False, **kw)

    def get_public(self, path, **kw):
        """path on the public port, whatever it is."""
        return requests.get(self.url + path, timeout=10, allow_redirects=False, **kw)

    def post(self, path, **kw):
        return requests.post(self.url + path, timeout=15, allow_redirects=False, **kw)

    def put(self, path, **kw):
        return requests.put(self.url + path, timeout=10, allow_redirects=False, **kw)

    def log_text(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def log_entries(self):
        entries = []
        for line in self.log_text().splitlines():
            line = line.strip()
            if line:
                entries.append(json.loads(line))  # every line must be JSON
        return entries

    def terminate(self, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        self._log.close()
        return self.proc.returncode


# --------------------------------------------------------------- stripe-mock
def stripe_mock_binary():
    binary = os.path.join(STRIPE_MOCK_BIN_DIR, "stripe-mock")
    if os.access(binary, os.X_OK):
        return binary
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    if go is None:
        pytest.fail("stripe-mock is not built and no Go toolchain is on PATH: install Go, or run "
                    f"GOBIN={STRIPE_MOCK_BIN_DIR} go install github.com/stripe/stripe-mock@{STRIPE_MOCK_VERSION}")
    os.makedirs(STRIPE_MOCK_BIN_DIR, exist_ok=True)
    subprocess.run([go, "install", f"github.com/stripe/stripe-mock@{STRIPE_MOCK_VERSION}"],
                   env={**os.environ, "GOBIN": STRIPE_MOCK_BIN_DIR, "GOFLAGS": "-mod=mod"},
                   cwd="/tmp", check=True, timeout=600)
    return binary


@pytest.fixture(scope="session")
def stripe_mock(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("stripe-mock") / "log", "wb")
    proc = subprocess.Popen([stripe_mock_binary(), "-http-addr", f"127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("stripe-mock did not start")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)
    log.close()


# ----------------------------------------------------------------- the stack
class Stack:
    """Everything the tests share: databases, Secrets, running services."""


@pytest.fixture(scope="session")
def stack(postgres_server, redis_server, stripe_mock, tmp_path_factory):
    pg = postgres_server
    s = Stack()
    s.pg, s.redis = pg, redis_server
    s.dir = str(tmp_path_factory.mktemp("apps"))
    suffix = uuid.uuid4().hex[:8]
    # superkube as roles/postgres makes it (tenant_database with the
    # platform's grants): auth and payment each with their own owner role,
    # whose name they get as DATABASE_MIGRATION_ROLE, and login roles.
    s.superkube = f"superkube_{suffix}"
    s.auth_owner, s.payment_owner = f"auth_{suffix}", f"payment_{suffix}"
    auth_role, payment_role = s.auth_owner + "_a", s.payment_owner + "_a"
    creds = {auth_role: secrets.token_hex(16), payment_role: secrets.token_hex(16)}
    ensure_collection_link()
    superkube = superkube_args(pg, s.superkube, s.superkube, [
        (s.auth_owner, creds[auth_role], "superkube_auth", None),
        (s.payment_owner, creds[payment_role], "superkube_payment", None)])
    provisioned = run_module("tenant_database", superkube)
    assert not provisioned.failed, provisioned.result
    secrets_dir = os.path.join(s.dir, "secrets")
    s.secret = lambda name: os.path.join(secrets_dir, name)

    s.jwt_pem, s.jwt_jwk = make_key("ed25519", "k1")
    write_secret(s.secret("auth-jwt"), jwt_secret(s.jwt_pem, "k1", [s.jwt_jwk]))
    write_secret(s.secret("auth-db"), db_credentials_secret(pg, s.superkube, auth_role, creds[auth_role]))
    write_secret(s.secret("payment-db"),
                 db_credentials_secret(pg, s.superkube, payment_role, creds[payment_role]))
    s.webhook_secret = "whsec_" + secrets.token_hex(16)
    write_secret(s.secret("payment-stripe"), {"secret_key": "sk_test_" + secrets.token_hex(12),
                                              "webhook_secrets": s.webhook_secret + "\n"})
    write_secret(s.secret("redis-auth"), {"password": redis_server.password})

    def db_env(secret, database):
        return {"DATABASE_HOST": pg.host, "DATABASE_PORT": str(pg.port), "DATABASE_NAME": database,
                "DATABASE_CREDENTIALS_DIR": s.secret(secret)}

    s.auth_env = {**db_env("auth-db", s.superkube), "DATABASE_MIGRATION_ROLE": s.auth_owner,
                  "JWT_KEYS_DIR": s.secret("auth-jwt"), "JWT_TTL_SECONDS": "600"}
    s.auth = Service("auth", s.auth_env, s.dir).start()
    s.payment_env = {
        **db_env("payment-db", s.superkube), "DATABASE_MIGRATION_ROLE": s.payment_owner, "AUTH_URL": s.auth.url,
        "STRIPE_API_BASE": stripe_mock,
        "STRIPE_SECRET_KEY_FILE": os.path.join(s.secret("payment-stripe"), "secret_key"),
        "STRIPE_WEBHOOK_SECRETS_FILE": os.path.join(s.secret("payment-stripe"), "webhook_secrets"),
        "CHECKOUT_SUCCESS_URL": "https://superkubernetex.com/billing/success",
        "CHECKOUT_CANCEL_URL": "https://superkubernetex.com/billing/cancel"}
    s.payment = Service("payment", s.payment_env, s.dir).start()
    # The platform's last step: the grants on the tables their migrations made.
    settled = run_module("tenant_database", superkube)
    assert not settled.failed and settled["waiting"] == [], settled.result
    s.frontend = Service("frontend", {
        "AUTH_URL": s.auth.url, "PAYMENT_URL": s.payment.url, "REDIS_HOST": redis_server.host,
        "REDIS_PORT": str(redis_server.port),
        "REDIS_PASSWORD_FILE": os.path.join(s.secret("redis-auth"), "password")}, s.dir).start()

    s.instances = {}
    s.instance_env = {}
    for name in ("instance1", "instance2"):
        database, role = f"{name}_db_{suffix}", f"{name}_{suffix}"
        password = create_database(pg, database, role)[role]
        write_secret(s.secret(f"{name}-db"), db_credentials_secret(pg, database, role, password))
        files = os.path.join(s.dir, f"{name}-files")
        os.mkdir(files)
        s.instance_env[name] = {**db_env(f"{name}-db", database), "INSTANCE_NAME": name,
                                "FILES_DIR": files, "AUTH_URL": s.auth.url}
        s.instances[name] = Service("instance", s.instance_env[name], s.dir).start()
        s.instances[name].database = database
    s.services = {"auth": s.auth, "payment": s.payment, "frontend": s.frontend,
                  "instance": s.instances["instance1"]}
    yield s
    for service in (s.frontend, s.payment, *s.instances.values(), s.auth):
        service.terminate()


@pytest.fixture(scope="session")
def user_token(stack):
    """A signed-up user and a token from auth's /login."""
    email = f"writer-{uuid.uuid4().hex[:8]}@example.com"
    assert stack.auth.post("/signup", json={"email": email, "password": "correct horse"}).status_code == 201
    r = stack.auth.post("/login", json={"email": email, "password": "correct horse"})
    assert r.status_code == 200, r.text
    return r.json()["token"]

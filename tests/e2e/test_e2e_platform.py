"""The whole platform on the testbed, as an operator and a user see it."""
import json
import socket
import ssl
import time
import uuid

import pytest

from e2e_support import CA, HOSTS, INGRESS_ADDRESS, SETTINGS, https, kubectl, psql, secret_data, stripe_signature

NAMESPACES = ["skx-app", "skx-data", "skx-instance1", "skx-instance2", "skx-instance3"]
# Layers the testbed inventory turns off (with its reason) have no pods to check.
NAMESPACES += [ns for ns, layer in [("skx-monitoring", "platform_monitoring_enabled"),
                                    ("skx-logging", "platform_logging_enabled")] if SETTINGS.get(layer, True)]
# node-exporter and the log collector.
NAMESPACES += ["skx-node-agents"] if SETTINGS.get("platform_monitoring_enabled", True) or \
    SETTINGS.get("platform_logging_enabled", True) else []


def pods(namespace):
    return json.loads(kubectl("-n", namespace, "get", "pods", "-o", "json").stdout)["items"]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_pod_is_ready(namespace):
    # Pods of Jobs (backups, restores) end by design; the serving pods must all be Ready.
    items = [p for p in pods(namespace)
             if not any(o["kind"] == "Job" for o in p["metadata"].get("ownerReferences", []))]
    assert items, f"no pods in {namespace}"
    for pod in items:
        ready = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}.get("Ready")
        assert ready == "True", f"{namespace}/{pod['metadata']['name']} is not Ready"


# A path of each application (the probe and metrics endpoints are not served
# through the ingress: tests/e2e/test_e2e_ops_endpoints.py).
PUBLIC_PATH = {"frontend": "/", "auth": "/.well-known/jwks.json", "payment": "/plans",
               "instance1": "/", "instance2": "/", "instance3": "/"}


@pytest.mark.parametrize("service", sorted(HOSTS))
def test_each_host_answers_over_https_with_our_certificate(service):
    # curl checks the certificate chain against our CA and the host name (SNI).
    r = https(HOSTS[service], PUBLIC_PATH[service])
    assert r.status == 200
    assert "max-age=" in r.headers.get("strict-transport-security", "")


@pytest.mark.parametrize("service", sorted(HOSTS))
def test_each_host_sends_hsts_and_the_safe_headers(service):
    """HSTS for platform_hsts_max_age seconds, no MIME sniffing, no framing:
    the Middleware of every Ingress, or the HTTPRoutes' header filter."""
    r = https(HOSTS[service], PUBLIC_PATH[service])
    max_age = SETTINGS.get("platform_hsts_max_age", 31536000)
    assert r.headers.get("strict-transport-security") == f"max-age={max_age}; includeSubDomains", r.headers
    assert r.headers.get("x-content-type-options") == "nosniff"
    assert r.headers.get("x-frame-options") == "DENY"


def tls_handshake(host, version, ciphers=None):
    """One TLS handshake with the ingress on port 443, offering only `version`
    (and only `ciphers`, OpenSSL names, when given); returns the version and
    cipher the server chose, or raises ssl.SSLError when it refuses."""
    ctx = ssl.create_default_context(cafile=CA)
    ctx.minimum_version = ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    with socket.create_connection((INGRESS_ADDRESS, 443), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            return tls.version(), tls.cipher()[0]


def test_https_accepts_tls13_and_tls12_with_forward_secret_aead_ciphers():
    assert tls_handshake(HOSTS["frontend"], ssl.TLSVersion.TLSv1_3)[0] == "TLSv1.3"
    assert tls_handshake(HOSTS["frontend"], ssl.TLSVersion.TLSv1_2,
                         "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")[0] == "TLSv1.2"


@pytest.mark.parametrize("service", ["frontend", "instance1"])
def test_https_refuses_tls12_cbc_ciphers(service):
    # Go's TLS server accepts these CBC suites unless told otherwise: the
    # TLSOption "default" of the ingress role (ingress_tls_cipher_suites)
    # leaves only forward-secret AEAD suites.
    with pytest.raises(ssl.SSLError):
        tls_handshake(HOSTS[service], ssl.TLSVersion.TLSv1_2,
                      "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
                      ":AES128-SHA:AES256-SHA:@SECLEVEL=1")


def test_http_redirects_to_https():
    import subprocess
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                          "--resolve", f"{HOSTS['frontend']}:80:127.0.0.1", f"http://{HOSTS['frontend']}/"],
                         capture_output=True, text=True).stdout
    code, _, location = out.partition(" ")
    assert code in ("301", "308") and location.startswith("https://")


def test_a_user_signs_up_logs_in_checks_out_and_the_webhook_records_the_subscription():
    email, password = f"e2e-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery staple"
    assert https(HOSTS["auth"], "/signup", "POST", {"email": email, "password": password}).status == 201
    login = https(HOSTS["auth"], "/login", "POST", {"email": email, "password": password})
    assert login.status == 200
    token = login.json()["token"]

    checkout = https(HOSTS["payment"], "/checkout", "POST", {"plan": "pro"}, headers={"Authorization": f"Bearer {token}"})
    assert checkout.status == 201, checkout.body
    session = checkout.json()
    assert session["url"].startswith("https://")

    verified = https(HOSTS["auth"], "/verify", "POST", headers={"Authorization": f"Bearer {token}"}).json()
    assert verified["valid"] is True
    user_id = verified["claims"]["sub"]
    event = {"id": f"evt_{uuid.uuid4().hex}", "type": "checkout.session.completed",
             "data": {"object": {"id": session["id"], "object": "checkout.session",
                                 "client_reference_id": user_id, "metadata": {"user_id": user_id, "plan": "pro"}}}}
    payload = json.dumps(event).encode()
    secret = secret_data("skx-app", "payment-stripe")["webhook_secrets"].splitlines()[0]
    hook = https(HOSTS["payment"], "/webhook", "POST", payload,
                 headers={"Stripe-Signature": stripe_signature(payload, secret), "Content-Type": "application/json"})
    assert hook.status == 200, hook.body
    rows = psql(f"SELECT plan_id, status FROM subscriptions WHERE stripe_checkout_session_id = '{session['id']}'",
                database="superkube").stdout.split()
    assert rows == ["pro|active"]

    forged = https(HOSTS["payment"], "/webhook", "POST", payload,
                   headers={"Stripe-Signature": stripe_signature(payload, "whsec_forged"), "Content-Type": "application/json"})
    assert forged.status == 400


@pytest.mark.parametrize("instance", ["instance1", "instance2", "instance3"])
def test_each_instance_serves_its_own_pages_from_its_own_database(instance):
    r = https(HOSTS[instance], "/")
    assert r.status == 200
    assert r.headers.get("x-instance") == instance
    marker = uuid.uuid4().hex
    creds = secret_data(f"skx-{instance}", "db-credentials")
    psql(f"INSERT INTO pages (slug, title, body) VALUES ('e2e-{marker}', 'E2E {marker}', 'from {instance}')",
         database=f"{instance}_db", user=creds["username"], password=creds["password"])
    page = https(HOSTS[instance], f"/pages/e2e-{marker}")
    assert page.status == 200 and marker in page.body
    others = [i for i in ("instance1", "instance2", "instance3") if i != instance]
    for other in others:
        assert https(HOSTS[other], f"/pages/e2e-{marker}").status == 404


def test_instance1_credentials_cannot_reach_instance2_database():
    creds = secret_data("skx-instance1", "db-credentials")
    own = psql("SELECT current_database()", database="instance1_db",
               user=creds["username"], password=creds["password"])
    assert own.stdout.strip() == "instance1_db"
    other = psql("SELECT 1", database="instance2_db", user=creds["username"], password=creds["password"], check=False)
    assert other.returncode != 0 and "permission denied for database" in other.stderr


def test_auth_and_payment_logins_see_only_their_own_tables():
    """Each service's login, as its pods use it (docs/user-guide.md, "Who may
    do what in superkube"): payment cannot read a password hash, auth cannot
    write a subscription, and neither can become the other's owner role."""
    auth, payment = secret_data("skx-app", "auth-db"), secret_data("skx-app", "payment-db")
    assert auth["username"] in ("superkube_auth_a", "superkube_auth_b")
    assert payment["username"] in ("superkube_payment_a", "superkube_payment_b")

    def as_(creds, sql):
        return psql(sql, database="superkube", user=creds["username"], password=creds["password"], check=False)

    assert as_(auth, "SELECT count(password_hash) FROM users").returncode == 0
    assert as_(payment, "SELECT count(*) FROM plans").stdout.strip() == "2"
    for creds, sql, table in (
            (payment, "SELECT password_hash FROM users LIMIT 1", "users"),
            (payment, "SELECT id FROM users LIMIT 1", "users"),
            (auth, "INSERT INTO subscriptions (user_id, plan_id, status) VALUES ('x', 'pro', 'active')",
             "subscriptions"),
            (auth, "UPDATE subscriptions SET status = 'canceled'", "subscriptions"),
            (auth, "SELECT user_id FROM subscriptions LIMIT 1", "subscriptions")):
        refused = as_(creds, sql)
        assert refused.returncode != 0 and f"permission denied for table {table}" in refused.stderr, (sql, refused)
    for creds, other in ((payment, "superkube_auth"), (auth, "superkube_payment")):
        refused = as_(creds, f"SET ROLE {other}")
        assert refused.returncode != 0 and "permission denied to set role" in refused.stderr, refused
    # The logins both services shared before are gone.
    assert psql("SELECT count(*) FROM pg_roles WHERE rolname IN ('superkube_a', 'superkube_b')").stdout.strip() == "0"


def _reach(namespace, url):
    pod = next(p["metadata"]["name"] for p in pods(namespace) if p["status"].get("phase") == "Running")
    code = ("import urllib.request,sys\n"
            "try:\n urllib.request.urlopen(sys.argv[1], timeout=4); print('reached')\n"
            "except Exception as e: print('blocked', type(e).__name__)")
    return kubectl("-n", namespace, "exec", pod, "--", "python3", "-c", code, url, check=False).stdout.strip()


def test_instance1_pods_cannot_reach_instance2_pods():
    # The same pod reaches what policy allows (auth), so a block is the policy, not a broken probe.
    assert _reach("skx-instance1", "http://auth.skx-app.svc.cluster.local:8080/.well-known/jwks.json") == "reached"
    assert _reach("skx-instance1", "http://instance.skx-instance2.svc.cluster.local:8080/").startswith("blocked")


def test_stripe_keys_only_in_payment_pods_and_jwt_key_only_in_auth_pods():
    holders = {"payment-stripe": set(), "auth-jwt": set()}
    for namespace in NAMESPACES:
        for pod in pods(namespace):
            spec = pod["spec"]
            secrets = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
            for c in spec["containers"] + spec.get("initContainers", []):
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        secrets.add(ref["name"])
            for name in holders:
                if name in secrets:
                    holders[name].add(pod["metadata"]["labels"].get("app.kubernetes.io/name"))
    assert holders == {"payment-stripe": {"payment"}, "auth-jwt": {"auth"}}

"""Gateway routing on the deployed platform (issue 19): a run with
platform_routing=gateway moves every host from its Ingress to the
platform's Gateway; the host-level tests of tests/e2e (every host over
HTTPS with its own certificate signed by our CA, TLS versions and cipher
suites, the HTTP redirect, HSTS and the safe headers, each namespace holding
the keys of its own hosts only) pass in that mode as they do with Ingresses;
a second run changes nothing; a tenant cannot attach a route to another
tenant's host; and a run back to ingress routing removes the Gateway, its
routes and grants, and serves every host from its Ingress again.

SKX_TESTBED_GATEWAY=1 (.ci/run, after the deploy) runs it: it switches the
shared platform and back, about three runs of site.yml."""
import json
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

from lib.testbed import KUBECONFIG, KUBECTL, ROOT, eventually

pytestmark = pytest.mark.skipif(os.environ.get("SKX_TESTBED_GATEWAY") != "1",
                                reason="set SKX_TESTBED_GATEWAY=1, on the deployed platform (it switches its routing)")

VENV_BIN = os.path.dirname(sys.executable)
with open(os.path.join(ROOT, "inventories", "testbed", "group_vars", "all", "main.yml")) as f:
    DOMAIN = yaml.safe_load(f)["platform_domain"]
CA = os.path.expanduser(f"~/.superkubernetex/pki/{DOMAIN}/ca.crt")
OURS = "app.kubernetes.io/managed-by=superkubernetex"
GATEWAY_KINDS = ("gateways.gateway.networking.k8s.io", "httproutes.gateway.networking.k8s.io",
                 "referencegrants.gateway.networking.k8s.io")
# The e2e tests about what a client of each host sees, run in gateway mode.
HOST_TESTS = ["tests/e2e/test_e2e_tls.py",
              "tests/e2e/test_e2e_platform.py::test_each_host_answers_over_https_with_our_certificate",
              "tests/e2e/test_e2e_platform.py::test_each_host_sends_hsts_and_the_safe_headers",
              "tests/e2e/test_e2e_platform.py::test_https_accepts_tls13_and_tls12_with_forward_secret_aead_ciphers",
              "tests/e2e/test_e2e_platform.py::test_https_refuses_tls12_cbc_ciphers",
              "tests/e2e/test_e2e_platform.py::test_http_redirects_to_https",
              "tests/e2e/test_e2e_platform.py::test_each_instance_serves_its_own_pages_from_its_own_database"]


def kubectl(*args, check=True):
    proc = subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}")
    return proc


def ours(kind):
    proc = kubectl("get", kind, "-A", "-l", OURS, "-o", "json", check=False)
    return json.loads(proc.stdout)["items"] if proc.returncode == 0 else []


def site(*extra):
    env = dict(os.environ, KUBECONFIG=KUBECONFIG, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    start = time.monotonic()
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "site.yml", "-i", "inventories/testbed",
                           *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    recap = [line for line in proc.stdout.splitlines() if re.match(r"^localhost +:", line)]
    print(f"site.yml {' '.join(extra)}: {time.monotonic() - start:.0f} s, {recap}")
    return proc, recap[0]


def condition(obj_status, kind):
    return {c["type"]: c["status"] for c in obj_status.get("conditions", [])}.get(kind)


@pytest.fixture(scope="module")
def gateway_mode():
    _, recap = site("-e", "platform_routing=gateway")
    yield recap
    # Back to the Ingresses: the Gateway API objects of the platform go.
    site()
    assert not [obj["metadata"]["name"] for kind in GATEWAY_KINDS for obj in ours(kind)]
    assert len(ours("ingresses.networking.k8s.io")) >= 6


def test_every_host_is_served_by_the_gateway(gateway_mode):
    assert not ours("ingresses.networking.k8s.io"), "the Ingresses of the platform must be gone"
    [gateway] = ours("gateways.gateway.networking.k8s.io")
    def programmed():
        current = json.loads(kubectl("-n", gateway["metadata"]["namespace"], "get", "gateway",
                                     gateway["metadata"]["name"], "-o", "json").stdout)
        return condition(current.get("status", {}), "Programmed") == "True"
    eventually(programmed, timeout=60, what="the Gateway programmed")
    routes = ours("httproutes.gateway.networking.k8s.io")
    listeners = [item for item in gateway["spec"]["listeners"] if item["protocol"] == "HTTPS"]
    assert len(routes) == len(listeners) + 1  # and the HTTP listener's redirect
    for route in routes:
        [parent] = route["status"]["parents"]
        assert condition(parent, "Accepted") == "True", route["metadata"]
        assert condition(parent, "ResolvedRefs") == "True", route["metadata"]


def test_the_host_tests_pass_through_the_gateway(gateway_mode):
    env = dict(os.environ, KUBECONFIG=KUBECONFIG, SKX_TESTBED_REQUIRED="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *HOST_TESTS],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:]
    print(f"host tests through the Gateway: {summary}")
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert re.search(r"\b(\d+) passed", summary) and " skipped" not in summary and "failed" not in summary


def test_a_second_run_in_gateway_mode_changes_nothing(gateway_mode):
    _, recap = site("-e", "platform_routing=gateway")
    assert " changed=0 " in recap, recap


def test_a_tenant_cannot_attach_a_route_to_another_tenants_host(gateway_mode):
    [gateway] = ours("gateways.gateway.networking.k8s.io")
    listeners = {item["hostname"]: item["name"] for item in gateway["spec"]["listeners"] if "hostname" in item}
    victim = next(host for host in listeners if host.startswith("inst2."))
    rogue = [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
              "metadata": {"name": name, "namespace": "skx-instance1"},
              "spec": {"parentRefs": [{"name": gateway["metadata"]["name"],
                                       "namespace": gateway["metadata"]["namespace"], **section}],
                       "hostnames": [victim],
                       "rules": [{"backendRefs": [{"name": "instance", "port": 8080}]}]}}
             # Naming inst2's listener, and naming none (any listener that admits skx-instance1).
             for name, section in (("rogue-section", {"sectionName": listeners[victim]}), ("rogue-any", {}))]
    subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, "apply", "-f", "-"],
                   input=json.dumps({"apiVersion": "v1", "kind": "List", "items": rogue}), text=True, check=True,
                   capture_output=True, timeout=60)
    try:
        def refused():
            found = []
            for route in rogue:
                status = json.loads(kubectl("-n", "skx-instance1", "get", "httproute", route["metadata"]["name"],
                                            "-o", "json").stdout).get("status", {})
                parents = status.get("parents", [])
                found.append(bool(parents) and all(condition(p, "Accepted") == "False" for p in parents))
            return all(found)
        eventually(refused, timeout=60, what="the rogue routes refused by the Gateway")
        # inst2 is still served by instance2 alone.
        for _ in range(5):
            out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-D", "-", "--max-time", "10", "--cacert",
                                  CA, "--resolve",
                                  f"{victim}:443:127.0.0.1", f"https://{victim}/"],
                                 capture_output=True, text=True, timeout=30).stdout.lower()
            assert "x-instance: instance2" in out, out
    finally:
        for route in rogue:
            kubectl("-n", "skx-instance1", "delete", "httproute", route["metadata"]["name"], "--ignore-not-found")

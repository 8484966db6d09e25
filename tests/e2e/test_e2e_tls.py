"""Per-host certificates on the deployed platform (issue 14, least privilege).

Each namespace holds the keys of the hosts its own Ingresses serve and no
other: a tenant's Secrets give its own host's key only. Each host answers
through the ingress with a certificate for its own name only, signed by the
platform's private CA (selfsigned mode, the testbed's)."""
import base64
import json
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

from e2e_support import CA, DOMAIN, HOSTS, INGRESS_ADDRESS, SETTINGS, kubectl

INSTANCES = [f"instance{n}" for n in (1, 2, 3)]
# The namespaces that hold an Ingress on the testbed, or held the former
# shared certificate (the monitoring namespace: Grafana does not run here).
NAMESPACES = ["skx-app"] + [f"skx-{i}" for i in INSTANCES]
NAMESPACES += ["skx-monitoring"] if SETTINGS.get("platform_monitoring_enabled", True) else []


def ca_certificate():
    with open(CA, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def dns_names(cert):
    san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    return sorted(san.get_values_for_type(x509.DNSName))


def tls_secrets(namespace):
    """Every Secret of the namespace that holds a certificate, whatever its type or name:
    {name: (leaf certificate, private key or None)}."""
    items = json.loads(kubectl("-n", namespace, "get", "secrets", "-o", "json").stdout)["items"]
    found = {}
    for secret in items:
        data = secret.get("data") or {}
        if "tls.crt" not in data:
            continue
        leaf = x509.load_pem_x509_certificates(base64.b64decode(data["tls.crt"]))[0]
        key = (serialization.load_pem_private_key(base64.b64decode(data["tls.key"]), password=None)
               if "tls.key" in data else None)
        found[secret["metadata"]["name"]] = (leaf, key)
    return found


def same_public_key(cert, key):
    form = dict(encoding=serialization.Encoding.DER, format=serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(**form) == key.public_key().public_bytes(**form)


def ingress_hosts(namespace):
    """{host: TLS Secret name} of the hosts served from the namespace: by its
    Ingresses (platform_routing ingress), or by the listeners of the
    platform's Gateway that present a Secret of the namespace (gateway:
    tests/testbed/test_gateway_mode.py runs these tests in that mode)."""
    items = json.loads(kubectl("-n", namespace, "get", "ingresses", "-o", "json").stdout)["items"]
    hosts = {}
    for ingress in items:
        for tls in ingress["spec"].get("tls", []):
            for host in tls.get("hosts", []):
                hosts[host] = tls.get("secretName")
    gateways = kubectl("get", "gateways.gateway.networking.k8s.io", "-A", "-l",
                       "app.kubernetes.io/managed-by=superkubernetex", "-o", "json", check=False)
    for gateway in json.loads(gateways.stdout)["items"] if gateways.returncode == 0 else []:
        for listener in gateway["spec"]["listeners"]:
            for ref in (listener.get("tls") or {}).get("certificateRefs", []):
                if ref.get("namespace", gateway["metadata"]["namespace"]) == namespace:
                    hosts[listener["hostname"]] = ref["name"]
    return hosts


@pytest.mark.parametrize("instance", INSTANCES)
def test_tenant_secrets_hold_a_certificate_and_key_for_its_own_host_only(instance):
    host = HOSTS[instance]
    secrets = tls_secrets(f"skx-{instance}")
    assert secrets, f"skx-{instance} holds no TLS Secret"
    ca = ca_certificate()
    for name, (leaf, key) in secrets.items():
        assert dns_names(leaf) == [host], f"skx-{instance}/{name} is valid for {dns_names(leaf)}"
        leaf.verify_directly_issued_by(ca)
        assert key is not None and same_public_key(leaf, key), f"skx-{instance}/{name}: the key is not the certificate's"


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_each_namespace_holds_the_keys_of_the_hosts_its_ingresses_serve_and_no_other(namespace):
    served = ingress_hosts(namespace)
    secrets = tls_secrets(namespace)
    held = sorted(name for leaf, _ in secrets.values() for name in dns_names(leaf))
    assert held == sorted(served), f"{namespace} holds keys for {held}; its Ingresses serve {sorted(served)}"
    for host, secret in served.items():
        assert secret in secrets, f"the Ingress of {host} names {secret}, which {namespace} does not hold"
        assert dns_names(secrets[secret][0]) == [host], f"{namespace}/{secret} is valid for {dns_names(secrets[secret][0])}"


def peer_certificate(host):
    """The certificate the ingress presents for host (SNI), once the handshake has
    checked its chain against our CA and the host name."""
    ctx = ssl.create_default_context(cafile=CA)
    with socket.create_connection((INGRESS_ADDRESS, 443), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


@pytest.mark.parametrize("service", sorted(HOSTS))
def test_each_host_presents_a_certificate_for_its_own_name_only_signed_by_our_ca(service):
    host = HOSTS[service]
    assert host == DOMAIN or host.endswith("." + DOMAIN)
    cert = peer_certificate(host)
    assert dns_names(cert) == [host]
    cert.verify_directly_issued_by(ca_certificate())

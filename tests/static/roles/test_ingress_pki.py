"""The ingress role's per-host PKI on the control node (roles/ingress/tasks/sign.yml,
pki.yml), without a cluster: one key and certificate per host, signed by one
private CA; adding a host signs that host alone, a converged run runs no PKI
module, removing a host touches no other host's files, a certificate near
its end is signed anew, and a preview (check mode) creates nothing and says
what a real run would create."""
import datetime
import json
import re
import sys

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from static_support import run_ansible

PLAYBOOK = """
- name: Sign the hosts of the test, as tls.yml and tenant.yml do
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    platform_settings_checked: true
  tasks:
    - name: Sign the hosts
      ansible.builtin.include_role:
        name: superkubernetex.platform.ingress
        tasks_from: sign.yml
      vars:
        __ingress_sign_hosts: "{{ sign_hosts }}"
"""
PKI_TASKS = ("Create the key of each host to sign", "Sign the certificate of each host with the private CA",
             "Create the private CA key", "Self-sign the CA certificate")


@pytest.fixture
def sign(tmp_path):
    playbook = tmp_path / "sign.yml"
    playbook.write_text(PLAYBOOK)
    pki = tmp_path / "pki"

    def run(*hosts, check=False, extra=()):
        args = ["ansible-playbook", str(playbook), "-i", "localhost,", "-e", f"ingress_pki_dir={pki}", *extra,
                "-e", f"ansible_python_interpreter={sys.executable}", "-e", json.dumps({"sign_hosts": list(hosts)})]
        proc = run_ansible(*args, *(["--check"] if check else []))
        recap = re.search(r"changed=(\d+)", proc.stdout)
        ran = [task for task in PKI_TASKS if re.search(rf"TASK \[[^\]]*{task}\]\s*\*+\n[^\n]*\n(changed|ok)", proc.stdout)]
        return int(recap.group(1)), ran, " ".join(proc.stdout.split())  # messages wrap

    return pki, run


def files(pki):
    return {p.name: p.read_bytes() for p in sorted((pki / "hosts").glob("*"))} | {
        p.name: p.read_bytes() for p in sorted(pki.glob("ca.*"))}


def names(pki, host):
    cert = x509.load_pem_x509_certificate((pki / "hosts" / f"{host}.crt").read_bytes())
    san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    return san.get_values_for_type(x509.DNSName), cert


def test_one_key_per_host_a_new_host_signed_alone_a_converged_run_signs_nothing(sign):
    pki, run = sign
    hosts = ["example.org", "auth.example.org", "inst1.example.org"]

    changed, ran, out = run(*hosts, check=True)
    assert changed > 0 and ran == [] and not pki.exists(), "the preview created files"
    assert "Would create the private CA in" in out

    changed, ran, _ = run(*hosts)
    assert changed > 0 and set(ran) == set(PKI_TASKS)
    first = files(pki)
    assert sorted(first) == sorted(["ca.crt", "ca.key"] + [f"{h}.{ext}" for h in hosts for ext in ("crt", "key")])
    ca = x509.load_pem_x509_certificate(first["ca.crt"])
    for host in hosts:
        dns, cert = names(pki, host)
        assert dns == [host]
        cert.verify_directly_issued_by(ca)
    assert len({first[f"{h}.key"] for h in hosts}) == len(hosts), "hosts share a key"

    changed, ran, _ = run(*hosts)
    assert (changed, ran) == (0, []), "a converged run ran PKI modules"

    changed, ran, out = run(*hosts, "inst4.example.org", check=True)
    assert changed > 0 and ran == [] and "of inst4.example.org, then install its TLS Secret" in out
    assert "private CA in" not in out and files(pki) == first

    changed, ran, _ = run(*hosts, "inst4.example.org")
    assert ran == ["Create the key of each host to sign", "Sign the certificate of each host with the private CA"]
    after = files(pki)
    assert {k: v for k, v in after.items() if not k.startswith("inst4.")} == first, "another host's files changed"
    assert names(pki, "inst4.example.org")[0] == ["inst4.example.org"]

    changed, ran, _ = run("example.org", "auth.example.org", "inst4.example.org")
    assert (changed, ran) == (0, []) and files(pki) == after, "removing a host touched the others"


def test_a_certificate_ending_within_the_renewal_window_is_signed_anew_with_the_same_key(sign):
    pki, run = sign
    hosts = ["example.org", "inst1.example.org"]
    run(*hosts, extra=["-e", "ingress_cert_valid_days=10"])
    first = files(pki)
    changed, ran, _ = run(*hosts)                        # 10 days left, renewed within 30
    assert ran == ["Create the key of each host to sign", "Sign the certificate of each host with the private CA"]
    after = files(pki)
    for host in hosts:
        assert after[f"{host}.key"] == first[f"{host}.key"] and after[f"{host}.crt"] != first[f"{host}.crt"]
        assert names(pki, host)[1].not_valid_after_utc > names(pki, host)[1].not_valid_before_utc + datetime.timedelta(days=800)
    assert (after["ca.crt"], after["ca.key"]) == (first["ca.crt"], first["ca.key"])
    assert run(*hosts)[:2] == (0, [])

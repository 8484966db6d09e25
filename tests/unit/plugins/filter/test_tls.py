"""hosts_to_sign: which hosts the private CA must (re)issue a key and certificate for."""
import datetime

import pytest
from ansible.errors import AnsibleFilterError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.superkubernetex.platform.plugins.filter.tls import hosts_to_sign

NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn="test CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW).not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    return key, cert


def issue(ca, names, key=None, days=30):
    ca_key, ca_cert = ca
    key = key or ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def write(tmp_path, ca, hosts):
    """A PKI folder as the ingress role lays it out: ca.crt, hosts/<host>.key and .crt.
    hosts: {host: (key, cert)}."""
    (tmp_path / "ca.crt").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    (tmp_path / "hosts").mkdir(exist_ok=True)
    for host, (key, cert) in hosts.items():
        (tmp_path / "hosts" / f"{host}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (tmp_path / "hosts" / f"{host}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(tmp_path / "ca.crt"), str(tmp_path / "hosts")


HOSTS = ["example.org", "auth.example.org", "inst1.example.org"]


def test_a_converged_folder_has_no_host_to_sign(tmp_path):
    ca = make_ca()
    ca_cert, host_dir = write(tmp_path, ca, {h: issue(ca, [h]) for h in HOSTS})
    assert hosts_to_sign(HOSTS, ca_cert, host_dir) == []


def test_a_new_host_alone_is_to_sign(tmp_path):
    ca = make_ca()
    ca_cert, host_dir = write(tmp_path, ca, {h: issue(ca, [h]) for h in HOSTS})
    assert hosts_to_sign(HOSTS + ["inst4.example.org"], ca_cert, host_dir) == ["inst4.example.org"]


def test_without_the_ca_every_host_is_to_sign(tmp_path):
    assert hosts_to_sign(HOSTS, str(tmp_path / "ca.crt"), str(tmp_path / "hosts")) == HOSTS
    assert hosts_to_sign(HOSTS, "", str(tmp_path / "hosts")) == HOSTS


@pytest.mark.parametrize("case", ["several names", "another name", "another CA", "another key", "no key",
                                  "no certificate", "not PEM", "expired"])
def test_a_pair_that_is_not_current_is_to_sign(tmp_path, case):
    ca = make_ca()
    pairs = {h: issue(ca, [h]) for h in HOSTS}
    host = "auth.example.org"
    if case == "several names":
        pairs[host] = issue(ca, [host, "inst1.example.org"])
    elif case == "another name":
        pairs[host] = issue(ca, ["pay.example.org"])
    elif case == "another CA":
        pairs[host] = issue(make_ca("test CA"), [host])   # same subject, another key: the signature tells
    elif case == "another key":
        pairs[host] = (ec.generate_private_key(ec.SECP256R1()), pairs[host][1])
    elif case == "expired":
        pairs[host] = issue(ca, [host], days=0)
    ca_cert, host_dir = write(tmp_path, ca, pairs)
    if case == "no key":
        (tmp_path / "hosts" / f"{host}.key").unlink()
    elif case == "no certificate":
        (tmp_path / "hosts" / f"{host}.crt").unlink()
    elif case == "not PEM":
        (tmp_path / "hosts" / f"{host}.crt").write_text("garbage")
    assert hosts_to_sign(HOSTS, ca_cert, host_dir) == [host]


def test_a_certificate_ending_within_renew_days_is_to_sign(tmp_path):
    ca = make_ca()
    pairs = {h: issue(ca, [h], days=60) for h in HOSTS}
    pairs["auth.example.org"] = issue(ca, ["auth.example.org"], days=10)
    ca_cert, host_dir = write(tmp_path, ca, pairs)
    assert hosts_to_sign(HOSTS, ca_cert, host_dir) == []
    assert hosts_to_sign(HOSTS, ca_cert, host_dir, 30) == ["auth.example.org"]
    assert hosts_to_sign(HOSTS, ca_cert, host_dir, 90) == HOSTS


def test_it_refuses_what_is_not_a_list_of_host_names(tmp_path):
    with pytest.raises(AnsibleFilterError, match="list of host names"):
        hosts_to_sign("example.org", str(tmp_path / "ca.crt"), str(tmp_path))

# Copyright: SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE)
"""Filter telling which hosts lack a current key and certificate of the private CA."""

from __future__ import annotations

import datetime
import os

from ansible.errors import AnsibleFilterError

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtensionOID
    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False

DOCUMENTATION = r"""
name: hosts_to_sign
short_description: The hosts whose key and certificate the private CA must (re)issue
description:
  - Takes a list of host names and returns, in the same order, those whose
    files under O(host_dir) are not a current pair, read on the control node
    (the controller); an empty list means every host is served as it should.
  - A host is current when C(<host_dir>/<host>.key) and C(<host_dir>/<host>.crt)
    exist, the certificate names that host and no other (subjectAltName),
    was signed by the CA certificate O(ca_cert), holds the public key of
    the key file, and is valid for more than O(renew_days) days still.
  - Every host is returned when O(ca_cert) does not exist.
  - No module runs. The ingress role calls this on every run and runs the
    PKI modules only for the hosts returned (a converged run runs none).
positional: ca_cert, host_dir, renew_days
options:
  _input:
    description: The host names.
    type: list
    elements: str
    required: true
  ca_cert:
    description: Path of the CA certificate (PEM).
    type: path
    required: true
  host_dir:
    description: Folder of the hosts' C(<host>.key) and C(<host>.crt) files.
    type: path
    required: true
  renew_days:
    description: A certificate that ends within this many days is signed anew (0, an expired one only).
    type: int
    default: 0
requirements:
  - cryptography
"""

def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _public_bytes(key):
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _current(host, ca, host_dir, renew_by):
    cert_pem, key_pem = _read(os.path.join(host_dir, f"{host}.crt")), _read(os.path.join(host_dir, f"{host}.key"))
    if cert_pem is None or key_pem is None:
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        names = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        if [str(n).lower() for n in names.get_values_for_type(x509.DNSName)] != [host] or len(names) != 1:
            return False
        cert.verify_directly_issued_by(ca)
        if cert.not_valid_after_utc <= renew_by:
            return False
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return _public_bytes(cert.public_key()) == _public_bytes(key.public_key())


def hosts_to_sign(hosts, ca_cert, host_dir, renew_days=0):
    if not HAS_CRYPTOGRAPHY:
        raise AnsibleFilterError("hosts_to_sign needs the Python 'cryptography' library on the control node")
    if not isinstance(hosts, (list, tuple)) or not all(isinstance(h, str) for h in hosts):
        raise AnsibleFilterError(f"hosts_to_sign takes a list of host names, got {hosts!r}")
    ca_pem = _read(os.path.expanduser(str(ca_cert)))
    try:
        ca = x509.load_pem_x509_certificate(ca_pem) if ca_pem else None
    except ValueError:
        ca = None
    if ca is None:
        return list(hosts)
    try:
        renew_by = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=int(renew_days))
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"hosts_to_sign: renew_days must be a number of days, got {renew_days!r}") from None
    host_dir = os.path.expanduser(str(host_dir))
    return [host for host in hosts if not _current(host.lower(), ca, host_dir, renew_by)]


class FilterModule:
    def filters(self):
        return {"hosts_to_sign": hosts_to_sign}

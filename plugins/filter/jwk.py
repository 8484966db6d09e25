# Copyright: SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE)
"""Filters turning a private signing key into its public JSON Web Key."""

from __future__ import annotations

import base64
import hashlib
import json

from ansible.errors import AnsibleFilterError

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False

DOCUMENTATION = r"""
name: public_jwk
short_description: Public JSON Web Key (with an RFC 7638 thumbprint kid) of a PEM private key
description:
  - Returns the public JWK of an Ed25519 (EdDSA) or RSA (RS256) private key,
    with C(kid) set to the key's RFC 7638 thumbprint, so the same key always
    gets the same kid.
options:
  _input:
    description: The private key in PEM format.
    type: str
    required: true
requirements:
  - cryptography
"""


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_bytes(value):
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def public_jwk(private_pem):
    if not HAS_CRYPTOGRAPHY:
        raise AnsibleFilterError("public_jwk needs the Python 'cryptography' library on the control node")
    try:
        key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    except (ValueError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError(f"public_jwk: not an unencrypted PEM private key ({exc})") from None
    public = key.public_key()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        required = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
        alg = "EdDSA"
    elif isinstance(key, rsa.RSAPrivateKey):
        numbers = public.public_numbers()
        required = {"e": _b64url(_int_bytes(numbers.e)), "kty": "RSA", "n": _b64url(_int_bytes(numbers.n))}
        alg = "RS256"
    else:
        raise AnsibleFilterError("public_jwk supports Ed25519 and RSA keys only")
    thumbprint = hashlib.sha256(json.dumps(required, separators=(",", ":"), sort_keys=True).encode()).digest()
    return dict(required, kid=_b64url(thumbprint)[:16], alg=alg, use="sig")


class FilterModule:
    def filters(self):
        return {"public_jwk": public_jwk}

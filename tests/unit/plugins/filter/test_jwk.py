import base64

import jwt
import pytest
from ansible.errors import AnsibleFilterError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ansible_collections.superkubernetex.platform.plugins.filter.jwk import public_jwk


def _pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.mark.parametrize("key, alg", [
    (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
    (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
])
def test_a_token_signed_with_the_key_verifies_with_the_published_jwk(key, alg):
    jwk = public_jwk(_pem(key))
    assert jwk["alg"] == alg and "d" not in jwk and "p" not in jwk
    token = jwt.encode({"sub": "u1"}, key, algorithm=alg, headers={"kid": jwk["kid"]})
    public = jwt.PyJWK(jwk).key
    assert jwt.decode(token, public, algorithms=[alg])["sub"] == "u1"


def test_the_kid_is_stable_and_differs_between_keys():
    pem = _pem(ed25519.Ed25519PrivateKey.generate())
    assert public_jwk(pem)["kid"] == public_jwk(pem)["kid"]
    assert public_jwk(pem)["kid"] != public_jwk(_pem(ed25519.Ed25519PrivateKey.generate()))["kid"]


def test_rfc7638_thumbprint_example():
    # RFC 8037 appendix A.3: thumbprint of the example Ed25519 key.
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    seed = base64.urlsafe_b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    jwk = public_jwk(_pem(key))
    assert jwk["x"] == x
    assert jwk["kid"] == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"[:16]


def test_garbage_is_refused_with_a_clear_message():
    with pytest.raises(AnsibleFilterError, match="not an unencrypted PEM private key"):
        public_jwk("not a key")

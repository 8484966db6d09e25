"""JWT signing and verification against a JWKS, with key rotation.

The signing key is the Secret's ``current.pem`` (Ed25519 -> EdDSA, RSA ->
RS256) named by ``current.kid``; ``jwks.json`` holds every public key still
accepted. During a rotation it holds two, so a token signed with the previous
key verifies until that key leaves the JWKS. The algorithm is taken from the
key found by ``kid``, never from the token header (no algorithm confusion).
"""
import json
import logging
import threading
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from . import web

ISSUER = "superkubernetex-auth"
LEEWAY_SECONDS = 30

log = logging.getLogger("skx.tokens")


class InvalidToken(Exception):
    pass


def algorithm_for_private_key(key):
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ValueError("RSA signing keys must have at least 2048 bits")
        return "RS256"
    raise ValueError("the signing key must be Ed25519 (EdDSA) or RSA (RS256)")


def algorithm_for_jwk(jwk):
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        return "EdDSA"
    if jwk.get("kty") == "RSA":
        return "RS256"
    raise ValueError(f"unsupported key type in JWKS for kid {jwk.get('kid')!r}")


def load_private_key(pem_bytes):
    key = load_pem_private_key(pem_bytes, password=None)
    return key, algorithm_for_private_key(key)


def parse_jwks(data):
    """kid -> (public key, algorithm) from a JWKS document (bytes or dict)."""
    doc = json.loads(data) if isinstance(data, (bytes, str)) else data
    keys = {}
    for jwk in doc.get("keys", []):
        kid = jwk.get("kid")
        if not kid:
            raise ValueError("every key in the JWKS needs a kid")
        alg = algorithm_for_jwk(jwk)
        keys[kid] = (jwt.PyJWK(jwk, alg).key, alg)
    if not keys:
        raise ValueError("the JWKS holds no key")
    return keys


def sign(claims, private_key, algorithm, kid):
    return jwt.encode(claims, private_key, algorithm=algorithm, headers={"kid": kid})


def verify(token, keys):
    """Claims of a valid token; InvalidToken with the reason otherwise."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"malformed token: {exc}") from None
    if kid not in keys:
        raise InvalidToken(f"unknown key id {kid!r}")
    key, alg = keys[kid]
    try:
        return jwt.decode(token, key, algorithms=[alg], issuer=ISSUER, leeway=LEEWAY_SECONDS,
                          options={"require": ["exp", "iat", "sub", "iss"]})
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None


class RemoteJwks:
    """Verifies tokens with the JWKS that auth publishes (payment, instance).

    The JWKS is cached for CACHE_SECONDS; a token with an unknown kid (a key
    that appeared in a rotation) triggers a refetch, at most every
    REFETCH_SECONDS so forged kids cannot hammer auth.
    """

    CACHE_SECONDS = 60
    REFETCH_SECONDS = 5

    def __init__(self, auth_url):
        self.url = f"{auth_url}/.well-known/jwks.json"
        self._keys = None
        self._fetched = 0.0
        self._lock = threading.Lock()

    def _fetch(self):
        status, doc = web.call("GET", self.url, timeout=3)
        if status != 200 or not isinstance(doc, dict):
            raise web.UpstreamError(f"GET {self.url} answered {status}")
        self._keys = parse_jwks(doc)
        self._fetched = time.monotonic()

    def verify(self, token):
        with self._lock:
            age = time.monotonic() - self._fetched
            if self._keys is None or age > self.CACHE_SECONDS:
                self._fetch()
            try:
                kid = jwt.get_unverified_header(token).get("kid")
            except jwt.PyJWTError as exc:
                raise InvalidToken(f"malformed token: {exc}") from None
            if kid not in self._keys and age > self.REFETCH_SECONDS:
                self._fetch()
            keys = self._keys
        return verify(token, keys)

"""auth: users in superkube, signup and login, JWTs with key rotation.

Endpoints: POST /signup, POST /login, POST /verify,
GET /.well-known/jwks.json; /healthz /readyz /metrics on the operations port.
Passwords are hashed with scrypt (stdlib), tokens signed with the key of the
``auth-jwt`` Secret mounted at JWT_KEYS_DIR.
"""
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
import uuid

from cryptography.hazmat.primitives import serialization
from prometheus_client import Counter

from . import db as dbmod
from . import tokens, web
from .config import ConfigError, env_dir, env_int, secret_dir_snapshot

SIGNUPS = Counter("skx_auth_signups_total", "Accounts created.")
LOGINS = Counter("skx_auth_logins_total", "Login attempts.", ["result"])
VERIFICATIONS = Counter("skx_auth_token_verifications_total", "Tokens checked on /verify.", ["result"])

MIGRATIONS = [
    (1, "users", """
        CREATE TABLE IF NOT EXISTS users (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            email text NOT NULL UNIQUE,
            password_hash text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )"""),
]

# scrypt with 32 MiB of memory per hash (N=2^15, r=8, p=1: twice Django's
# default); about 0.1 s of one core, so a 500m CPU limit still logs users in
# promptly. The parameters are stored with each hash: raising them later
# keeps old hashes valid. At most two hashes run at once, so a burst of
# logins queues instead of pushing the pod past its memory limit.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1
SCRYPT_CONCURRENCY = threading.BoundedSemaphore(2)
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def hash_password(password):
    salt = secrets.token_bytes(16)
    with SCRYPT_CONCURRENCY:
        digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                                maxmem=64 << 20, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(digest)}"


def check_password(password, stored):
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        with SCRYPT_CONCURRENCY:
            actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                    r=int(r), p=int(p), maxmem=64 << 20, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# Login for an unknown email still spends one scrypt, so response times do
# not tell which emails have accounts.
_DUMMY_HASH = None


_PUBLIC_JWK_MEMBERS = {"kty", "crv", "x", "n", "e", "kid", "alg", "use", "key_ops"}


class KeyStore:
    """The mounted ``auth-jwt`` Secret, read on use (rotation needs no
    restart); parsing is cached per file content."""

    def __init__(self, directory):
        self.directory = directory
        self._cache = {}
        self._lock = threading.Lock()

    def _read(self):
        d = secret_dir_snapshot(self.directory)
        files = {}
        for name in ("current.kid", "current.pem", "jwks.json"):
            path = os.path.join(d, name)
            try:
                with open(path, "rb") as f:
                    files[name] = f.read()
            except OSError as exc:
                raise ConfigError(f"JWT_KEYS_DIR: cannot read {name}: {exc.strerror}") from None
        return files

    def load(self):
        files = self._read()
        fingerprint = hashlib.sha256(b"\0".join(files[n] for n in sorted(files))).digest()
        with self._lock:
            if fingerprint in self._cache:
                return self._cache[fingerprint]
        kid = files["current.kid"].decode().strip()
        private_key, alg = tokens.load_private_key(files["current.pem"])
        accepted = tokens.parse_jwks(files["jwks.json"])
        if kid not in accepted:
            raise ConfigError(f"JWT_KEYS_DIR: current.kid {kid!r} is not in jwks.json: "
                              "tokens signed now could not be verified")
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if private_key.public_key().public_bytes(*spki) != accepted[kid][0].public_bytes(*spki):
            raise ConfigError(f"JWT_KEYS_DIR: the jwks.json key {kid!r} is not the public half of current.pem")
        # Publish only public members, whatever else the Secret's file holds.
        public = {"keys": [{k: v for k, v in jwk.items() if k in _PUBLIC_JWK_MEMBERS}
                           for jwk in json.loads(files["jwks.json"])["keys"]]}
        loaded = {"kid": kid, "key": private_key, "alg": alg, "accepted": accepted,
                  "jwks": json.dumps(public, separators=(",", ":")).encode()}
        with self._lock:
            self._cache = {fingerprint: loaded}
        return loaded


def build():
    service = web.service_identity("auth")
    keys = KeyStore(env_dir("JWT_KEYS_DIR", required=True))
    ttl = env_int("JWT_TTL_SECONDS", 3600, 60, 7 * 86400)
    database = dbmod.Database(service)
    app = web.App(service)
    app.on_shutdown.append(database.close)
    global _DUMMY_HASH
    _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))

    app.ready_check("database")(database.ping)
    app.ready_check("signing_keys")(keys.load)

    def credentials(req):
        data = req.json()
        email = str(data.get("email", "")).strip().lower()
        password = data.get("password")
        if not EMAIL_RE.match(email) or len(email) > 254:
            raise web.HTTPError(400, "email must be an email address")
        if not isinstance(password, str) or not 8 <= len(password) <= 1024:
            raise web.HTTPError(400, "password must be a string of 8 to 1024 characters")
        return email, password

    @app.route("POST", "/signup")
    def signup(req):
        email, password = credentials(req)
        hashed = hash_password(password)
        with database.transaction() as conn:
            row = conn.execute(
                "INSERT INTO users (email, password_hash) VALUES (%s, %s) "
                "ON CONFLICT (email) DO NOTHING RETURNING id",
                (email, hashed)).fetchone()
        if row is None:
            raise web.HTTPError(409, "an account with this email already exists")
        SIGNUPS.inc()
        web.log_fields(app.log, logging.INFO, "account created", user_id=str(row["id"]))
        return web.json_response({"id": str(row["id"]), "email": email}, 201)

    @app.route("POST", "/login")
    def login(req):
        email, password = credentials(req)
        with database.transaction() as conn:
            row = conn.execute("SELECT id, password_hash FROM users WHERE email = %s",
                               (email,)).fetchone()
        if row is None:
            check_password(password, _DUMMY_HASH)
            ok = False
        else:
            ok = check_password(password, row["password_hash"])
        if not ok:
            LOGINS.labels(result="denied").inc()
            raise web.HTTPError(401, "wrong email or password")
        current = keys.load()
        now = int(time.time())
        claims = {"sub": str(row["id"]), "email": email, "iss": tokens.ISSUER,
                  "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
        token = tokens.sign(claims, current["key"], current["alg"], current["kid"])
        LOGINS.labels(result="ok").inc()
        web.log_fields(app.log, logging.INFO, "token issued", user_id=claims["sub"], kid=current["kid"])
        return web.json_response({"token": token, "token_type": "Bearer", "expires_in": ttl,
                                  "user": {"id": claims["sub"], "email": email}})

    @app.route("POST", "/verify")
    def verify(req):
        token = req.bearer_token()
        if token is None:
            token = req.json().get("token")
        if not isinstance(token, str) or not token:
            raise web.HTTPError(400, "send the token as 'Authorization: Bearer <token>' or JSON {\"token\": ...}")
        try:
            claims = tokens.verify(token, keys.load()["accepted"])
        except tokens.InvalidToken as exc:
            VERIFICATIONS.labels(result="invalid").inc()
            return web.json_response({"valid": False, "error": str(exc)}, 401)
        VERIFICATIONS.labels(result="valid").inc()
        return web.json_response({"valid": True, "claims": claims})

    @app.route("GET", "/.well-known/jwks.json")
    def jwks(req):
        return web.Response(200, keys.load()["jwks"], "application/json",
                            [("Cache-Control", "max-age=60")])

    return app, lambda: dbmod.migrate(database, "auth", MIGRATIONS)


def main():
    return web.run(build)


if __name__ == "__main__":
    sys.exit(main())

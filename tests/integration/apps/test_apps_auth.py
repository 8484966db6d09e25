"""auth: accounts in superkube, scrypt hashes, JWTs and their rotation."""
import json
import time
import uuid

import jwt
import pytest

from apps_support import Service, jwt_secret, make_key, query, write_secret


def new_email():
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


def test_signup_login_verify(stack):
    email = new_email()
    r = stack.auth.post("/signup", json={"email": email.upper(), "password": "s3cret-pass"})
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    assert r.json()["email"] == email  # stored in lower case

    r = stack.auth.post("/login", json={"email": email, "password": "s3cret-pass"})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    header = jwt.get_unverified_header(token)
    assert header["kid"] == "k1" and header["alg"] == "EdDSA"

    r = stack.auth.post("/verify", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["valid"] is True
    assert r.json()["claims"]["sub"] == user_id and r.json()["claims"]["email"] == email
    assert 0 < r.json()["claims"]["exp"] - time.time() <= 600  # JWT_TTL_SECONDS
    assert stack.auth.post("/verify", json={"token": token}).json()["valid"] is True


def test_passwords_are_stored_as_scrypt_hashes(stack):
    email = new_email()
    stack.auth.post("/signup", json={"email": email, "password": "plain-text-never"})
    (row,) = query(stack.pg, stack.superkube, "SELECT password_hash FROM users WHERE email = %s", (email,))
    stored = row[0]
    assert stored.startswith("scrypt$32768$8$1$")
    assert "plain-text-never" not in stored
    assert "plain-text-never" not in stack.auth.log_text()


@pytest.mark.parametrize("body, status", [
    ({"email": "not-an-email", "password": "long enough"}, 400),
    ({"email": "short@example.com", "password": "short"}, 400),
    ({"email": "x@example.com"}, 400),
])
def test_signup_rejects_bad_input(stack, body, status):
    r = stack.auth.post("/signup", json=body)
    assert r.status_code == status
    assert "error" in r.json()


def test_signup_twice_conflicts_and_bad_logins_are_refused(stack):
    email = new_email()
    assert stack.auth.post("/signup", json={"email": email, "password": "first-pass"}).status_code == 201
    assert stack.auth.post("/signup", json={"email": email, "password": "other-pass"}).status_code == 409
    assert stack.auth.post("/login", json={"email": email, "password": "other-pass"}).status_code == 401
    assert stack.auth.post("/login", json={"email": new_email(), "password": "first-pass"}).status_code == 401
    assert stack.auth.post("/signup", data="not json",
                           headers={"Content-Type": "application/json"}).status_code == 400


def test_tampered_and_foreign_tokens_are_invalid(stack, user_token):
    head, payload, sig = user_token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = "someone-else"
    forged = ".".join([head, jwt.utils.base64url_encode(json.dumps(claims).encode()).decode(), sig])
    r = stack.auth.post("/verify", json={"token": forged})
    assert r.status_code == 401 and r.json()["valid"] is False
    # Signed by a key the JWKS does not hold, under a kid it does hold.
    other_pem, _ = make_key("ed25519", "k1")
    foreign = jwt.encode({**claims, "sub": "x"}, other_pem, algorithm="EdDSA", headers={"kid": "k1"})
    assert stack.auth.post("/verify", json={"token": foreign}).status_code == 401
    # alg=none and HMAC tokens never pass, whatever their kid.
    none_token = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
    assert stack.auth.post("/verify", json={"token": none_token}).status_code == 401
    assert stack.auth.post("/verify", json={"token": "garbage"}).status_code == 401


def test_jwks_publishes_public_keys_only(stack):
    r = stack.auth.get("/.well-known/jwks.json")
    assert r.status_code == 200
    keys = r.json()["keys"]
    assert [k["kid"] for k in keys] == ["k1"]
    assert all("d" not in k and "p" not in k for k in keys)


def test_key_rotation_accepts_the_old_key_during_the_overlap_only(stack, tmp_path):
    """RSA (RS256) key 'old' is replaced by Ed25519 (EdDSA) key 'new'."""
    keys_dir = str(tmp_path / "auth-jwt")
    old_pem, old_jwk = make_key("rsa", "old")
    new_pem, new_jwk = make_key("ed25519", "new")
    write_secret(keys_dir, jwt_secret(old_pem, "old", [old_jwk]))
    auth = Service("auth", {**stack.auth_env, "JWT_KEYS_DIR": keys_dir}, str(tmp_path)).start()
    try:
        email = new_email()
        assert auth.post("/signup", json={"email": email, "password": "rotate-me"}).status_code == 201

        def login():
            r = auth.post("/login", json={"email": email, "password": "rotate-me"})
            assert r.status_code == 200, r.text
            return r.json()["token"]

        def valid(token):
            return auth.post("/verify", json={"token": token}).status_code == 200

        old_token = login()
        assert jwt.get_unverified_header(old_token) == {"alg": "RS256", "kid": "old", "typ": "JWT"}

        # Overlap: sign with the new key, accept both.
        write_secret(keys_dir, jwt_secret(new_pem, "new", [old_jwk, new_jwk]))
        new_token = login()
        assert jwt.get_unverified_header(new_token)["kid"] == "new"
        assert jwt.get_unverified_header(new_token)["alg"] == "EdDSA"
        assert valid(old_token) and valid(new_token)
        assert {k["kid"] for k in auth.get("/.well-known/jwks.json").json()["keys"]} == {"old", "new"}

        # The old key leaves the JWKS: its tokens stop verifying.
        write_secret(keys_dir, jwt_secret(new_pem, "new", [new_jwk]))
        assert not valid(old_token)
        assert "unknown key id" in auth.post("/verify", json={"token": old_token}).json()["error"]
        assert valid(new_token)

        # A Secret whose current key is missing from the JWKS is a broken
        # rotation: auth stops being ready instead of issuing bad tokens.
        write_secret(keys_dir, jwt_secret(old_pem, "old", [new_jwk]))
        r = auth.wait_for("/readyz", 503, 5)
        assert "not in jwks.json" in r.json()["failed"]["signing_keys"]
        write_secret(keys_dir, jwt_secret(new_pem, "new", [new_jwk]))
        auth.wait_for("/readyz", 200, 5)
    finally:
        assert auth.terminate() == 0


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_key_sets_made_by_the_collection_load(tmp_path, kind):
    """The app role builds auth-jwt with the public_jwk filter: auth must
    accept exactly that layout, sign with it and verify its own tokens."""
    from ansible_collections.superkubernetex.platform.plugins.filter.jwk import public_jwk
    from skx_apps import tokens
    from skx_apps.auth import KeyStore

    pem, _ = make_key(kind, "unused")
    jwk = public_jwk(pem.decode())
    write_secret(str(tmp_path / "auth-jwt"),
                 {"current.pem": pem, "current.kid": jwk["kid"], "jwks.json": json.dumps({"keys": [jwk]})})
    loaded = KeyStore(str(tmp_path / "auth-jwt")).load()
    assert loaded["alg"] == jwk["alg"]
    now = int(time.time())
    token = tokens.sign({"sub": "u1", "iss": tokens.ISSUER, "iat": now, "exp": now + 60},
                        loaded["key"], loaded["alg"], loaded["kid"])
    assert tokens.verify(token, loaded["accepted"])["sub"] == "u1"

"""Pure parts of the rotation: step undo, JWT key set, Stripe keys, digests
and SCRAM verifiers (the rollout status is in test_manifest_comparison.py).
The JWT key set is checked with the auth service's own token code
(apps/skx_apps/tokens.py)."""
import json
import time

import pytest

from ansible_collections.superkubernetex.platform.plugins.module_utils.postgres import scram_matches, scram_verifier
from ansible_collections.superkubernetex.platform.plugins.module_utils.rotation import (
    JwtKeys,
    RotationError,
    Step,
    StripeKeys,
    generate_password,
    kid_time,
    run_steps,
    verify_key_set,
)

from skx_apps import tokens  # apps/ is on pytest's pythonpath (pytest.ini)


class MemoryStore:
    def __init__(self, data):
        self.versions = [dict(data)]

    def read(self):
        return dict(self.versions[-1])

    def publish(self, data):
        self.versions.append(dict(data))


def test_failed_step_undoes_done_steps_in_reverse_and_partial_step_itself():
    log = []

    def fail():
        log.append("do c")
        raise ValueError("boom")

    steps = [Step("a", lambda: log.append("do a"), lambda: log.append("undo a")),
             Step("b", lambda: log.append("do b")),
             Step("c", fail, lambda: log.append("undo c"), partial=True),
             Step("d", lambda: log.append("do d"), lambda: log.append("undo d"))]
    with pytest.raises(RotationError) as failure:
        run_steps(steps)
    assert log == ["do a", "do b", "do c", "undo c", "undo a"]
    assert str(failure.value) == "c: boom"
    assert failure.value.done == ["a", "b"] and failure.value.undone == ["c", "a"]


def test_an_undo_that_fails_is_reported_and_the_others_still_run():
    def broken():
        raise OSError("api down")

    steps = [Step("a", lambda: None, lambda: None), Step("b", lambda: None, broken),
             Step("c", lambda: 1 / 0)]
    with pytest.raises(RotationError) as failure:
        run_steps(steps)
    assert failure.value.undone == ["a"]
    assert failure.value.undo_errors == ["b: api down"]


def issue(data, subject="u1"):
    key, alg = tokens.load_private_key(data["current.pem"].encode())
    now = int(time.time())
    claims = {"sub": subject, "iss": tokens.ISSUER, "iat": now, "exp": now + 3600}
    return tokens.sign(claims, key, alg, data["current.kid"])


@pytest.mark.parametrize("algorithm", ["EdDSA", "RS256"])
def test_jwt_rotation_publishes_the_public_key_before_signing_with_it(algorithm):
    first = MemoryStore({})
    run_steps(JwtKeys(algorithm).plan(first.read(), None, first))
    initial = first.read()
    old_token = issue(initial)

    store = MemoryStore(initial)
    rotation = JwtKeys(algorithm)
    names = run_steps(rotation.plan(store.read(), None, store))
    assert len(names) == 3
    original, accept, sign = store.versions
    # Phase 1: every pod learns the new key while the old one still signs.
    assert accept["current.kid"] == original["current.kid"] and accept["current.pem"] == original["current.pem"]
    assert rotation.kid in tokens.parse_jwks(accept["jwks.json"])
    # Phase 2: the new key signs; tokens of the old key still verify.
    assert sign["current.kid"] == rotation.kid and sign["jwks.json"] == accept["jwks.json"]
    keys = tokens.parse_jwks(sign["jwks.json"])
    assert tokens.verify(issue(sign), keys)["sub"] == "u1"
    assert tokens.verify(old_token, keys)["sub"] == "u1"
    assert "PRIVATE" not in sign["jwks.json"] and '"d"' not in sign["jwks.json"]


def test_old_public_keys_leave_once_the_current_key_signed_longer_than_the_token_lifetime():
    clock = [time.time()]
    store = MemoryStore({})
    for dummy in range(3):
        run_steps(JwtKeys(token_ttl=3600, grace=600, now=lambda: clock[0]).plan(store.read(), None, store))
    assert len(json.loads(store.read()["jwks.json"])["keys"]) == 3  # all younger than the token lifetime

    clock[0] += 3600 + 600 + 1
    run_steps(JwtKeys(token_ttl=3600, grace=600, now=lambda: clock[0]).plan(store.read(), None, store))
    kids = [k["kid"] for k in json.loads(store.read()["jwks.json"])["keys"]]
    assert len(kids) == 2 and kids[-1] == store.read()["current.kid"]
    assert abs(kid_time(kids[-1]) - clock[0]) <= 1


def test_a_key_set_without_the_current_key_is_refused():
    store = MemoryStore({})
    run_steps(JwtKeys().plan({}, None, store))
    broken = dict(store.read(), **{"jwks.json": json.dumps({"keys": []})})
    with pytest.raises(RotationError, match="no key"):
        verify_key_set(broken)


def test_stripe_keeps_exactly_the_previous_webhook_secret():
    current = {"secret_key": "sk_test_old", "webhook_secrets": "whsec_b\nwhsec_a\n"}
    data = StripeKeys("sk_test_new", "whsec_c").new_data(current)
    assert data == {"secret_key": "sk_test_new", "webhook_secrets": "whsec_c\nwhsec_b\n"}
    assert StripeKeys(None, "whsec_a").new_data(current)["webhook_secrets"] == "whsec_a\nwhsec_b\n"
    # Installing the same keys again keeps the overlap and changes nothing.
    assert StripeKeys("sk_test_new", "whsec_c").plan(data, None, MemoryStore(data)) == []
    assert StripeKeys(None, "whsec_b").plan(current, None, MemoryStore(current)) == []
    assert StripeKeys("sk_test_old", None).plan(current, None, MemoryStore(current)) == []


def test_stripe_key_is_checked_before_anything_is_published():
    store = MemoryStore({"secret_key": "sk_test_old"})

    def refuse(key):
        raise RotationError("the Stripe API refused the new secret key (HTTP 401)")

    with pytest.raises(RotationError):
        run_steps(StripeKeys("sk_test_bad", None, refuse).plan(store.read(), None, store))
    assert len(store.versions) == 1


def test_generated_passwords_are_long_and_plain():
    values = {generate_password() for dummy in range(50)}
    assert len(values) == 50 and all(len(v) == 32 and v.isalnum() for v in values)


def test_scram_verifier_matches_only_its_password():
    verifier = scram_verifier("correct horse")
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert scram_matches(verifier, "correct horse")
    assert not scram_matches(verifier, "correct horsE")
    assert not scram_matches("md5abc", "correct horse") and not scram_matches(None, "x")

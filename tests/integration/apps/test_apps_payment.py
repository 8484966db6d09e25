"""payment: plans, Checkout Sessions through stripe-mock, and the webhook's
Stripe-Signature check (every v1 entry, 300 s tolerance, several secrets)."""
import json
import os
import time
import uuid

import pytest

from apps_support import completed_event, post_event, query, write_secret
from skx_apps.payment import SignatureError, stripe_signature_header, verify_stripe_signature


def subscription_rows(stack, session_id):
    return query(stack.pg, stack.superkube,
                 "SELECT user_id, plan_id, status FROM subscriptions WHERE stripe_checkout_session_id = %s",
                 (session_id,))


@pytest.fixture
def webhook_secrets(stack):
    """Set the payment-stripe Secret's webhook_secrets; restored afterwards."""
    directory = stack.secret("payment-stripe")
    with open(os.path.join(directory, "secret_key")) as f:
        secret_key = f.read()

    def set_secrets(*values):
        write_secret(directory, {"secret_key": secret_key, "webhook_secrets": "\n".join(values) + "\n"})
    yield set_secrets
    set_secrets(stack.webhook_secret)


# -------------------------------------------------- the signature check itself
SECRET = "whsec_test_secret"
BODY = b'{"id":"evt_1","type":"ping"}'


def test_signature_check_accepts_any_matching_v1_entry():
    header = stripe_signature_header(BODY, SECRET, timestamp=1_700_000_000)
    t, v1 = header.split(",")
    verify_stripe_signature(BODY, header, [SECRET], now=1_700_000_000)
    # Several v1 entries (Stripe sends one per active secret): one is enough,
    # in any position; v0 entries and unknown schemes are ignored.
    verify_stripe_signature(BODY, f"{t},v1={'0' * 64},{v1},v0=abc", [SECRET], now=1_700_000_000)
    verify_stripe_signature(BODY, header, ["whsec_other", SECRET], now=1_700_000_000 + 300)


@pytest.mark.parametrize("header, now, reason", [
    (None, 1_700_000_000, "missing"),
    ("v1=abcdef", 1_700_000_000, "no valid timestamp"),
    ("t=1700000000", 1_700_000_000, "no v1 signature"),
    ("t=1700000000,v0=" + "0" * 64, 1_700_000_000, "no v1 signature"),
    ("t=1700000000,v1=" + "0" * 64, 1_700_000_000, "no v1 signature matches"),
    ("sign", 1_700_000_301, "more than 300 seconds"),
    ("sign", 1_699_999_699, "more than 300 seconds"),
])
def test_signature_check_rejects(header, now, reason):
    if header == "sign":
        header = stripe_signature_header(BODY, SECRET, timestamp=1_700_000_000)
    with pytest.raises(SignatureError, match=reason):
        verify_stripe_signature(BODY, header or "", [SECRET], now=now)


# ------------------------------------------------------------ through HTTP
def test_plans_are_listed(stack):
    r = stack.payment.get("/plans")
    assert r.status_code == 200
    assert [p["id"] for p in r.json()["plans"]] == ["basic", "pro"]


def test_checkout_needs_a_valid_token(stack):
    assert stack.payment.post("/checkout", json={"plan": "pro"}).status_code == 401
    r = stack.payment.post("/checkout", json={"plan": "pro"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


def test_checkout_creates_a_stripe_session(stack, user_token):
    r = stack.payment.post("/checkout", json={"plan": "pro"}, headers={"Authorization": f"Bearer {user_token}"})
    assert r.status_code == 201, r.text
    session = r.json()
    assert session["id"].startswith("cs_") and session["url"].startswith("https://checkout.stripe.com/")
    rows = query(stack.pg, stack.superkube, "SELECT plan_id FROM checkouts WHERE session_id = %s",
                 (session["id"],))
    assert rows == [("pro",)]
    r = stack.payment.post("/checkout", json={"plan": "gold"}, headers={"Authorization": f"Bearer {user_token}"})
    assert r.status_code == 400 and "plan" in r.json()["error"]


def test_a_signed_webhook_records_the_subscription_once(stack):
    session_id, user_id = f"cs_test_{uuid.uuid4().hex}", str(uuid.uuid4())
    payload = completed_event(session_id, user_id, "basic")
    r = post_event(stack, payload, stripe_signature_header(payload, stack.webhook_secret))
    assert r.status_code == 200, r.text
    assert r.json()["result"] == "subscribed"
    assert subscription_rows(stack, session_id) == [(user_id, "basic", "active")]
    # Stripe retries deliveries: the same event changes nothing.
    again = post_event(stack, payload, stripe_signature_header(payload, stack.webhook_secret))
    assert again.json()["result"] == "duplicate"
    assert len(subscription_rows(stack, session_id)) == 1


@pytest.mark.parametrize("case", ["tampered", "expired", "unknown_secret", "missing"])
def test_webhooks_with_bad_signatures_change_nothing(stack, case):
    session_id = f"cs_test_{uuid.uuid4().hex}"
    payload = completed_event(session_id, str(uuid.uuid4()), "pro")
    header = stripe_signature_header(payload, stack.webhook_secret)
    if case == "tampered":
        payload = payload.replace(b'"pro"', b'"basic"')
    elif case == "expired":
        header = stripe_signature_header(payload, stack.webhook_secret, timestamp=time.time() - 301)
    elif case == "unknown_secret":
        header = stripe_signature_header(payload, "whsec_" + uuid.uuid4().hex)
    else:
        header = None
    r = post_event(stack, payload, header)
    assert r.status_code == 400
    assert subscription_rows(stack, session_id) == []
    assert query(stack.pg, stack.superkube, "SELECT count(*) FROM stripe_events WHERE id = %s",
                 (json.loads(payload)["id"],)) == [(0,)]


def test_webhook_secret_rotation(stack, webhook_secrets):
    old, new = stack.webhook_secret, "whsec_" + uuid.uuid4().hex
    # Overlap: both secrets configured, events signed with either pass.
    webhook_secrets(old, new)
    for secret in (old, new):
        session_id = f"cs_test_{uuid.uuid4().hex}"
        payload = completed_event(session_id, str(uuid.uuid4()), "pro")
        r = post_event(stack, payload, stripe_signature_header(payload, secret))
        assert r.status_code == 200, (secret == old, r.text)
        assert len(subscription_rows(stack, session_id)) == 1
    # After the rotation, the old secret is refused.
    webhook_secrets(new)
    session_id = f"cs_test_{uuid.uuid4().hex}"
    payload = completed_event(session_id, str(uuid.uuid4()), "pro")
    assert post_event(stack, payload, stripe_signature_header(payload, old)).status_code == 400
    assert post_event(stack, payload, stripe_signature_header(payload, new)).status_code == 200


def test_webhook_for_an_unknown_plan_is_refused(stack):
    session_id = f"cs_test_{uuid.uuid4().hex}"
    payload = completed_event(session_id, str(uuid.uuid4()), "platinum")
    r = post_event(stack, payload, stripe_signature_header(payload, stack.webhook_secret))
    assert r.status_code == 400 and "platinum" in r.json()["error"]
    assert subscription_rows(stack, session_id) == []


def test_secrets_never_reach_the_logs(stack):
    text = stack.payment.log_text()
    assert stack.webhook_secret not in text
    with open(os.path.join(stack.secret("payment-stripe"), "secret_key")) as f:
        assert f.read() not in text

"""frontend: pages, Redis sessions, and the whole path a customer takes:
sign up -> log in -> choose a plan -> Stripe Checkout (stripe-mock) ->
signed webhook -> subscription row in superkube."""
import re
import uuid

import redis

from apps_support import completed_event, post_event, query
from skx_apps.payment import stripe_signature_header

SESSION_PREFIX = "skx:session:"


def session_id(response):
    match = re.search(r"skx_session=([^;]*)", response.headers.get("Set-Cookie", ""))
    assert match, f"no session cookie in {response.headers}"
    return match.group(1)


def test_pages_render(stack):
    for path in ("/", "/login", "/signup", "/plans", "/billing/success", "/billing/cancel"):
        r = stack.frontend.get(path)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["Content-Type"].startswith("text/html")
        assert "<!doctype html>" in r.text
    assert "Choose Pro" in stack.frontend.get("/plans").text
    missing = stack.frontend.get("/no-such-page", headers={"X-Request-ID": "ref-123"})
    assert missing.status_code == 404 and "Reference: ref-123" in missing.text
    # Pages that need a session send the visitor to log in.
    assert stack.frontend.get("/account").headers["Location"] == "/login"
    assert stack.frontend.post("/subscribe", data={"plan": "pro"}).headers["Location"] == "/login"


def test_wrong_password_shows_the_form_again(stack):
    r = stack.frontend.post("/login", data={"email": "nobody@example.com", "password": "wrong-pass"})
    assert r.status_code == 401
    assert "Wrong email or password" in r.text
    assert "Set-Cookie" not in r.headers


def test_signup_to_subscription(stack):
    store = redis.Redis.from_url(stack.redis.url())
    email = f"customer-{uuid.uuid4().hex[:8]}@example.com"
    flow_id = f"flow-{uuid.uuid4().hex}"

    # Sign up through the form: signed in at once, session in Redis.
    r = stack.frontend.post("/signup", data={"email": email, "password": "checkout-pass"},
                            headers={"X-Request-ID": flow_id})
    assert r.status_code == 303 and r.headers["Location"] == "/plans", r.text
    sid = session_id(r)
    assert "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Lax" in r.headers["Set-Cookie"]
    assert 0 < store.ttl(SESSION_PREFIX + sid) <= 3600
    # One request id follows the request through frontend and auth.
    assert any(e.get("request_id") == flow_id and e["msg"] == "account created"
               for e in stack.auth.log_entries())
    cookies = {"skx_session": sid}
    assert email in stack.frontend.get("/", cookies=cookies).text

    # Log out and in again: a new session replaces the deleted one.
    stack.frontend.post("/logout", cookies=cookies)
    assert store.exists(SESSION_PREFIX + sid) == 0
    assert email not in stack.frontend.get("/", cookies=cookies).text
    r = stack.frontend.post("/login", data={"email": email, "password": "checkout-pass"})
    assert r.status_code == 303
    cookies = {"skx_session": session_id(r)}

    # Choosing a plan redirects to the Checkout Session's URL.
    r = stack.frontend.post("/subscribe", data={"plan": "pro"}, cookies=cookies)
    assert r.status_code == 303, r.text
    assert r.headers["Location"].startswith("https://checkout.stripe.com/")
    ((checkout_session, user_id),) = query(
        stack.pg, stack.superkube,
        "SELECT c.session_id, c.user_id FROM checkouts c WHERE c.user_id = "
        "(SELECT id::text FROM users WHERE email = %s)", (email,))

    # Stripe confirms the payment with a signed webhook.
    payload = completed_event(checkout_session, user_id, "pro")
    r = post_event(stack, payload, stripe_signature_header(payload, stack.webhook_secret))
    assert r.status_code == 200, r.text
    rows = query(stack.pg, stack.superkube,
                 "SELECT s.plan_id, s.status FROM subscriptions s JOIN users u ON u.id::text = s.user_id "
                 "WHERE u.email = %s", (email,))
    assert rows == [("pro", "active")]
    assert "pro: active" in stack.frontend.get("/account", cookies=cookies).text

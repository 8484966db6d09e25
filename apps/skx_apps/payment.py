"""payment: plans, Stripe Checkout Sessions and the Stripe webhook.

Endpoints: GET /plans, POST /checkout (Bearer JWT from auth),
GET /subscriptions (Bearer JWT), POST /webhook (Stripe-Signature),
/healthz /readyz /metrics on the operations port. Tables in superkube: plans, checkouts,
subscriptions, stripe_events.
"""
import hashlib
import hmac
import logging
import sys
import time
import uuid

import psycopg
from prometheus_client import Counter

from . import db as dbmod
from . import tokens, web
from .config import env_str, env_url, read_secret_file, read_secret_lines

CHECKOUTS = Counter("skx_payment_checkout_sessions_total", "Checkout Sessions requested.", ["result"])
WEBHOOKS = Counter("skx_payment_webhooks_total", "Stripe webhook deliveries.", ["result"])

# Stripe's documented default: reject events signed more than 5 minutes away.
SIGNATURE_TOLERANCE_SECONDS = 300

MIGRATIONS = [
    (1, "plans, checkouts, subscriptions, stripe events", """
        CREATE TABLE IF NOT EXISTS plans (
            id text PRIMARY KEY,
            name text NOT NULL,
            amount_cents integer NOT NULL CHECK (amount_cents >= 0),
            currency text NOT NULL DEFAULT 'eur',
            billing_interval text NOT NULL DEFAULT 'month',
            stripe_price_id text NOT NULL
        );
        INSERT INTO plans (id, name, amount_cents, stripe_price_id) VALUES
            ('basic', 'Basic', 900, 'price_skx_basic_monthly'),
            ('pro', 'Pro', 2900, 'price_skx_pro_monthly')
        ON CONFLICT (id) DO NOTHING;
        CREATE TABLE IF NOT EXISTS checkouts (
            session_id text PRIMARY KEY,
            user_id text NOT NULL,
            plan_id text NOT NULL REFERENCES plans (id),
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS subscriptions (
            id bigserial PRIMARY KEY,
            -- users live in the same database but belong to auth (which may
            -- log in as another role): the id is kept, not a foreign key.
            user_id text NOT NULL,
            plan_id text NOT NULL REFERENCES plans (id),
            status text NOT NULL,
            stripe_checkout_session_id text UNIQUE,
            stripe_subscription_id text,
            stripe_customer_id text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS subscriptions_user_id ON subscriptions (user_id);
        CREATE TABLE IF NOT EXISTS stripe_events (
            id text PRIMARY KEY,
            type text NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now()
        )"""),
]


class SignatureError(Exception):
    pass


def verify_stripe_signature(payload, header, secrets, now=None,
                            tolerance=SIGNATURE_TOLERANCE_SECONDS):
    """Check a Stripe-Signature header as Stripe documents it.

    The header is ``t=<unix time>,v1=<hex>[,v1=<hex>...][,v0=...]``. The
    signed string is ``<t>.<raw body>``, HMAC-SHA256 with the endpoint's
    secret. Every ``v1`` entry is compared (constant time) against every
    configured secret (several during a rotation); other schemes are
    ignored. Then the timestamp must be within ``tolerance`` seconds.
    """
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp, signatures = None, []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value.encode("utf-8", "replace"))
    if timestamp is None or not timestamp.isdigit():
        raise SignatureError("Stripe-Signature has no valid timestamp")
    if not signatures:
        raise SignatureError("Stripe-Signature has no v1 signature")
    if not secrets:
        raise SignatureError("no webhook secret is configured")
    signed = timestamp.encode() + b"." + payload
    expected = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest().encode() for s in secrets]
    # Compare all pairs without stopping early: timing does not reveal which.
    matched = False
    for candidate in expected:
        for signature in signatures:
            matched |= hmac.compare_digest(candidate, signature)
    if not matched:
        raise SignatureError("no v1 signature matches a configured webhook secret")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureError(f"timestamp is more than {tolerance} seconds away from now")


def stripe_signature_header(payload, secret, timestamp=None):
    """The header Stripe would send (for tests and local tooling)."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def build():
    service = web.service_identity("payment")
    api_base = env_url("STRIPE_API_BASE", "https://api.stripe.com")
    key_file = env_str("STRIPE_SECRET_KEY_FILE", required=True)
    secrets_file = env_str("STRIPE_WEBHOOK_SECRETS_FILE", required=True)
    success_url = env_url("CHECKOUT_SUCCESS_URL", required=True)
    cancel_url = env_url("CHECKOUT_CANCEL_URL", required=True)
    jwks = tokens.RemoteJwks(env_url("AUTH_URL", "http://auth.skx-app.svc:8080"))
    # Fail at start when a Secret file is missing, not at the first payment.
    read_secret_file(key_file, "STRIPE_SECRET_KEY_FILE")
    read_secret_lines(secrets_file, "STRIPE_WEBHOOK_SECRETS_FILE")
    database = dbmod.Database(service)
    app = web.App(service)
    app.on_shutdown.append(database.close)
    app.ready_check("database")(database.ping)

    def user_from_token(req):
        token = req.bearer_token()
        if token is None:
            raise web.HTTPError(401, "send 'Authorization: Bearer <token>' from auth's /login")
        try:
            return jwks.verify(token)
        except tokens.InvalidToken as exc:
            raise web.HTTPError(401, f"invalid token: {exc}") from None

    @app.route("GET", "/plans")
    def plans(req):
        with database.transaction() as conn:
            rows = conn.execute(
                "SELECT id, name, amount_cents, currency, billing_interval FROM plans ORDER BY amount_cents").fetchall()
        return web.json_response({"plans": rows})

    @app.route("POST", "/checkout")
    def checkout(req):
        user = user_from_token(req)
        plan_id = req.json().get("plan")
        with database.transaction() as conn:
            plan = conn.execute("SELECT id, stripe_price_id FROM plans WHERE id = %s",
                                (plan_id if isinstance(plan_id, str) else "",)).fetchone()
        if plan is None:
            raise web.HTTPError(400, "plan must be the id of a plan from GET /plans")
        form = {
            "mode": "subscription",
            "line_items[0][price]": plan["stripe_price_id"],
            "line_items[0][quantity]": "1",
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": user["sub"],
            "metadata[user_id]": user["sub"],
            "metadata[plan]": plan["id"],
            "subscription_data[metadata][user_id]": user["sub"],
            "subscription_data[metadata][plan]": plan["id"],
        }
        if user.get("email"):
            form["customer_email"] = user["email"]
        secret_key = read_secret_file(key_file, "STRIPE_SECRET_KEY_FILE")
        status, session = web.call(
            "POST", f"{api_base}/v1/checkout/sessions", form, form=True, timeout=10,
            headers={"Authorization": f"Bearer {secret_key}",
                     "Idempotency-Key": uuid.uuid4().hex})
        if status != 200 or not isinstance(session, dict) or not session.get("url"):
            CHECKOUTS.labels(result="error").inc()
            error = (session or {}).get("error", {}) if isinstance(session, dict) else {}
            web.log_fields(app.log, logging.ERROR, "Stripe refused the Checkout Session",
                           status=status, stripe_error=error.get("type"), stripe_message=error.get("message"))
            raise web.HTTPError(502, "the payment provider did not create a checkout session")
        with database.transaction() as conn:
            conn.execute("INSERT INTO checkouts (session_id, user_id, plan_id) VALUES (%s, %s, %s) "
                         "ON CONFLICT (session_id) DO NOTHING", (session["id"], user["sub"], plan["id"]))
        CHECKOUTS.labels(result="created").inc()
        web.log_fields(app.log, logging.INFO, "checkout session created", user_id=user["sub"],
                       plan=plan["id"], session_id=session["id"])
        return web.json_response({"id": session["id"], "url": session["url"]}, 201)

    @app.route("GET", "/subscriptions")
    def subscriptions(req):
        user = user_from_token(req)
        with database.transaction() as conn:
            rows = conn.execute(
                "SELECT plan_id AS plan, status, created_at::text FROM subscriptions "
                "WHERE user_id = %s ORDER BY created_at", (user["sub"],)).fetchall()
        return web.json_response({"subscriptions": rows})

    @app.route("POST", "/webhook", max_body=512 << 10)
    def webhook(req):
        secrets = read_secret_lines(secrets_file, "STRIPE_WEBHOOK_SECRETS_FILE")
        try:
            verify_stripe_signature(req.body, req.headers.get("Stripe-Signature", ""), secrets)
        except SignatureError as exc:
            WEBHOOKS.labels(result="bad_signature").inc()
            web.log_fields(app.log, logging.WARNING, "webhook rejected", reason=str(exc))
            raise web.HTTPError(400, str(exc)) from None
        event = req.json()
        event_id, event_type = event.get("id"), event.get("type")
        obj = (event.get("data") or {}).get("object") or {}
        if not isinstance(event_id, str) or not isinstance(event_type, str) or not isinstance(obj, dict):
            raise web.HTTPError(400, "the event needs an id, a type and data.object")
        with database.transaction() as conn:
            fresh = conn.execute("INSERT INTO stripe_events (id, type) VALUES (%s, %s) "
                                 "ON CONFLICT (id) DO NOTHING RETURNING id", (event_id, event_type)).fetchone()
            if fresh is None:
                result = "duplicate"
            elif event_type == "checkout.session.completed":
                result = record_subscription(conn, obj)
            elif event_type == "customer.subscription.deleted":
                conn.execute("UPDATE subscriptions SET status = 'canceled', updated_at = now() "
                             "WHERE stripe_subscription_id = %s", (obj.get("id"),))
                result = "canceled"
            else:
                result = "ignored"
        WEBHOOKS.labels(result=result).inc()
        web.log_fields(app.log, logging.INFO, "webhook processed", event_id=event_id,
                       event_type=event_type, result=result)
        return web.json_response({"received": True, "result": result})

    def record_subscription(conn, session):
        metadata = session.get("metadata") or {}
        user_id = session.get("client_reference_id") or metadata.get("user_id")
        plan_id = metadata.get("plan")
        if not user_id or not plan_id:
            known = conn.execute("SELECT user_id, plan_id FROM checkouts WHERE session_id = %s",
                                 (session.get("id"),)).fetchone()
            if known is None:
                raise web.HTTPError(400, "the session names no user and plan, and no checkout matches its id")
            user_id, plan_id = user_id or known["user_id"], plan_id or known["plan_id"]
        try:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO subscriptions (user_id, plan_id, status, stripe_checkout_session_id,"
                    " stripe_subscription_id, stripe_customer_id) VALUES (%s, %s, 'active', %s, %s, %s)"
                    " ON CONFLICT (stripe_checkout_session_id) DO NOTHING",
                    (str(user_id), plan_id, session.get("id"), _stripe_id(session.get("subscription")),
                     _stripe_id(session.get("customer"))))
        except psycopg.errors.ForeignKeyViolation:
            raise web.HTTPError(400, f"unknown plan {plan_id!r}") from None
        return "subscribed"

    return app, lambda: dbmod.migrate(database, "payment", MIGRATIONS)


def _stripe_id(value):
    """Stripe fields are an id or, when expanded, an object with one."""
    return value.get("id") if isinstance(value, dict) else value


def main():
    return web.run(build)


if __name__ == "__main__":
    sys.exit(main())

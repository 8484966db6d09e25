"""frontend: server-rendered pages, sessions in Redis, auth and payment behind.

Pages: / (home), /signup, /login, /logout, /plans, /subscribe (POST: redirects
to the Stripe Checkout URL), /account, /billing/success, /billing/cancel (the CHECKOUT_*_URL pages).
The session cookie holds only a random id; the JWT and email live in Redis
under ``skx:session:<id>``.
"""
import html
import json
import logging
import secrets
import sys
import threading

import redis
import redis.sentinel
from prometheus_client import Counter

from . import web
from .config import ConfigError, env_int, env_str, env_url, read_secret_file

SESSION_COOKIE = "skx_session"
SESSION_PREFIX = "skx:session:"
SESSION_TTL_SECONDS = 3600
LOGINS = Counter("skx_frontend_logins_total", "Sign-ins through the frontend.", ["result"])


def sentinel_addresses(value):
    """REDIS_SENTINEL: one or more host:port, comma-separated, as a list of
    (host, port) for redis.sentinel.Sentinel."""
    addresses = []
    for item in value.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"REDIS_SENTINEL must be host:port[,host:port...], got {value!r}")
        addresses.append((host, int(port)))
    return addresses


class Sessions:
    """Redis-backed sessions. The password is read from its Secret file
    when a client is built and again after an authentication error, so a
    rotated Redis password is picked up without a restart.

    With REDIS_SENTINEL (and REDIS_SENTINEL_MASTER, the primary's name) the
    client asks the Sentinels for the primary, with the same password, and
    asks again after a failover; REDIS_HOST is then not used."""

    def __init__(self):
        sentinel = env_str("REDIS_SENTINEL")
        self.sentinels = sentinel_addresses(sentinel) if sentinel else None
        self.master = env_str("REDIS_SENTINEL_MASTER", required=bool(sentinel))
        self.host = env_str("REDIS_HOST", required=not sentinel)
        self.port = env_int("REDIS_PORT", 6379, 1, 65535)
        self.password_file = env_str("REDIS_PASSWORD_FILE", required=True)
        read_secret_file(self.password_file, "REDIS_PASSWORD_FILE")
        self._client = None
        self._lock = threading.Lock()

    def _build(self):
        password = read_secret_file(self.password_file, "REDIS_PASSWORD_FILE") or None
        timeouts = dict(socket_timeout=2, socket_connect_timeout=2)
        if self.sentinels:
            sentinel = redis.sentinel.Sentinel(self.sentinels, sentinel_kwargs=dict(timeouts, password=password),
                                               password=password, health_check_interval=30, **timeouts)
            return sentinel.master_for(self.master)
        return redis.Redis(host=self.host, port=self.port, password=password,
                           health_check_interval=30, **timeouts)

    def _do(self, op):
        with self._lock:
            if self._client is None:
                self._client = self._build()
            client = self._client
        try:
            return op(client)
        except redis.AuthenticationError:
            with self._lock:
                self._client = self._build()
                client = self._client
            return op(client)

    def ping(self):
        self._do(lambda r: r.ping())

    def create(self, data):
        sid = secrets.token_urlsafe(32)
        self._do(lambda r: r.set(SESSION_PREFIX + sid, json.dumps(data), ex=SESSION_TTL_SECONDS))
        return sid

    def get(self, sid):
        if not sid or len(sid) > 100:
            return None
        raw = self._do(lambda r: r.get(SESSION_PREFIX + sid))
        return json.loads(raw) if raw else None

    def delete(self, sid):
        if sid:
            self._do(lambda r: r.delete(SESSION_PREFIX + sid))

    def close(self):
        if self._client is not None:
            self._client.close()


def page(title, body, user=None):
    nav = ('<a href="/">Home</a> · <a href="/plans">Plans</a> · ' +
           (f'<a href="/account">{html.escape(user["email"])}</a> · '
            '<form method="post" action="/logout" style="display:inline">'
            '<button>Log out</button></form>'
            if user else '<a href="/login">Log in</a> · <a href="/signup">Sign up</a>'))
    return web.html_response(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · superkube</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><header><strong>superkube</strong> <nav>{nav}</nav></header>
<main><h1>{html.escape(title)}</h1>{body}</main></body></html>
""")


def credentials_form(action, label, error=None):
    err = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return (f'{err}<form method="post" action="{action}">'
            '<label>Email <input type="email" name="email" required></label> '
            '<label>Password <input type="password" name="password" minlength="8" required></label> '
            f'<button>{label}</button></form>')


def build():
    service = web.service_identity("frontend")
    auth_url = env_url("AUTH_URL", "http://auth.skx-app.svc:8080")
    payment_url = env_url("PAYMENT_URL", "http://payment.skx-app.svc:8080")
    sessions = Sessions()
    app = web.App(service)
    app.on_shutdown.append(sessions.close)
    app.ready_check("redis")(sessions.ping)

    def error_page(req, status, message, extra):
        # People read these pages: HTML, with the id to quote to support.
        resp = page("Something went wrong" if status >= 500 else "Not available",
                    f"<p>{html.escape(message)}</p><p><small>Reference: {html.escape(req.request_id)}"
                    "</small></p>")
        resp.status = status
        return resp
    app.error_response = error_page

    def current_user(req):
        return sessions.get(req.cookies.get(SESSION_COOKIE))

    def cookie(req, sid, max_age=SESSION_TTL_SECONDS):
        # Secure when the client came over TLS (the ingress says so).
        secure = "; Secure" if req.headers.get("X-Forwarded-Proto") == "https" else ""
        return ("Set-Cookie", f"{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax; "
                              f"Max-Age={max_age}{secure}")

    def sign_in(req, email, password):
        status, body = web.call("POST", f"{auth_url}/login", {"email": email, "password": password})
        if status != 200:
            LOGINS.labels(result="denied").inc()
            return None
        LOGINS.labels(result="ok").inc()
        sid = sessions.create({"user_id": body["user"]["id"], "email": body["user"]["email"],
                               "token": body["token"]})
        return web.redirect("/plans", headers=[cookie(req, sid)])

    @app.route("GET", "/")
    def home(req):
        user = current_user(req)
        if user:
            body = (f'<p>Signed in as {html.escape(user["email"])}.</p>'
                    '<p><a href="/plans">Choose a plan</a></p>')
        else:
            body = '<p><a href="/signup">Create an account</a> or <a href="/login">log in</a>.</p>'
        return page("Welcome", body, user)

    @app.route("GET", "/signup")
    def signup_form(req):
        return page("Sign up", credentials_form("/signup", "Create account"), current_user(req))

    @app.route("POST", "/signup")
    def signup(req):
        form = req.form()
        email, password = form.get("email", ""), form.get("password", "")
        status, body = web.call("POST", f"{auth_url}/signup", {"email": email, "password": password})
        if status != 201:
            message = (body or {}).get("error", "sign-up failed") if isinstance(body, dict) else "sign-up failed"
            return page("Sign up", credentials_form("/signup", "Create account", message), None)
        return sign_in(req, email, password) or web.redirect("/login")

    @app.route("GET", "/login")
    def login_form(req):
        return page("Log in", credentials_form("/login", "Log in"), current_user(req))

    @app.route("POST", "/login")
    def login(req):
        form = req.form()
        done = sign_in(req, form.get("email", ""), form.get("password", ""))
        if done is None:
            resp = page("Log in", credentials_form("/login", "Log in", "Wrong email or password."))
            resp.status = 401
            return resp
        return done

    @app.route("POST", "/logout")
    def logout(req):
        sessions.delete(req.cookies.get(SESSION_COOKIE))
        return web.redirect("/", headers=[cookie(req, "", 0)])

    @app.route("GET", "/plans")
    def plans(req):
        user = current_user(req)
        status, body = web.call("GET", f"{payment_url}/plans")
        if status != 200:
            raise web.UpstreamError(f"payment /plans answered {status}")
        items = "".join(
            f'<li><form method="post" action="/subscribe"><strong>{html.escape(p["name"])}</strong> '
            f'{p["amount_cents"] / 100:.2f} {html.escape(p["currency"].upper())} / {html.escape(p["billing_interval"])} '
            f'<input type="hidden" name="plan" value="{html.escape(p["id"])}">'
            f'<button>Choose {html.escape(p["name"])}</button></form></li>'
            for p in body["plans"])
        hint = "" if user else '<p><a href="/login">Log in</a> to subscribe.</p>'
        return page("Plans", f"{hint}<ul>{items}</ul>", user)

    @app.route("POST", "/subscribe")
    def subscribe(req):
        user = current_user(req)
        if not user:
            return web.redirect("/login")
        plan = req.form().get("plan", "")
        status, body = web.call("POST", f"{payment_url}/checkout", {"plan": plan},
                                headers={"Authorization": f"Bearer {user['token']}"}, timeout=15)
        if status == 401:
            sessions.delete(req.cookies.get(SESSION_COOKIE))
            return web.redirect("/login", headers=[cookie(req, "", 0)])
        if status != 201:
            web.log_fields(app.log, logging.WARNING, "checkout failed", status=status)
            resp = page("Plans", '<p role="alert">The checkout could not be started. Try again later.</p>', user)
            resp.status = 502 if status >= 500 else 400
            return resp
        return web.redirect(body["url"])

    @app.route("GET", "/account")
    def account(req):
        user = current_user(req)
        if not user:
            return web.redirect("/login")
        status, body = web.call("GET", f"{payment_url}/subscriptions",
                                headers={"Authorization": f"Bearer {user['token']}"})
        subs = body.get("subscriptions", []) if status == 200 and isinstance(body, dict) else []
        items = "".join(f"<li>{html.escape(s['plan'])}: {html.escape(s['status'])}</li>" for s in subs)
        return page("Your account", f"<p>{html.escape(user['email'])}</p>"
                    f"<h2>Subscriptions</h2><ul>{items or '<li>none yet</li>'}</ul>", user)

    @app.route("GET", "/billing/success")
    def success(req):
        return page("Thank you", '<p>Your subscription starts as soon as the payment is confirmed. '
                    '<a href="/account">Your account</a></p>', current_user(req))

    @app.route("GET", "/billing/cancel")
    def cancel(req):
        return page("Checkout cancelled", '<p><a href="/plans">Back to the plans</a></p>', current_user(req))

    return app, None


def main():
    return web.run(build)


if __name__ == "__main__":
    sys.exit(main())

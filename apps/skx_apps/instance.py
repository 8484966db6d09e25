"""instance: one tenant's site; pages and asset records in its own database
(``<instance>_db``), asset bytes on its own volume (FILES_DIR).

It names itself (INSTANCE_NAME) in every response (header ``X-Instance``
and the pages), in every log line and in the ``instance`` metric label.
Reads are public; writes (PUT /api/pages/<slug>, PUT /api/assets/<name>)
need a Bearer JWT from auth, checked against auth's JWKS.
"""
import hashlib
import html
import logging
import os
import re
import sys
import uuid

from prometheus_client import Counter

from . import db as dbmod
from . import tokens, web
from .config import ConfigError, env_dir, env_str, env_url

ASSET_BYTES = Counter("skx_instance_asset_bytes_written_total", "Asset bytes written to FILES_DIR.",
                      ["instance"])
PAGE_WRITES = Counter("skx_instance_page_writes_total", "Pages created or updated.", ["instance"])

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
ASSET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_ASSET_BYTES = 10 << 20

MIGRATIONS = [
    (1, "pages and assets", """
        CREATE TABLE IF NOT EXISTS pages (
            slug text PRIMARY KEY,
            title text NOT NULL,
            body text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE IF NOT EXISTS assets (
            name text PRIMARY KEY,
            content_type text NOT NULL,
            size_bytes bigint NOT NULL,
            sha256 text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )"""),
]


def build():
    service = web.service_identity("instance")
    name = env_str("INSTANCE_NAME", required=True)
    if not NAME_RE.match(name):
        raise ConfigError(f"INSTANCE_NAME must be a DNS label (a-z, 0-9, '-'), got {name!r}")
    files_dir = env_dir("FILES_DIR", "/data/files")
    assets_dir = os.path.join(files_dir, "assets")
    jwks = tokens.RemoteJwks(env_url("AUTH_URL", "http://auth.skx-app.svc:8080"))
    database = dbmod.Database(f"{service}-{name}")
    app = web.App(service, instance=name)
    app.extra_headers.append(("X-Instance", name))
    app.on_shutdown.append(database.close)
    app.ready_check("database")(database.ping)

    @app.ready_check("files")
    def files_writable():
        if not os.access(files_dir, os.W_OK):
            raise OSError(f"FILES_DIR {files_dir} is not writable")

    def startup():
        os.makedirs(assets_dir, exist_ok=True)
        dbmod.migrate(database, "instance", MIGRATIONS)
        with database.transaction() as conn:
            conn.execute("INSERT INTO pages (slug, title, body) VALUES ('welcome', %s, %s) "
                         "ON CONFLICT (slug) DO NOTHING",
                         (f"Welcome to {name}", f"This is {name}, served from its own database."))

    def require_writer(req):
        token = req.bearer_token()
        if token is None:
            raise web.HTTPError(401, "writes need 'Authorization: Bearer <token>' from auth's /login")
        try:
            return jwks.verify(token)
        except tokens.InvalidToken as exc:
            raise web.HTTPError(401, f"invalid token: {exc}") from None

    def layout(title, body):
        return web.html_response(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · {name}</title></head>
<body><header>Instance <strong>{name}</strong></header><main><h1>{html.escape(title)}</h1>
{body}</main></body></html>
""")

    @app.route("GET", "/")
    def index(req):
        with database.transaction() as conn:
            pages = conn.execute("SELECT slug, title FROM pages ORDER BY slug").fetchall()
            assets = conn.execute("SELECT name, size_bytes FROM assets ORDER BY name").fetchall()
        page_list = "".join(f'<li><a href="/pages/{p["slug"]}">{html.escape(p["title"])}</a></li>' for p in pages)
        asset_list = "".join(f'<li><a href="/assets/{a["name"]}">{html.escape(a["name"])}</a> '
                             f'({a["size_bytes"]} bytes)</li>' for a in assets)
        return layout(name, f"<h2>Pages</h2><ul>{page_list}</ul><h2>Assets</h2><ul>{asset_list}</ul>")

    @app.route("GET", "/pages/{slug}")
    def show_page(req):
        with database.transaction() as conn:
            row = conn.execute("SELECT title, body FROM pages WHERE slug = %s",
                               (req.params["slug"],)).fetchone()
        if row is None:
            raise web.HTTPError(404, f"no page {req.params['slug']!r} on {name}")
        return layout(row["title"], f"<p>{html.escape(row['body'])}</p>")

    @app.route("GET", "/api/pages")
    def list_pages(req):
        with database.transaction() as conn:
            rows = conn.execute("SELECT slug, title, body, updated_at::text FROM pages ORDER BY slug").fetchall()
        return web.json_response({"instance": name, "pages": rows})

    @app.route("PUT", "/api/pages/{slug}")
    def put_page(req):
        writer = require_writer(req)
        slug = req.params["slug"]
        if not SLUG_RE.match(slug):
            raise web.HTTPError(400, "slug must be lower-case letters, digits and '-' (at most 63)")
        data = req.json()
        title, body = data.get("title"), data.get("body")
        if not isinstance(title, str) or not title.strip() or not isinstance(body, str):
            raise web.HTTPError(400, "the page needs a non-empty string title and a string body")
        with database.transaction() as conn:
            created = conn.execute(
                "INSERT INTO pages (slug, title, body) VALUES (%s, %s, %s) "
                "ON CONFLICT (slug) DO UPDATE SET title = EXCLUDED.title, body = EXCLUDED.body, "
                "updated_at = now() RETURNING (xmax = 0) AS created", (slug, title, body)).fetchone()["created"]
        PAGE_WRITES.labels(instance=name).inc()
        web.log_fields(app.log, logging.INFO, "page saved", slug=slug, user_id=writer["sub"])
        return web.json_response({"instance": name, "slug": slug}, 201 if created else 200)

    @app.route("PUT", "/api/assets/{name}", max_body=MAX_ASSET_BYTES)
    def put_asset(req):
        writer = require_writer(req)
        asset = req.params["name"]
        if not ASSET_RE.match(asset):
            raise web.HTTPError(400, "asset names are letters, digits, '.', '_' and '-', not starting with '.'")
        content_type = req.headers.get("Content-Type") or "application/octet-stream"
        digest = hashlib.sha256(req.body).hexdigest()
        # Write then rename: a reader never sees half a file.
        tmp = os.path.join(assets_dir, f".upload-{uuid.uuid4().hex}")
        with open(tmp, "wb") as f:
            f.write(req.body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(assets_dir, asset))
        with database.transaction() as conn:
            conn.execute(
                "INSERT INTO assets (name, content_type, size_bytes, sha256) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET content_type = EXCLUDED.content_type, "
                "size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256, updated_at = now()",
                (asset, content_type, len(req.body), digest))
        ASSET_BYTES.labels(instance=name).inc(len(req.body))
        web.log_fields(app.log, logging.INFO, "asset saved", asset=asset, size_bytes=len(req.body),
                       user_id=writer["sub"])
        return web.json_response({"instance": name, "name": asset, "sha256": digest,
                                  "size_bytes": len(req.body)}, 201)

    @app.route("GET", "/assets/{name}")
    def get_asset(req):
        asset = req.params["name"]
        if not ASSET_RE.match(asset):
            raise web.HTTPError(404, "no such asset")
        with database.transaction() as conn:
            row = conn.execute("SELECT content_type, sha256 FROM assets WHERE name = %s", (asset,)).fetchone()
        if row is None:
            raise web.HTTPError(404, f"no asset {asset!r} on {name}")
        try:
            with open(os.path.join(assets_dir, asset), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            web.log_fields(app.log, logging.ERROR, "asset recorded but missing on the volume", asset=asset)
            raise web.HTTPError(404, f"asset {asset!r} is missing from the volume") from None
        return web.Response(200, data, row["content_type"], [("ETag", f'"{row["sha256"]}"')])

    return app, startup


def main():
    return web.run(build)


if __name__ == "__main__":
    sys.exit(main())

"""tenant_database with services (the shared superkube database of auth and
payment) against a real PostgreSQL: each service's own owner and login roles
with the grants of roles/postgres/vars/main.yml, nothing across services,
the apps' migrations run as the owner role, and a deployment of the former
layout (one login for both) migrated without losing a row or a request."""
import psycopg
import pytest

from lib.superkube import column_privileges, migrate_as, platform_grants, superkube_args
from skx_apps import auth, payment


def connect(pg, dbname="postgres", user=None, password=None):
    return psycopg.connect(pg.dsn(dbname, user, password), autocommit=True)


def scalar(pg, sql, params=None, dbname="postgres"):
    with connect(pg, dbname) as conn:
        row = conn.execute(sql, params).fetchone()
        return row[0] if row else None


def owners(pg, database):
    with connect(pg, database) as conn:
        return dict(conn.execute(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S')").fetchall())


def denied(pg, database, user, password, *statements, match="permission denied|must be owner|must have admin"):
    """Each statement is refused for lack of privilege, in a session of its own."""
    for sql in statements:
        with connect(pg, database, user, password) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=match):
                conn.execute(sql)


class Shared:
    """One superkube-like database with the platform's services, unique names."""

    def __init__(self, pg, unique):
        self.pg = pg
        self.db, self.owner = "sk%s" % unique, "sk%s" % unique
        self.auth, self.payment = "sk%s_auth" % unique, "sk%s_payment" % unique
        self.pw = {self.auth + "_a": "auth-pw-" + unique, self.payment + "_a": "payment-pw-" + unique}

    def args(self, **extra):
        return superkube_args(self.pg, self.db, self.owner, [
            (self.auth, self.pw[self.auth + "_a"], "superkube_auth", None),
            (self.payment, self.pw[self.payment + "_a"], "superkube_payment", None)], **extra)

    def login(self, role):
        return self.pg, self.db, role, self.pw[role]

    def migrate(self):
        migrate_as(self.pg, self.db, self.auth + "_a", self.pw[self.auth + "_a"], "auth", auth.MIGRATIONS, self.auth)
        migrate_as(self.pg, self.db, self.payment + "_a", self.pw[self.payment + "_a"], "payment",
                   payment.MIGRATIONS, self.payment)


def expected_columns(spec):
    """The platform's grant list as column_privileges() reports it."""
    out = {}
    for table, privileges in spec["tables"].items():
        for privilege, columns in (privileges or {}).items():
            if isinstance(columns, list):
                out.setdefault(table, {})[privilege.upper()] = sorted(columns)
    return out


def test_fresh_database_then_migrations_then_exact_grants(postgres_server, run_module, unique):
    pg, s = postgres_server, Shared(postgres_server, unique)

    planned = run_module("tenant_database", s.args(), check=True)
    assert planned["changed"] is True, planned.stdout
    assert not scalar(pg, "SELECT 1 FROM pg_database WHERE datname = %s", (s.db,))
    assert not scalar(pg, "SELECT 1 FROM pg_roles WHERE rolname LIKE %s", (s.owner + "%",))

    created = run_module("tenant_database", s.args())
    assert created["changed"] is True, created.stdout
    for password in s.pw.values():
        assert password not in created.stdout + created.stderr
    assert sorted(created["waiting"]) == sorted(
        t for spec in platform_grants().values() for t in list(spec["tables"]) + list(spec.get("sequences") or {}))
    with connect(pg) as conn:
        roles = dict((r[0], r[1:]) for r in conn.execute(
            "SELECT rolname, rolcanlogin, rolinherit, rolconnlimit, "
            "ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "      WHERE m.member = r.oid ORDER BY 1) FROM pg_roles r WHERE rolname LIKE %s",
            (s.owner + "%",)).fetchall())
    assert roles == {
        s.owner: (False, True, -1, []),
        s.auth: (False, True, -1, []), s.auth + "_a": (True, False, 20, [s.auth]),
        s.auth + "_b": (True, False, 20, [s.auth]),
        s.payment: (False, True, -1, []), s.payment + "_a": (True, False, 20, [s.payment]),
        s.payment + "_b": (True, False, 20, [s.payment])}
    # The login roles start their sessions as themselves, not as an owner.
    with connect(*s.login(s.auth + "_a")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (s.auth + "_a",)
        # Nothing but the schema: no table may be created outside a migration.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE squat (id int)")

    # The apps' own migrations, as they run at start (SET LOCAL ROLE <owner>).
    s.migrate()
    assert owners(pg, s.db) == {
        "users": s.auth, "auth_schema_migrations": s.auth,
        "plans": s.payment, "checkouts": s.payment, "subscriptions": s.payment, "subscriptions_id_seq": s.payment,
        "stripe_events": s.payment, "payment_schema_migrations": s.payment}
    # Until the grants, a new table is closed to the login roles.
    denied(pg, s.db, s.auth + "_a", s.pw[s.auth + "_a"], "SELECT id FROM users")

    settled = run_module("tenant_database", s.args())
    assert settled["changed"] is True, settled.stdout
    assert settled["waiting"] == []
    again = run_module("tenant_database", s.args())
    assert again["changed"] is False, again["executed_queries"]
    assert again["diff"]["before"] == again["diff"]["after"]

    # Exactly the platform's list, for both login roles of each service, and
    # nothing at table level but the sequence.
    grants = platform_grants()
    logins = [s.auth + "_a", s.auth + "_b", s.payment + "_a", s.payment + "_b"]
    columns, tables = column_privileges(pg, s.db, logins + [s.auth, s.payment, s.owner])
    for login in logins:
        spec = grants["superkube_auth" if login.startswith(s.auth) else "superkube_payment"]
        assert columns.get(login, {}) == expected_columns(spec), login
    assert tables == {s.payment + "_a": {"subscriptions_id_seq": ["USAGE"]},
                      s.payment + "_b": {"subscriptions_id_seq": ["USAGE"]}}


@pytest.fixture
def shared(postgres_server, run_module, unique):
    s = Shared(postgres_server, unique)
    assert run_module("tenant_database", s.args())["changed"] is True
    s.migrate()
    assert run_module("tenant_database", s.args())["changed"] is True
    with connect(*s.login(s.auth + "_a")) as conn:
        conn.execute("INSERT INTO users (email, password_hash) VALUES ('a@example.com', 'scrypt$secret')")
    return s


def test_payment_cannot_read_password_hashes_nor_become_auth(shared):
    s, pw = shared, shared.pw[shared.payment + "_a"]
    denied(s.pg, s.db, s.payment + "_a", pw, "SELECT password_hash FROM users", "SELECT id FROM users",
           "SELECT count(*) FROM users", match="permission denied for table users")
    denied(s.pg, s.db, s.payment + "_a", pw,
           "SELECT version FROM auth_schema_migrations",
           # not even as its own owner role, nor as auth's
           "SET ROLE %s; SELECT password_hash FROM users" % s.payment,
           "SET ROLE %s" % s.auth, "SET ROLE %s" % s.owner,
           "GRANT %s TO %s" % (s.auth, s.payment + "_a"))
    # What payment does use still works.
    with connect(s.pg, s.db, s.payment + "_a", pw) as conn:
        assert conn.execute("SELECT count(*) FROM plans").fetchone() == (2,)


def test_auth_cannot_write_subscriptions_nor_read_payment_tables(shared):
    s, pw = shared, shared.pw[shared.auth + "_a"]
    denied(s.pg, s.db, s.auth + "_a", pw,
           "INSERT INTO subscriptions (user_id, plan_id, status) VALUES ('u', 'pro', 'active')",
           "UPDATE subscriptions SET status = 'canceled'", "DELETE FROM subscriptions",
           "SELECT user_id FROM subscriptions", match="permission denied for table subscriptions")
    denied(s.pg, s.db, s.auth + "_a", pw, "SELECT stripe_price_id FROM plans",
           "INSERT INTO stripe_events (id, type) VALUES ('evt', 'x')",
           "SET ROLE %s; INSERT INTO subscriptions (user_id, plan_id, status) VALUES ('u', 'pro', 'x')" % s.auth,
           "SET ROLE %s" % s.payment)
    # Nor what auth itself does not use: created_at, UPDATE, DELETE, DDL.
    denied(s.pg, s.db, s.auth + "_a", pw,
           "SELECT created_at FROM users", "UPDATE users SET email = 'x'", "DELETE FROM users",
           "TRUNCATE users", "DROP TABLE users", "ALTER TABLE users ADD COLUMN x int")
    with connect(s.pg, s.db, s.auth + "_a", pw) as conn:
        assert conn.execute("SELECT password_hash FROM users WHERE email = 'a@example.com'").fetchone() == (
            "scrypt$secret",)


def test_drift_is_corrected(shared, run_module):
    s = shared
    with connect(s.pg, s.db) as conn:
        conn.execute("GRANT SELECT ON users TO %s" % (s.payment + "_b"))
        conn.execute("GRANT SELECT (password_hash) ON users TO PUBLIC")
        conn.execute("GRANT ALL ON subscriptions TO %s" % s.auth)
        conn.execute("GRANT DELETE ON users TO %s" % (s.auth + "_a"))
        conn.execute("GRANT CREATE ON SCHEMA public TO %s" % (s.auth + "_b"))
        conn.execute("GRANT %s TO %s" % (s.auth, s.payment + "_a"))
        conn.execute("ALTER ROLE %s INHERIT" % (s.auth + "_a"))
    fixed = run_module("tenant_database", s.args())
    assert fixed["changed"] is True
    queries = fixed["executed_queries"]
    for expected in ('REVOKE "%s" FROM "%s"' % (s.auth, s.payment + "_a"),
                     'REVOKE SELECT ON TABLE "public"."users" FROM "%s"' % (s.payment + "_b"),
                     'REVOKE SELECT ("password_hash") ON TABLE "public"."users" FROM PUBLIC',
                     'REVOKE DELETE ON TABLE "public"."users" FROM "%s"' % (s.auth + "_a"),
                     'REVOKE CREATE ON SCHEMA "public" FROM "%s"' % (s.auth + "_b")):
        assert expected in queries, queries
    assert any(q.startswith('REVOKE ') and 'ON TABLE "public"."subscriptions" FROM "%s"' % s.auth in q
               for q in queries), queries
    assert "permission denied" not in fixed.stdout
    assert run_module("tenant_database", s.args())["changed"] is False
    with connect(s.pg, s.db) as conn:
        assert conn.execute("SELECT has_column_privilege(%s, 'users', 'password_hash', 'SELECT')",
                            (s.payment + "_b",)).fetchone() == (False,)


def test_former_shared_login_migrates_without_losing_rows_or_sessions(postgres_server, run_module, unique):
    """The layout before: superkube owned by a NOLOGIN role whose two login
    roles both services used (sessions start as the owner), the tables made by
    the old images' migrations. The first run gives each service its roles and
    its tables while the former logins keep working; once the services run
    with their own, the settle step retires the former logins."""
    pg, s = postgres_server, Shared(postgres_server, unique)
    former_pw = "former-" + unique
    created = run_module("tenant_database", dict(
        login_host=pg.host, login_port=pg.port, login_password=pg.password,
        name=s.db, owner=s.owner, password=former_pw))
    assert created["changed"] is True
    # The old images: no DATABASE_MIGRATION_ROLE, the session's role is the owner.
    migrate_as(pg, s.db, s.owner + "_a", former_pw, "auth", auth.MIGRATIONS, None)
    migrate_as(pg, s.db, s.owner + "_a", former_pw, "payment", payment.MIGRATIONS, None)
    with connect(pg, s.db, s.owner + "_a", former_pw) as conn:
        conn.execute("INSERT INTO users (email, password_hash) VALUES ('old@example.com', 'h')")
        conn.execute("INSERT INTO subscriptions (user_id, plan_id, status) VALUES ('u1', 'pro', 'active')")
    assert set(owners(pg, s.db).values()) == {s.owner}
    # A pod of the old release, connected before the run and still serving.
    old_pod = connect(pg, s.db, s.owner + "_a", former_pw)

    args = s.args(former=[s.owner + "_a", s.owner + "_b"])
    planned = run_module("tenant_database", args, check=True)
    assert planned["changed"] is True
    assert set(owners(pg, s.db).values()) == {s.owner}
    bridged = run_module("tenant_database", args)
    assert bridged["changed"] is True, bridged.stdout
    assert bridged["former_login_roles"] == [s.owner + "_a", s.owner + "_b"]
    assert bridged["waiting"] == []
    assert owners(pg, s.db)["users"] == s.auth and owners(pg, s.db)["subscriptions"] == s.payment
    # The old pod's session and a new one with the former login still work...
    assert old_pod.execute("SELECT count(*) FROM users").fetchone() == (1,)
    old_pod.execute("INSERT INTO subscriptions (user_id, plan_id, status) VALUES ('u2', 'basic', 'active')")
    with connect(pg, s.db, s.owner + "_a", former_pw) as conn:
        assert conn.execute("SELECT count(*) FROM subscriptions").fetchone() == (2,)
    # ...and so do the new logins, each on its own tables only.
    with connect(*s.login(s.auth + "_a")) as conn:
        assert conn.execute("SELECT email FROM users").fetchall() == [("old@example.com",)]
    denied(pg, s.db, s.payment + "_a", s.pw[s.payment + "_a"], "SELECT password_hash FROM users")
    # The new images' migrations find their tables, owned by their roles.
    s.migrate()
    assert run_module("tenant_database", args)["changed"] is False

    retire = s.args(former=[s.owner + "_a", s.owner + "_b"], retire=True)
    planned = run_module("tenant_database", retire, check=True)
    assert planned["changed"] is True
    assert old_pod.execute("SELECT 1").fetchone() == (1,)
    retired = run_module("tenant_database", retire)
    assert retired["changed"] is True, retired.stdout
    assert retired["former_login_roles"] == []
    assert not scalar(pg, "SELECT count(*) FROM pg_roles WHERE rolname IN (%s, %s)",
                      (s.owner + "_a", s.owner + "_b"))
    with pytest.raises(psycopg.OperationalError):
        old_pod.execute("SELECT 1")
    old_pod.close()
    assert scalar(pg, "SELECT count(*) FROM users", dbname=s.db) == 1
    assert scalar(pg, "SELECT count(*) FROM subscriptions", dbname=s.db) == 2
    assert scalar(pg, "SELECT count(*) FROM plans", dbname=s.db) == 2
    # The database's owner role is no longer a member of the services' roles.
    assert scalar(pg, "SELECT count(*) FROM pg_auth_members WHERE member = %s::regrole", (s.owner,)) == 0
    assert run_module("tenant_database", retire)["changed"] is False
    assert run_module("tenant_database", args)["changed"] is False


def test_bad_service_input_is_refused_before_anything_changes(postgres_server, run_module, unique):
    pg, s = postgres_server, Shared(postgres_server, unique)
    args = s.args()
    args["services"][0]["tables"] = {"users": {"select": ["id"], "drop": True}}
    bad = run_module("tenant_database", args)
    assert bad.failed and "unknown privilege 'drop'" in bad["msg"], bad.result
    args = s.args()
    args["services"][1]["tables"]["users"] = {}
    bad = run_module("tenant_database", args)
    assert bad.failed and "one service only" in bad["msg"], bad.result
    args = s.args()
    args["services"][1]["owner"] = s.auth
    bad = run_module("tenant_database", args)
    assert bad.failed and "distinct roles" in bad["msg"], bad.result
    assert not scalar(pg, "SELECT 1 FROM pg_roles WHERE rolname LIKE %s", (s.owner + "%",))

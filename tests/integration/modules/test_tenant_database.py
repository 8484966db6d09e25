"""tenant_database against a real PostgreSQL: create, idempotence, check mode,
diff, removal with and without data, and the isolation between tenants."""
import os
import stat
import subprocess

import psycopg
import pytest


def connect(pg, dbname="postgres", user=None, password=None, autocommit=True):
    return psycopg.connect(pg.dsn(dbname, user, password), autocommit=autocommit)


def scalar(pg, sql, params=None, dbname="postgres"):
    with connect(pg, dbname) as conn:
        row = conn.execute(sql, params).fetchone()
        return row[0] if row else None


def tenant_args(pg, name, password, **extra):
    args = dict(login_host=pg.host, login_port=pg.port, login_password=pg.password,
                name=name + "_db", owner=name, password=password)
    args.update(extra)
    return args


def database_exists(pg, name):
    return bool(scalar(pg, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)))


def role_names(pg, prefix):
    with connect(pg) as conn:
        rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s ORDER BY 1", (prefix + "%",))
        return [r[0] for r in rows]


def can_login(pg, dbname, user, password):
    try:
        connect(pg, dbname, user, password).close()
        return True
    except psycopg.OperationalError:
        return False


def test_create_check_mode_then_apply_then_idempotent(postgres_server, run_module, unique):
    pg, name = postgres_server, "t" + unique
    password = "first-" + unique + "-Secret"
    args = tenant_args(pg, name, password, metrics_role="m" + unique, connection_limit=7)

    planned = run_module("tenant_database", args, check=True)
    assert planned["changed"] is True, planned.stdout
    assert not database_exists(pg, name + "_db")
    assert role_names(pg, name) == []
    assert any(q.startswith("CREATE DATABASE") for q in planned["executed_queries"])

    created = run_module("tenant_database", args)
    assert created["changed"] is True, created.stdout
    assert password not in created.stdout + created.stderr
    assert any("PASSWORD ********" in q for q in created["executed_queries"])
    assert created["diff"]["before"]["database"] is None
    assert created["diff"]["after"]["roles"][name + "_a"]["password"] == "changed"

    with connect(pg) as conn:
        db = conn.execute(
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype, "
            "has_database_privilege(%s, datname, 'CONNECT') FROM pg_database WHERE datname = %s",
            (name + "_b", name + "_db")).fetchone()
        assert db == (name, "UTF8", "C.UTF-8", "C.UTF-8", True)
        role = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
            "rolconnlimit FROM pg_roles WHERE rolname = %s", (name + "_a",)).fetchone()
        assert role == (True, False, False, False, False, False, 7)
        assert conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (name,)).fetchone() == (False,)
    assert scalar(pg, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'",
                  dbname=name + "_db") == name

    # The login role works as the owner role, so its objects belong to the owner.
    with connect(pg, name + "_db", name + "_a", password) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (name,)
        conn.execute("CREATE TABLE notes (id int)")
    assert scalar(pg, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'notes'",
                  dbname=name + "_db") == name
    # The second login role has no password until a rotation gives it one.
    assert not can_login(pg, name + "_db", name + "_b", password)

    again = run_module("tenant_database", args)
    assert again["changed"] is False, again.stdout
    assert again["executed_queries"] == []
    assert again["diff"]["before"] == again["diff"]["after"]

    # A new password in check mode is reported, not applied.
    new_password = "second-" + unique + "-Secret"
    planned = run_module("tenant_database", dict(args, password=new_password), check=True)
    assert planned["changed"] is True
    assert planned["executed_queries"] == ['ALTER ROLE "%s_a" PASSWORD ********' % name]
    assert planned["diff"]["after"]["roles"][name + "_a"]["password"] == "changed"
    assert new_password not in planned.stdout + planned.stderr
    assert can_login(pg, name + "_db", name + "_a", password)
    assert not can_login(pg, name + "_db", name + "_a", new_password)

    applied = run_module("tenant_database", dict(args, password=new_password))
    assert applied["changed"] is True
    assert can_login(pg, name + "_db", name + "_a", new_password)
    assert not can_login(pg, name + "_db", name + "_a", password)

    # Drift is corrected: a grant given by hand to PUBLIC is revoked again.
    with connect(pg) as conn:
        conn.execute('GRANT CONNECT ON DATABASE "%s_db" TO PUBLIC' % name)
        conn.execute('ALTER ROLE "%s_a" CREATEDB' % name)
    fixed = run_module("tenant_database", dict(args, password=new_password))
    assert fixed["changed"] is True
    assert 'REVOKE CONNECT ON DATABASE "%s_db" FROM PUBLIC' % name in fixed["executed_queries"]
    assert scalar(pg, "SELECT rolcreatedb FROM pg_roles WHERE rolname = %s", (name + "_a",)) is False


def test_tenants_are_isolated(postgres_server, run_module, unique):
    pg = postgres_server
    one, two = "i" + unique + "a", "i" + unique + "b"
    metrics = "m" + unique
    for name in (one, two):
        result = run_module("tenant_database", tenant_args(pg, name, name + "-pw-Secret", metrics_role=metrics))
        assert result["changed"] is True, result.stdout

    # instance one's login cannot reach instance two's database.
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        connect(pg, two + "_db", one + "_a", one + "-pw-Secret")

    # nor create databases or roles.
    with connect(pg, one + "_db", one + "_a", one + "-pw-Secret") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE DATABASE stolen_" + unique)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE stolen_" + unique)

    # PUBLIC cannot connect: a login role without grants is refused by both.
    with connect(pg) as conn:
        conn.execute("CREATE ROLE outsider_%s LOGIN PASSWORD 'outsider-pw'" % unique)
        conn.execute("CREATE ROLE exporter_%s LOGIN PASSWORD 'exporter-pw' IN ROLE %s" % (unique, metrics))
    for name in (one, two):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            connect(pg, name + "_db", "outsider_" + unique, "outsider-pw")

    # The metrics exporter still sees the size of every tenant database.
    with connect(pg, one + "_db", "exporter_" + unique, "exporter-pw") as conn:
        size = conn.execute("SELECT pg_database_size(%s)", (two + "_db",)).fetchone()[0]
        assert size > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE x (id int)")


def test_absent_empty_database_is_dropped(postgres_server, run_module, unique):
    pg, name = postgres_server, "e" + unique
    run_module("tenant_database", tenant_args(pg, name, "pw-" + unique))

    planned = run_module("tenant_database", tenant_args(pg, name, None, state="absent"), check=True)
    assert planned["changed"] is True
    assert database_exists(pg, name + "_db")

    dropped = run_module("tenant_database", tenant_args(pg, name, None, state="absent"))
    assert dropped["changed"] is True, dropped.stdout
    assert dropped["relations"] == 0
    assert not database_exists(pg, name + "_db")
    assert role_names(pg, name) == []
    assert dropped["diff"]["after"] == {"database": None, "roles": {}}

    again = run_module("tenant_database", tenant_args(pg, name, None, state="absent"))
    assert again["changed"] is False


def test_absent_refuses_data_unless_told_and_dumps_first(postgres_server, run_module, unique, tmp_path):
    pg, name = postgres_server, "d" + unique
    run_module("tenant_database", tenant_args(pg, name, "pw-" + unique + "-Secret"))
    with connect(pg, name + "_db", name + "_a", "pw-" + unique + "-Secret") as conn:
        conn.execute("CREATE TABLE invoices (id int)")
        conn.execute("INSERT INTO invoices VALUES (42)")

    refused = run_module("tenant_database", tenant_args(pg, name, None, state="absent"))
    assert refused.failed
    assert "delete_data" in refused["msg"]
    assert "holds 1 relations" in refused["msg"]
    assert database_exists(pg, name + "_db")
    assert len(role_names(pg, name)) == 3

    dump = tmp_path / "final.dump"
    args = tenant_args(pg, name, None, state="absent", delete_data=True, dump_file=str(dump))
    planned = run_module("tenant_database", args, check=True)
    assert planned["changed"] is True
    assert database_exists(pg, name + "_db") and not dump.exists()

    dropped = run_module("tenant_database", args)
    assert dropped["changed"] is True, dropped.stdout
    assert not database_exists(pg, name + "_db")
    assert role_names(pg, name) == []
    assert stat.S_IMODE(os.stat(dump).st_mode) == 0o600
    listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True)
    assert "TABLE public invoices" in listing.stdout
    data = subprocess.run(["pg_restore", "--data-only", "--table=invoices", "-f", "-", str(dump)],
                          capture_output=True, text=True, check=True)
    assert "42" in data.stdout


def test_bad_input_is_refused_before_anything_changes(postgres_server, run_module, unique):
    pg = postgres_server
    bad = run_module("tenant_database", tenant_args(pg, "Bad-" + unique, "pw"))
    assert bad.failed and bad["msg"].startswith("name:"), bad.result
    bad = run_module("tenant_database", tenant_args(pg, "b" + unique, "pw", password_role="someone_else"))
    assert bad.failed and bad["msg"].startswith("password_role:"), bad.result
    assert role_names(pg, "b" + unique) == []

    name = "l" + unique
    run_module("tenant_database", tenant_args(pg, name, "pw"))
    clash = run_module("tenant_database", tenant_args(pg, name, "pw", locale="C"))
    assert clash.failed and "locale" in clash["msg"], clash.result

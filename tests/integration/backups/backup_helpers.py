"""Helpers shared by the backup tests."""
import urllib.request

import psycopg


def sql(server, dbname, statement, params=None):
    with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else None


def table_checksums(server, dbname):
    """md5 of every table's rows in a stable order: equal checksums mean equal
    contents."""
    out = {}
    with psycopg.connect(server.dsn(dbname)) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'public' "
            "ORDER BY 1, 2").fetchall()
        for schema, table in tables:
            out[table] = conn.execute(
                f'SELECT count(*), md5(coalesce(string_agg(t::text, E\'\\n\' ORDER BY t::text), \'\')) '
                f'FROM "{schema}"."{table}" t').fetchone()
    return out


def pushed_metrics(url):
    """Metrics held by the Pushgateway: {(name, frozenset(labels)): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("skx_backup_"):
                labels = {k: v for k, v in sample.labels.items() if k != "instance"}
                out[(sample.name, frozenset(labels.items()))] = sample.value
    return out

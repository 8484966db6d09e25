"""Fixtures of the integration tests (apps, backups, modules): real PostgreSQL
and Redis servers for the whole session."""

import pytest

from lib.servers import PostgresServer, RedisServer  # tests/ is on pytest's pythonpath (pytest.ini)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server shared by the session. Tests create their own
    databases and roles with unique names so they do not depend on order."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()

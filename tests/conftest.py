"""Shared fixtures: real PostgreSQL and Redis servers for the whole session."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from lib.servers import PostgresServer, RedisServer  # noqa: E402


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

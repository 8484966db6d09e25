"""Fixtures of the module integration tests (real PostgreSQL and Redis come
from tests/integration/conftest.py)."""
import uuid

import pytest

from lib.modrun import ensure_collection_link, run_module as _run_module


@pytest.fixture(scope="session", autouse=True)
def collection_link():
    ensure_collection_link()


@pytest.fixture(scope="session")
def run_module():
    """run_module('tenant_database', {...}, check=False) -> ModuleRun."""
    return _run_module


@pytest.fixture
def unique():
    """A short unique suffix for database and role names."""
    return uuid.uuid4().hex[:8]

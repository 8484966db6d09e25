"""Fixtures of the module tests on the testbed cluster. They are skipped like
every testbed test when the testbed is not running (tests/testbed/conftest.py;
SKX_TESTBED_REQUIRED=1 makes them fail instead)."""
import pytest

from lib.modrun import ensure_collection_link, run_module as _run_module

# The helpers the tests share (kubectl wrapper, manifests) are in lib.testbed;
# the fixtures of tests/testbed/conftest.py (ns, kube) apply here.


@pytest.fixture(scope="session", autouse=True)
def collection_link():
    ensure_collection_link()


@pytest.fixture(scope="session")
def run_module():
    return _run_module

"""Fixtures of the module tests on the testbed cluster. They are skipped like
every testbed test when the testbed is not running (tests/testbed/conftest.py;
SKX_TESTBED_REQUIRED=1 makes them fail instead)."""
import importlib.util
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
from modrun import ensure_collection_link, run_module as _run_module  # tests/integration/modules: pytest.ini

# The helpers of tests/testbed/conftest.py (kubectl wrapper, manifests), importable
# by the tests as testbed_conftest; its fixtures (ns, kube) apply here anyway.
_spec = importlib.util.spec_from_file_location("testbed_conftest", os.path.join(os.path.dirname(HERE), "conftest.py"))
testbed_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(testbed_conftest)
sys.modules["testbed_conftest"] = testbed_conftest


@pytest.fixture(scope="session", autouse=True)
def collection_link():
    ensure_collection_link()


@pytest.fixture(scope="session")
def run_module():
    return _run_module

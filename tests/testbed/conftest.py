"""Fixtures for the testbed tests: they talk to the cluster that `testbed/up` started.

Without a running testbed these tests are skipped, unless SKX_TESTBED_REQUIRED=1
(as in .ci/run after `testbed/up`), in which case they fail.
"""
import os
import uuid

import pytest

from lib.testbed import Kube, testbed_running


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    # Tests marked run_last (test_down.py: testbed/down) run after every other
    # test of the session, whatever the order of the paths on the command line.
    last = [i for i in items if i.get_closest_marker("run_last")]
    if last:
        items[:] = [i for i in items if not i.get_closest_marker("run_last")] + last
    here = os.path.dirname(os.path.abspath(__file__))
    # The down test checks what a stopped testbed leaves: it runs whether
    # the testbed runs or not (.ci/run's cold-start check, on a new machine).
    ours = [i for i in items if str(i.fspath).startswith(here) and not i.get_closest_marker("any_testbed_state")]
    if not ours:
        return
    if os.environ.get("SKX_TESTBED_REQUIRED") == "1" or testbed_running():
        return
    skip = pytest.mark.skip(reason="testbed not running: start it with testbed/up "
                                   "(set SKX_TESTBED_REQUIRED=1 to fail instead)")
    for item in ours:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def kube():
    return Kube()


@pytest.fixture
def ns(kube):
    name = "tb-" + uuid.uuid4().hex[:8]
    kube.run("create", "namespace", name, namespaced=False)
    yield Kube(name)
    kube.run("delete", "namespace", name, "--wait=false", check=False, namespaced=False)

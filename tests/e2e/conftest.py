import os
import pathlib
import subprocess

import pytest


def pytest_collection_modifyitems(config, items):
    """Without a reachable cluster these tests cannot run: skip them, saying so."""
    kubeconfig = os.environ.get("KUBECONFIG")
    reachable = bool(kubeconfig) and subprocess.run(
        ["curl", "-sk", "--max-time", "3", "-o", "/dev/null", "https://127.0.0.1:443/"]).returncode == 0
    if not reachable and os.environ.get("SKX_TESTBED_REQUIRED") != "1":
        skip = pytest.mark.skip(reason="no testbed: run testbed/up and site.yml -i inventories/testbed first")
        here = pathlib.Path(__file__).parent
        for item in items:
            if here in pathlib.Path(str(item.fspath)).parents:
                item.add_marker(skip)


# A module that sets INCREMENTAL = True runs its tests as the steps of one
# story: once a step fails, the later ones are skipped instead of acting on
# a cluster left in an unexpected state.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and getattr(item.module, "INCREMENTAL", False):
        item.module.FAILED_STEP = item.name


def pytest_runtest_setup(item):
    failed = getattr(item.module, "FAILED_STEP", None)
    if failed and getattr(item.module, "INCREMENTAL", False):
        pytest.skip(f"an earlier step failed: {failed}")

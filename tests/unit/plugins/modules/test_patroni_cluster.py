"""patroni_cluster's comparison: only the settings that differ from what
Patroni's GET /config returns are sent, whatever form Patroni kept a value
in."""
import pytest

from ansible_collections.superkubernetex.platform.plugins.modules.patroni_cluster import config_patch, pick

CURRENT = {
    "ttl": 30, "loop_wait": 10, "synchronous_mode": False, "failsafe_mode": True,
    "postgresql": {"use_pg_rewind": True, "parameters": {"max_connections": "200", "hot_standby": "on",
                                                          "wal_log_hints": "on", "max_wal_senders": 10}},
}


def test_a_converged_cluster_gets_nothing():
    wanted = {"ttl": 30, "synchronous_mode": False, "failsafe_mode": True,
              "postgresql": {"use_pg_rewind": True, "parameters": {"max_connections": 200, "hot_standby": True,
                                                                    "max_wal_senders": "10"}}}
    assert config_patch(wanted, CURRENT) == {}


def test_only_what_differs_is_sent_and_reported_before():
    wanted = {"ttl": 30, "synchronous_mode": True, "synchronous_mode_strict": False,
              "postgresql": {"parameters": {"max_connections": "300", "hot_standby": "on"}}}
    patch = config_patch(wanted, CURRENT)
    assert patch == {"synchronous_mode": True, "synchronous_mode_strict": False,
                     "postgresql": {"parameters": {"max_connections": "300"}}}
    assert pick(patch, CURRENT) == {"synchronous_mode": False, "postgresql": {"parameters": {"max_connections": "200"}}}


@pytest.mark.parametrize("wanted, patch", [
    ({"synchronous_node_count": None}, {}),
    ({"loop_wait": None}, {"loop_wait": None}),
], ids=["absent-stays-absent", "present-removed"])
def test_null_removes_a_setting_only_when_present(wanted, patch):
    assert config_patch(wanted, CURRENT) == patch


def test_a_setting_the_cluster_lacks_is_sent():
    assert config_patch({"postgresql": {"parameters": {"max_locks_per_transaction": 128}}}, {}) == \
        {"postgresql": {"parameters": {"max_locks_per_transaction": 128}}}

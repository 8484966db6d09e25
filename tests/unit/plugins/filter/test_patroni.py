import copy

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.superkubernetex.platform.plugins.filter.patroni import patroni_config

LABELS = {"app.kubernetes.io/name": "postgres", "app.kubernetes.io/part-of": "superkubernetex"}
# roles/postgres/defaults/main.yml's postgres_config, as the role passes it.
POSTGRES_CONFIG = {
    "max_connections": "200", "shared_buffers": "256MB", "effective_cache_size": "768MB", "work_mem": "4MB",
    "maintenance_work_mem": "64MB", "wal_level": "replica", "max_wal_size": "1GB",
    "checkpoint_completion_target": "0.9", "log_min_duration_statement": "500",
    "password_encryption": "scram-sha-256",
}
SETTINGS = {"scope": "postgres", "namespace": "skx-data", "labels": LABELS, "replicas": 3,
            "synchronous_mode": True, "parameters": POSTGRES_CONFIG, "restapi_username": "patroni",
            "users": {"superuser": "postgres", "replication": "replicator", "rewind": "rewinder"}}
# The values a pod's environment would hold; none of them may reach the file.
SECRETS = ("s3cr3t-superuser", "s3cr3t-replication")


def render(**changes):
    settings = copy.deepcopy(SETTINGS)
    settings.update(changes)
    return patroni_config(settings)


def keys(value):
    """Every key of a nested dict, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys(item)


def test_no_password_is_written_only_the_role_names():
    config = render()
    # Patroni's key for a password is "password" (under authentication,
    # restapi.authentication): none is written, in any section.
    assert "password" not in set(keys(config))
    assert not any(secret in yaml.safe_dump(config) for secret in SECRETS)
    assert config["postgresql"]["authentication"] == {
        "superuser": {"username": "postgres"}, "replication": {"username": "replicator"},
        "rewind": {"username": "rewinder"}}
    assert config["restapi"]["authentication"] == {"username": "patroni"}


@pytest.mark.parametrize("changes, where", [
    ({"users": {"superuser": "postgres", "replication": "replicator", "password": SECRETS[0]}}, "users.password"),
    ({"users": {"superuser": {"username": "postgres", "password": SECRETS[0]}, "replication": "replicator"}},
     "users.superuser.password"),
    ({"superuser_password": SECRETS[0]}, "superuser_password"),
    ({"restapi_password": SECRETS[1]}, "restapi_password"),
])
def test_a_password_in_the_input_is_refused_without_echoing_it(changes, where):
    with pytest.raises(AnsibleFilterError, match=rf"{where} looks like a secret.*PATRONI_\*_PASSWORD") as err:
        render(**changes)
    assert not any(secret in str(err.value) for secret in SECRETS)


@pytest.mark.parametrize("mode", [True, False])
def test_synchronous_mode_follows_the_input(mode):
    dcs = render(synchronous_mode=mode)["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is mode
    if mode:
        assert dcs["synchronous_mode_strict"] is False and dcs["synchronous_node_count"] == 1
    else:
        assert "synchronous_mode_strict" not in dcs and "synchronous_node_count" not in dcs


def test_strict_synchronous_mode_and_two_synchronous_standbys():
    dcs = render(replicas=5, synchronous_mode_strict=True, synchronous_node_count=2)["bootstrap"]["dcs"]
    assert (dcs["synchronous_mode"], dcs["synchronous_mode_strict"], dcs["synchronous_node_count"]) == (True, True, 2)


def test_a_single_member_runs_without_synchronous_mode():
    config = render(replicas=1, synchronous_mode=False)
    assert config["bootstrap"]["dcs"]["synchronous_mode"] is False


def test_the_kubernetes_dcs_uses_endpoints_our_labels_and_a_role_label():
    kube = render()["kubernetes"]
    assert kube["use_endpoints"] is True
    assert kube["namespace"] == "skx-data"
    assert kube["labels"] == LABELS
    assert (kube["scope_label"], kube["role_label"]) == ("cluster-name", "role")
    # The Services select these values: written out, not left to Patroni's defaults.
    assert (kube["leader_label_value"], kube["follower_label_value"], kube["standby_leader_label_value"]) == (
        "primary", "replica", "primary")
    # The leader Endpoints carries the primary Service's port name.
    assert kube["ports"] == [{"name": "postgres", "port": 5432}]
    assert kube["bypass_api_service"] is False
    # Per-pod values come from each pod's environment, not the shared file.
    assert "pod_ip" not in kube and "name" not in render()


def test_custom_label_names_and_port():
    config = render(scope_label="app.kubernetes.io/instance", role_label="superkubernetex.com/role",
                    port=6432, port_name="pg", bypass_api_service=True)
    kube = config["kubernetes"]
    assert (kube["scope_label"], kube["role_label"]) == ("app.kubernetes.io/instance", "superkubernetex.com/role")
    assert kube["ports"] == [{"name": "pg", "port": 6432}] and kube["bypass_api_service"] is True
    assert config["postgresql"]["listen"] == "*:6432"


def test_pg_hba_replication_by_password_and_no_trust_over_the_network():
    hba = render()["postgresql"]["pg_hba"]
    assert hba[0] == "local all all peer"
    assert "host replication replicator 0.0.0.0/0 scram-sha-256" in hba
    assert "host replication replicator ::/0 scram-sha-256" in hba
    for line in hba:
        fields = line.split()
        if fields[0] != "local":
            assert fields[-1] == "scram-sha-256", line
    # The replication line comes before the catch-all one, the loopback ones first.
    assert hba.index("host replication replicator 0.0.0.0/0 scram-sha-256") < hba.index(
        "host all all 0.0.0.0/0 scram-sha-256")
    assert hba[1:3] == ["host all all 127.0.0.1/32 scram-sha-256", "host all all ::1/128 scram-sha-256"]


def test_pg_hba_with_md5_narrow_networks_and_extra_lines():
    hba = render(auth_method="md5", local_auth_method="scram-sha-256", network_cidrs=["10.42.0.0/16"],
                 parameters={"password_encryption": "md5"},
                 pg_hba=["host all reporting 10.42.7.0/24 md5"])["postgresql"]["pg_hba"]
    assert hba == ["local all all scram-sha-256", "host all all 127.0.0.1/32 md5", "host all all ::1/128 md5",
                   "host replication replicator 10.42.0.0/16 md5", "host all reporting 10.42.7.0/24 md5",
                   "host all all 10.42.0.0/16 md5"]


def test_parameters_are_split_between_the_cluster_and_each_member():
    config = render()
    shared = config["bootstrap"]["dcs"]["postgresql"]["parameters"]
    local = config["postgresql"]["parameters"]
    assert shared["max_connections"] == "200" and shared["wal_level"] == "replica"
    assert shared["hot_standby"] == "on" and shared["wal_log_hints"] == "on"
    assert shared["max_wal_senders"] >= 5 and shared["max_replication_slots"] >= 5
    assert local["shared_buffers"] == "256MB" and local["password_encryption"] == "scram-sha-256"
    assert "max_connections" not in local and "shared_buffers" not in shared
    assert config["postgresql"]["data_dir"] == "/var/lib/postgresql/data/pgdata"
    assert config["bootstrap"]["dcs"]["postgresql"]["use_pg_rewind"] is True


def test_wal_senders_and_slots_grow_with_the_replicas():
    shared = render(replicas=12)["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert shared["max_wal_senders"] == 14 and shared["max_replication_slots"] == 14


def test_the_input_is_left_as_it_was():
    settings = copy.deepcopy(SETTINGS)
    patroni_config(settings)
    assert settings == SETTINGS


@pytest.mark.parametrize("changes, message", [
    ({"scope": "Postgres_1"}, r"scope must be a DNS label, got 'Postgres_1'"),
    ({"scope": "p" * 55}, r"scope must have 54 characters at most"),
    ({"namespace": ""}, r"namespace must be a namespace name"),
    ({"labels": {}}, r"labels must be a non-empty dict"),
    ({"labels": {"bad key!": "x"}}, r"labels 'bad key!' is not a Kubernetes label name"),
    ({"labels": {7: "x"}}, r"labels 7 is not a Kubernetes label name"),
    ({"role_label": "example.com/"}, r"role_label 'example.com/' is not a Kubernetes label name"),
    ({"labels": {"app": "not ok"}}, r"labels\['app'\] must be a Kubernetes label value"),
    ({"labels": {**LABELS, "role": "primary"}}, r"labels must not hold 'role': Patroni sets that label itself"),
    ({"replicas": 0}, r"replicas must be an integer of 1 or more, got 0"),
    ({"replicas": "3"}, r"replicas must be an integer of 1 or more, got '3'"),
    ({"synchronous_mode": "yes"}, r"synchronous_mode must be true or false, got 'yes'"),
    ({"replicas": 1}, r"synchronous_mode needs replicas of 2 or more"),
    ({"synchronous_node_count": 3}, r"synchronous_node_count must be at most replicas - 1 \(2\), got 3"),
    ({"synchronous_mode": False, "synchronous_mode_strict": True}, r"synchronous_mode_strict needs synchronous_mode"),
    ({"parameters": {"listen_addresses": "*"}}, r"parameters.listen_addresses is managed by Patroni"),
    ({"parameters": {"hba_file": "/etc/postgresql/pg_hba.conf"}}, r"parameters.hba_file is managed by Patroni"),
    ({"parameters": {"wal_level": "minimal"}}, r"parameters.wal_level must be replica or logical"),
    ({"parameters": {"hot_standby": "off"}}, r"parameters.hot_standby must be on"),
    ({"parameters": {"max_wal_senders": "3"}}, r"parameters.max_wal_senders must be at least replicas \+ 2 \(5\)"),
    ({"parameters": {"password_encryption": "md5"}}, r"parameters.password_encryption must be scram-sha-256"),
    ({"parameters": {"work_mem": None}}, r"parameters.work_mem must be a text or a number"),
    ({"parameters": {"Work Mem": "4MB"}}, r"parameters has 'Work Mem', which is not a PostgreSQL setting name"),
    ({"users": {"superuser": "postgres"}}, r"users.replication must be a lower-case SQL identifier, got None"),
    ({"users": {"superuser": "postgres", "replication": "postgres"}}, r"users must name a different role"),
    ({"users": {"superuser": "postgres", "replication": "repl", "admin": "x"}}, r"users has unknown key\(s\) admin"),
    ({"auth_method": "trust"}, r"auth_method must be scram-sha-256 or md5, got 'trust'"),
    ({"local_auth_method": "trust"}, r"local_auth_method must be peer, scram-sha-256 or md5, got 'trust'"),
    ({"network_cidrs": ["10.42.0.0/33"]}, r"network_cidrs has '10.42.0.0/33', which is not an address range"),
    ({"pg_hba": ["host all all 0.0.0.0/0 trust"]}, r"pg_hba\[0\] uses trust over the network"),
    ({"pg_hba": ["hostssl replication replicator 10.0.0.0/8 password"]}, r"pg_hba\[0\] uses password over"),
    ({"pg_hba": ["host all all md5"]}, r"pg_hba\[0\] lacks its address or method"),
    ({"port": 8008}, r"restapi_port must differ from port \(8008\)"),
    ({"data_dir": "pgdata"}, r"data_dir must be an absolute path other than /"),
    ({"replica": 3}, r"input has unknown setting\(s\) replica"),
])
def test_bad_input_names_the_setting(changes, message):
    with pytest.raises(AnsibleFilterError, match=r"^patroni_config: " + message):
        render(**changes)


def test_input_that_is_not_a_dict_is_refused():
    with pytest.raises(AnsibleFilterError, match="input must be a dict of settings, got list"):
        patroni_config([SETTINGS])

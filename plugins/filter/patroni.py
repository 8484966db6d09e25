# Copyright: SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE)
"""Filter rendering Patroni's configuration for the PostgreSQL StatefulSet."""

from __future__ import annotations

import ipaddress
import re

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: patroni_config
short_description: Patroni's configuration (Kubernetes DCS) for the PostgreSQL StatefulSet, without any secret
description:
  - Takes the data layer's settings and returns Patroni's configuration
    file as a dict, for a ConfigMap (C(to_nice_yaml)) that every member of
    the StatefulSet mounts. Every pod reads the same file; what differs per
    pod comes from its environment (below).
  - The leader lives in an Endpoints object named after O(_input.scope)
    (C(kubernetes.use_endpoints)), so a Service of that name without a
    selector always routes to the primary; Patroni also keeps the Endpoints
    C(<scope>-config), C(<scope>-sync) and C(<scope>-failover). Patroni sets
    O(_input.role_label) on each pod to C(primary) or C(replica), which a
    replica Service selects.
  - The settings PostgreSQL must share across members (C(max_connections),
    C(wal_level), C(max_wal_senders), ...) go to C(bootstrap.dcs), which
    Patroni writes to the cluster once, at bootstrap or when it adopts an
    existing data directory; later changes of those go through Patroni's
    C(PATCH /config). The others are local, in the file.
  - No password is written. Patroni reads them from the environment of each
    pod, where the StatefulSet puts them from Secrets
    (C(PATRONI_SUPERUSER_PASSWORD), C(PATRONI_REPLICATION_PASSWORD), and
    C(PATRONI_REWIND_PASSWORD) and C(PATRONI_RESTAPI_PASSWORD) when those
    users are named; the image's entrypoint also takes each from a file
    named by the same variable with C(_FILE)). An input with a password
    fails.
  - The pod's environment must also give C(PATRONI_NAME) (the pod name),
    C(PATRONI_KUBERNETES_POD_IP) (C(status.podIP)),
    C(PATRONI_POSTGRESQL_CONNECT_ADDRESS) and
    C(PATRONI_RESTAPI_CONNECT_ADDRESS) (the pod IP with the ports).
  - Fails with a message naming the setting on a bad value.
options:
  _input:
    description: The settings.
    type: dict
    required: true
    suboptions:
      scope:
        description: Cluster name; the primary Service, the leader Endpoints and the scope label's value.
        type: str
        required: true
      namespace:
        description: Namespace of the StatefulSet and of Patroni's objects.
        type: str
        required: true
      labels:
        description: Labels of the StatefulSet's pods; with the scope label they select the members,
          and Patroni sets them on the objects it creates.
        type: dict
        required: true
      scope_label:
        description: Label holding O(_input.scope) on the pods.
        type: str
        default: cluster-name
      role_label:
        description: Label Patroni sets on each pod, C(primary) or C(replica).
        type: str
        default: role
      replicas:
        description: Members of the StatefulSet (1, or 2 and more).
        type: int
        required: true
      synchronous_mode:
        description: A commit is acknowledged once a standby has it; failover goes to that standby only.
        type: bool
        default: false
      synchronous_mode_strict:
        description: With no standby left, refuse writes instead of going on without one.
        type: bool
        default: false
      synchronous_node_count:
        description: Standbys that acknowledge each commit (at most O(_input.replicas) - 1).
        type: int
        default: 1
      parameters:
        description: PostgreSQL settings (the role's C(postgres_config)); those Patroni manages itself are refused.
        type: dict
        default: {}
      data_dir:
        description: PostgreSQL's data directory (the volume's C(pgdata) folder).
        type: str
        default: /var/lib/postgresql/data/pgdata
      bin_dir:
        description: Folder of PostgreSQL's programs.
        type: str
        default: /usr/lib/postgresql/15/bin
      port:
        description: PostgreSQL's port.
        type: int
        default: 5432
      port_name:
        description: Name of that port in the primary Service, which Patroni writes into the leader Endpoints.
        type: str
        default: postgres
      restapi_port:
        description: Port of Patroni's REST API (probes, members, switchover).
        type: int
        default: 8008
      users:
        description: Role names, C(superuser), C(replication) and optionally C(rewind) (without it
          C(pg_rewind) runs as the superuser). Names only.
        type: dict
        default: {superuser: postgres, replication: replicator}
      restapi_username:
        description: User of the REST API's writing calls (switchover, restart, configuration); none, no login.
        type: str
      auth_method:
        description: Authentication over the network, every user and the replication connections.
        type: str
        choices: [scram-sha-256, md5]
        default: scram-sha-256
      local_auth_method:
        description: Authentication on the Unix socket, which only the containers of the pod reach.
        type: str
        choices: [peer, scram-sha-256, md5]
        default: peer
      network_cidrs:
        description: Addresses connections may come from (NetworkPolicies decide which pods may connect at all).
        type: list
        elements: str
        default: [0.0.0.0/0, '::/0']
      pg_hba:
        description: More pg_hba lines, after the replication line and before the line for every user; no
          C(trust) nor C(password) over the network.
        type: list
        elements: str
        default: []
      bypass_api_service:
        description: Reach the API servers behind the C(kubernetes) Service directly (needs reading that
          Service's Endpoints in the C(default) namespace).
        type: bool
        default: false
"""

EXAMPLES = r"""
- name: Patroni's configuration in a ConfigMap
  ansible.builtin.set_fact:
    __postgres_patroni_yml: >-
      {{ {'scope': 'postgres', 'namespace': platform_namespaces.data,
          'labels': platform_common_labels | combine({'app.kubernetes.io/name': 'postgres'}),
          'replicas': postgres_replicas, 'synchronous_mode': postgres_synchronous_mode,
          'parameters': postgres_config, 'users': {'superuser': postgres_superuser, 'replication': 'replicator'}}
         | superkubernetex.platform.patroni_config | to_nice_yaml(indent=2) }}
"""

RETURN = r"""
_value:
  description: Patroni's configuration (scope, kubernetes, bootstrap, postgresql, restapi, watchdog).
  type: dict
"""

DNS_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
LABEL_PREFIX_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?)$")
ROLE_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
PARAMETER_RE = re.compile(r"^[a-z_][a-z0-9_.]*$")

# Patroni's timing (its defaults): the leader key lives ttl seconds, renewed
# every loop_wait; loop_wait + 2 * retry_timeout must stay under ttl.
TTL = 30
LOOP_WAIT = 10
RETRY_TIMEOUT = 10
# A replica more than this many bytes behind is not promoted.
MAXIMUM_LAG_ON_FAILOVER = 1048576

# Settings every member must share: Patroni takes them from the cluster's
# configuration only (local values are ignored with a warning).
CLUSTER_WIDE = frozenset({
    "wal_level", "hot_standby", "max_connections", "max_wal_senders", "wal_keep_segments", "wal_keep_size",
    "max_prepared_transactions", "max_locks_per_transaction", "track_commit_timestamp", "max_replication_slots",
    "max_worker_processes", "wal_log_hints",
})
# Settings Patroni writes itself (addresses, files, replication): a value
# given here would fight it.
MANAGED = {
    "listen_addresses": "Patroni listens on every address at the port setting",
    "port": "set the port setting instead",
    "cluster_name": "Patroni sets it to the scope",
    "data_directory": "set data_dir instead",
    "config_file": "Patroni writes postgresql.conf in the data directory",
    "hba_file": "Patroni writes pg_hba.conf from the pg_hba setting",
    "ident_file": "Patroni writes pg_ident.conf",
    "synchronous_standby_names": "Patroni chooses the synchronous standby (synchronous_mode)",
    "primary_conninfo": "Patroni points each replica at the leader",
    "primary_slot_name": "Patroni names each replica's slot",
}
INPUT_KEYS = frozenset({
    "scope", "namespace", "labels", "scope_label", "role_label", "replicas", "synchronous_mode",
    "synchronous_mode_strict", "synchronous_node_count", "parameters", "data_dir", "bin_dir", "port", "port_name",
    "restapi_port", "users", "restapi_username", "auth_method", "local_auth_method", "network_cidrs", "pg_hba",
    "bypass_api_service",
})
USER_KEYS = ("superuser", "replication", "rewind")
SECRET_RE = re.compile(r"(^|[_.-])(password|passwd|pass|secret|token|key)([_.-]|$)", re.I)


def _fail(name, message):
    raise AnsibleFilterError(f"patroni_config: {name} {message}")


def _no_secrets(value, where):
    """Refuse any key that looks like a credential, at any depth of the input."""
    if isinstance(value, dict):
        for key, item in value.items():
            # Label keys (app.kubernetes.io/...) and PostgreSQL parameters are
            # names, not credentials; their values are checked below.
            if where not in ("labels", "parameters") and SECRET_RE.search(str(key)):
                _fail(f"{where}.{key}" if where else str(key),
                      "looks like a secret: passwords never go into Patroni's configuration (a ConfigMap); "
                      "the pods take them from Secrets through PATRONI_*_PASSWORD in their environment")
            _no_secrets(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for idx, item in enumerate(value):
            _no_secrets(item, f"{where}[{idx}]")


def _bool(settings, name, default):
    value = settings.get(name, default)
    if not isinstance(value, bool):
        _fail(name, f"must be true or false, got {value!r}")
    return value


def _int(settings, name, default, low, high=None):
    value = settings.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"of {low} or more"
        _fail(name, f"must be an integer {bounds}, got {value!r}")
    return value


def _str(settings, name, default, pattern=None, form=""):
    value = settings.get(name, default)
    if not isinstance(value, str) or not value or (pattern and not pattern.match(value)):
        _fail(name, f"must be {form or 'a non-empty text'}, got {value!r}")
    return value


def _label_key(key, where):
    prefix, _, name = key.rpartition("/") if isinstance(key, str) else ("", "", "")
    if not (len(name) <= 63 and LABEL_NAME_RE.match(name) and (not prefix or LABEL_PREFIX_RE.match(prefix))):
        _fail(where, f"{key!r} is not a Kubernetes label name")


def _labels(settings, scope_label, role_label):
    labels = settings.get("labels")
    if not isinstance(labels, dict) or not labels:
        _fail("labels", f"must be a non-empty dict of the pods' labels, got {labels!r}")
    for key, value in labels.items():
        _label_key(key, "labels")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE_RE.match(value):
            _fail(f"labels[{key!r}]", f"must be a Kubernetes label value, got {value!r}")
        if key in (scope_label, role_label):
            _fail("labels", f"must not hold {key!r}: Patroni sets that label itself")
    return dict(labels)


def _users(settings):
    users = settings.get("users", {"superuser": "postgres", "replication": "replicator"})
    if not isinstance(users, dict):
        _fail("users", f"must be a dict of role names (superuser, replication, rewind), got {users!r}")
    unknown = sorted(set(users) - set(USER_KEYS))
    if unknown:
        _fail("users", f"has unknown key(s) {', '.join(map(str, unknown))} (superuser, replication, rewind)")
    names = {}
    for key in USER_KEYS:
        if users.get(key) is None and key == "rewind":
            continue
        value = users.get(key)
        if not isinstance(value, str) or not ROLE_NAME_RE.match(value):
            _fail(f"users.{key}", f"must be a lower-case SQL identifier, got {value!r}")
        names[key] = value
    if len(set(names.values())) != len(names):
        _fail("users", f"must name a different role for each use, got {names}")
    return names


def _parameter_value(name, value):
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and value.strip():
        return value
    _fail(f"parameters.{name}", f"must be a text or a number, got {value!r}")
    return None  # not reached


def _parameters(settings, replicas, auth_method):
    given = settings.get("parameters") or {}
    if not isinstance(given, dict):
        _fail("parameters", f"must be a dict of PostgreSQL settings, got {given!r}")
    cluster, local = {}, {}
    for name, value in given.items():
        if not isinstance(name, str) or not PARAMETER_RE.match(name):
            _fail("parameters", f"has {name!r}, which is not a PostgreSQL setting name")
        if name in MANAGED:
            _fail(f"parameters.{name}", f"is managed by Patroni: {MANAGED[name]}")
        (cluster if name in CLUSTER_WIDE else local)[name] = _parameter_value(name, value)
    if str(cluster.get("wal_level", "replica")) not in ("replica", "logical"):
        _fail("parameters.wal_level", f"must be replica or logical for streaming replication, got {cluster['wal_level']!r}")
    if str(cluster.get("hot_standby", "on")) != "on":
        _fail("parameters.hot_standby", f"must be on: replicas serve reads, got {cluster['hot_standby']!r}")
    encryption = str(local.get("password_encryption", "scram-sha-256"))
    if auth_method == "scram-sha-256" and encryption != "scram-sha-256":
        _fail("parameters.password_encryption",
              f"must be scram-sha-256 when auth_method is scram-sha-256, got {encryption!r}")
    # One WAL sender and one slot per replica, two more while a new member
    # copies the data (pg_basebackup), and never fewer than Patroni's 10.
    needed = replicas + 2
    for name in ("max_wal_senders", "max_replication_slots"):
        if name not in cluster:
            cluster[name] = max(10, needed)
        else:
            try:
                number = int(cluster[name])
            except (TypeError, ValueError):
                number = -1
            if number < needed:
                _fail(f"parameters.{name}", f"must be at least replicas + 2 ({needed}), got {cluster[name]!r}")
    cluster.setdefault("wal_level", "replica")
    cluster.setdefault("hot_standby", "on")
    # pg_rewind (a former primary rejoining) needs it on a cluster made
    # without data checksums, such as an adopted one.
    cluster.setdefault("wal_log_hints", "on")
    return cluster, local


def _cidrs(settings):
    cidrs = settings.get("network_cidrs", ["0.0.0.0/0", "::/0"])
    if not isinstance(cidrs, list) or not cidrs:
        _fail("network_cidrs", f"must be a non-empty list of address ranges, got {cidrs!r}")
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except (TypeError, ValueError):
            _fail("network_cidrs", f"has {cidr!r}, which is not an address range such as 10.42.0.0/16")
    return list(cidrs)


def _extra_hba(settings):
    lines = settings.get("pg_hba") or []
    if not isinstance(lines, list):
        _fail("pg_hba", f"must be a list of pg_hba.conf lines, got {lines!r}")
    for idx, line in enumerate(lines):
        if not isinstance(line, str) or not line.split():
            _fail(f"pg_hba[{idx}]", f"must be a pg_hba.conf line, got {line!r}")
        fields = line.split()
        kind = fields[0]
        if kind not in ("local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"):
            _fail(f"pg_hba[{idx}]", f"must start with local or host..., got {line!r}")
        # local TYPE DATABASE USER METHOD; host TYPE DATABASE USER ADDRESS METHOD
        method_at = 3 if kind == "local" else 4
        if len(fields) <= method_at:
            _fail(f"pg_hba[{idx}]", f"lacks its address or method: {line!r}")
        method = fields[method_at]
        if kind != "local" and method in ("trust", "password"):
            _fail(f"pg_hba[{idx}]", f"uses {method} over the network: {line!r}")
    return list(lines)


def _pg_hba(users, cidrs, extra, auth_method, local_auth_method):
    # Patroni itself and the metrics exporter connect over the loopback
    # (localhost), whatever network_cidrs says.
    hba = [f"local all all {local_auth_method}",
           f"host all all 127.0.0.1/32 {auth_method}", f"host all all ::1/128 {auth_method}"]
    hba += [f"host replication {users['replication']} {cidr} {auth_method}" for cidr in cidrs]
    hba += extra
    hba += [f"host all all {cidr} {auth_method}" for cidr in cidrs]
    return hba


def patroni_config(settings):
    if not isinstance(settings, dict):
        _fail("input", f"must be a dict of settings, got {type(settings).__name__}")
    unknown = sorted(set(map(str, settings)) - INPUT_KEYS)
    _no_secrets(settings, "")
    if unknown:
        _fail("input", f"has unknown setting(s) {', '.join(unknown)}")

    scope = _str(settings, "scope", None, DNS_LABEL_RE, "a DNS label")
    if len(scope) > 54:
        _fail("scope", f"must have 54 characters at most (Patroni adds -failover to it), got {scope!r}")
    namespace = _str(settings, "namespace", None, DNS_LABEL_RE, "a namespace name")
    if len(namespace) > 63:
        _fail("namespace", f"must have 63 characters at most, got {namespace!r}")
    scope_label = _str(settings, "scope_label", "cluster-name")
    _label_key(scope_label, "scope_label")
    role_label = _str(settings, "role_label", "role")
    _label_key(role_label, "role_label")
    if scope_label == role_label:
        _fail("role_label", f"must differ from scope_label, got {role_label!r}")
    labels = _labels(settings, scope_label, role_label)

    replicas = _int(settings, "replicas", None, 1)
    synchronous_mode = _bool(settings, "synchronous_mode", False)
    strict = _bool(settings, "synchronous_mode_strict", False)
    sync_count = _int(settings, "synchronous_node_count", 1, 1)
    if synchronous_mode and replicas < 2:
        _fail("synchronous_mode", f"needs replicas of 2 or more (a standby to acknowledge commits), got replicas {replicas}")
    if synchronous_mode and sync_count > replicas - 1:
        _fail("synchronous_node_count", f"must be at most replicas - 1 ({replicas - 1}), got {sync_count}")
    if strict and not synchronous_mode:
        _fail("synchronous_mode_strict", "needs synchronous_mode")

    port = _int(settings, "port", 5432, 1, 65535)
    restapi_port = _int(settings, "restapi_port", 8008, 1, 65535)
    if port == restapi_port:
        _fail("restapi_port", f"must differ from port ({port})")
    port_name = _str(settings, "port_name", "postgres", DNS_LABEL_RE, "a port name (DNS label)")
    data_dir = _str(settings, "data_dir", "/var/lib/postgresql/data/pgdata")
    bin_dir = _str(settings, "bin_dir", "/usr/lib/postgresql/15/bin")
    for name, path in (("data_dir", data_dir), ("bin_dir", bin_dir)):
        if not path.startswith("/") or path.rstrip("/") == "":
            _fail(name, f"must be an absolute path other than /, got {path!r}")

    auth_method = settings.get("auth_method", "scram-sha-256")
    if auth_method not in ("scram-sha-256", "md5"):
        _fail("auth_method", f"must be scram-sha-256 or md5, got {auth_method!r}")
    local_auth_method = settings.get("local_auth_method", "peer")
    if local_auth_method not in ("peer", "scram-sha-256", "md5"):
        _fail("local_auth_method", f"must be peer, scram-sha-256 or md5, got {local_auth_method!r}")
    users = _users(settings)
    restapi_username = settings.get("restapi_username")
    if restapi_username is not None and (not isinstance(restapi_username, str)
                                         or not re.match(r"^[A-Za-z0-9_.-]{1,63}$", restapi_username)):
        _fail("restapi_username", f"must be a user name of letters, digits, '_', '.' or '-', got {restapi_username!r}")
    bypass = _bool(settings, "bypass_api_service", False)

    cluster_parameters, local_parameters = _parameters(settings, replicas, auth_method)
    local_parameters.setdefault("unix_socket_directories", "/var/run/postgresql")
    hba = _pg_hba(users, _cidrs(settings), _extra_hba(settings), auth_method, local_auth_method)

    dcs = {
        "ttl": TTL,
        "loop_wait": LOOP_WAIT,
        "retry_timeout": RETRY_TIMEOUT,
        "maximum_lag_on_failover": MAXIMUM_LAG_ON_FAILOVER,
        # A primary that cannot reach the API server keeps its role as long
        # as every member still answers it over the REST API: the API server
        # is then no single point of failure for writes.
        "failsafe_mode": True,
        "synchronous_mode": synchronous_mode,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": cluster_parameters,
        },
    }
    if synchronous_mode:
        dcs["synchronous_mode_strict"] = strict
        dcs["synchronous_node_count"] = sync_count

    authentication = {key: {"username": name} for key, name in users.items()}
    restapi = {"listen": f"*:{restapi_port}"}
    if restapi_username:
        restapi["authentication"] = {"username": restapi_username}

    return {
        "scope": scope,
        "kubernetes": {
            "namespace": namespace,
            "labels": labels,
            "scope_label": scope_label,
            "role_label": role_label,
            # Patroni 4's own values, written out: the Services select them.
            "leader_label_value": "primary",
            "follower_label_value": "replica",
            "standby_leader_label_value": "primary",
            "use_endpoints": True,
            "ports": [{"name": port_name, "port": port}],
            "bypass_api_service": bypass,
        },
        "bootstrap": {
            "dcs": dcs,
            # A new cluster only: an adopted data directory keeps its own.
            "initdb": [{"encoding": "UTF8"}, {"locale": "en_US.UTF-8"}, "data-checksums",
                       {"auth-local": local_auth_method}, {"auth-host": auth_method}],
        },
        "postgresql": {
            # Every address, IPv4 and IPv6.
            "listen": f"*:{port}",
            "data_dir": data_dir,
            "bin_dir": bin_dir,
            # Written by Patroni before a copy from the leader; /tmp is the
            # pod's writable emptyDir (the root filesystem is read-only).
            "pgpass": "/tmp/pgpass",
            "authentication": authentication,
            "parameters": local_parameters,
            "pg_hba": hba,
            "basebackup": [{"checkpoint": "fast"}],
        },
        "restapi": restapi,
        # No watchdog device in a pod of the restricted profile.
        "watchdog": {"mode": "off"},
    }


class FilterModule:
    def filters(self):
        return {"patroni_config": patroni_config}

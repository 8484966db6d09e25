"""The k3s config.yaml template for each node role, rendered by Ansible with
the role's own defaults and vars for a three-server HA inventory and for a
single server."""
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PLAYBOOK = """
- hosts: k3s_server:k3s_agent
  gather_facts: false
  vars_files:
    - {root}/roles/k3s/vars/main.yml
  tasks:
    - ansible.builtin.template:
        src: {root}/roles/k3s/templates/config.yaml.j2
        dest: "{out}/{{{{ inventory_hostname }}}}.yaml"
        mode: "0600"
      delegate_to: localhost
"""


def render(tmp_path, servers, agents, host_vars=None):
    """Role defaults go in as group vars (below host vars, as role defaults are)."""
    host_vars = host_vars or {}
    (tmp_path / "group_vars").mkdir()
    defaults = yaml.safe_load(open(f"{ROOT}/roles/k3s/defaults/main.yml"))
    (tmp_path / "group_vars" / "all.yml").write_text(yaml.safe_dump({**defaults, "ansible_connection": "local"}))
    lines = ["all:", "  children:", "    k3s_server:", "      hosts:"]
    for i, name in enumerate(servers, 1):
        lines.append(f"        {name}: {{ansible_host: 10.0.0.{i}, {host_vars.get(name, '')}}}")
    if agents:
        lines += ["    k3s_agent:", "      hosts:"]
        lines += [f"        {name}: {{ansible_host: 10.0.1.{i}}}" for i, name in enumerate(agents, 1)]
    (tmp_path / "hosts.yml").write_text("\n".join(lines) + "\n")
    (tmp_path / "play.yml").write_text(PLAYBOOK.format(root=ROOT, out=tmp_path))
    bindir = os.path.dirname(sys.executable)
    proc = subprocess.run([os.path.join(bindir, "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
                           str(tmp_path / "play.yml")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return {name: yaml.safe_load((tmp_path / f"{name}.yaml").read_text()) for name in servers + agents}


def test_ha_servers_and_agents(tmp_path):
    configs = render(tmp_path, ["s1", "s2", "s3"], ["a1"],
                     {"s2": "k3s_node_labels: [zone=b], k3s_node_taints: ['dedicated=db:NoSchedule']"})
    first, second, agent = configs["s1"], configs["s2"], configs["a1"]
    assert first["cluster-init"] is True and "server" not in first
    assert second["server"] == "https://10.0.0.1:6443" and "cluster-init" not in second
    assert second["node-label"] == ["zone=b"] and second["node-taint"] == ["dedicated=db:NoSchedule"]
    for server in (first, second, configs["s3"]):
        assert server["secrets-encryption"] is True
        assert "10.0.0.1" in server["tls-san"]
        assert server["write-kubeconfig-mode"] == "0600"
    assert agent == {"server": "https://10.0.0.1:6443"}


def test_a_single_server_needs_no_embedded_etcd_cluster(tmp_path):
    [config] = render(tmp_path, ["s1"], []).values()
    assert "cluster-init" not in config and "server" not in config


def test_disabled_components_are_listed(tmp_path):
    configs = render(tmp_path, ["s1"], [], {"s1": "k3s_disable: [servicelb]"})
    assert configs["s1"]["disable"] == ["servicelb"]

"""plugins/lookup/template.py renders what ansible.builtin.template's lookup
renders (its fast path uses ansible-core internals: this pins the result on
the core the requirements install), including template_vars, the
template_* variables, includes from the template's folder and the
builtin's trim_blocks."""
import json

from static_support import run_ansible

TEMPLATE = """{# a comment #}
title: {{ title }}
{% for k in items %}
- {{ k }}: {{ extra.size | default(0) }}
{% endfor %}
file: {{ template_path | basename }} {{ template_host is defined }}
{% include '_part.j2' %}
"""


def test_the_fast_lookup_renders_what_the_builtin_renders(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "page.j2").write_text(TEMPLATE)
    (tmp_path / "templates" / "_part.j2").write_text("part of {{ title }}\n")
    args = "'page.j2', template_vars={'extra': {'size': 3}}"
    playbook = tmp_path / "play.yml"
    playbook.write_text(f"""
- hosts: localhost
  gather_facts: false
  vars:
    title: skx
    items: [a, b]
  tasks:
    - ansible.builtin.copy:
        content: "{{{{ {{'fast': lookup('superkubernetex.platform.template', {args}),
                      'builtin': lookup('ansible.builtin.template', {args})}} | to_json }}}}"
        dest: {tmp_path}/out.json
        mode: "0644"
""")
    proc = run_ansible("ansible-playbook", "-i", "localhost,", "-c", "local",
                       "-e", "ansible_python_interpreter={{ ansible_playbook_python }}", str(playbook))
    assert "using the builtin template lookup" not in proc.stdout + proc.stderr, "the fast path failed"
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["fast"] == out["builtin"]
    assert "- b: 3\n" in out["fast"] and "part of skx" in out["fast"] and "file: page.j2 True" in out["fast"]

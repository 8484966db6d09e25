"""The environment of an ansible-playbook run started by a test.

`molecule verify` runs the end-to-end tests with its own ANSIBLE_* settings
exported (its configuration file, failures printed on stderr, forced
colours) and MOLECULE_* ones: a playbook the test starts must read the
checkout's ansible.cfg as an operator's run does, and print plain text the
test can search."""
import os


def playbook_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.update(extra)
    return env

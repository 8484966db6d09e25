"""Every role documents exactly the variables it defaults, with the same values."""
import glob
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(f"{ROOT}/roles/*/defaults"))


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_agree(role):
    defaults = yaml.safe_load(open(f"{ROOT}/roles/{role}/defaults/main.yml")) or {}
    specs = yaml.safe_load(open(f"{ROOT}/roles/{role}/meta/argument_specs.yml"))["argument_specs"]["main"]
    options = specs["options"]
    assert sorted(defaults) == sorted(options), f"{role}: defaults and argument_specs list different variables"
    for name, value in defaults.items():
        assert options[name].get("description"), f"{role}: {name} has no description"
        assert options[name].get("default") == value, f"{role}: default of {name} differs"


@pytest.mark.parametrize("role", ROLES)
def test_public_variables_carry_the_role_prefix(role):
    defaults = yaml.safe_load(open(f"{ROOT}/roles/{role}/defaults/main.yml")) or {}
    assert all(name.startswith(f"{role}_") for name in defaults), sorted(n for n in defaults if not n.startswith(role))


@pytest.mark.parametrize("role", ROLES)
def test_tasks_main_starts_with_the_preflight(role):
    main = yaml.safe_load(open(f"{ROOT}/roles/{role}/tasks/main.yml"))
    first = main[0]
    target = first.get("ansible.builtin.import_tasks") or first.get("ansible.builtin.include_tasks") or ""
    assert "preflight" in str(target), f"{role}: tasks/main.yml should start with preflight.yml"

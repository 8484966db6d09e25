#!/usr/bin/env python3
"""Write meta/argument_specs.yml of a role from its defaults/main.yml.

The comment block above each variable becomes its description and the type
is taken from the default value. Run it when adding a role, then edit the
result (choices, required, elements); tests/static/test_roles.py checks that
the two files keep agreeing.

    python tools/argspecs.py roles/<role> "Short description of the role"
"""
import re
import sys
from pathlib import Path

import yaml


def _type(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "str"


def comments(text):
    """Map each top-level variable to the comment block just above it."""
    found, block = {}, []
    for line in text.splitlines():
        if line.startswith("#"):
            block.append(line.lstrip("#").strip())
        elif re.match(r"^[a-z_][a-z0-9_]*:", line):
            found[line.split(":", 1)[0]] = " ".join(b for b in block if b) or line.split(":", 1)[0]
            block = []
        elif not line.strip():
            block = []
    return found


class IndentDumper(yaml.SafeDumper):
    """Indent list items under their key, as yamllint expects."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def dump(data):
    return "---\n" + yaml.dump(data, Dumper=IndentDumper, sort_keys=False, width=100, default_flow_style=False)


def main(role_dir, short):
    role = Path(role_dir)
    text = (role / "defaults" / "main.yml").read_text()
    defaults = yaml.safe_load(text) or {}
    docs = comments(text)
    options = {}
    for name, value in defaults.items():
        spec = {"description": docs.get(name, name), "type": _type(value)}
        if value is not None:
            spec["default"] = value
        if isinstance(value, list):
            spec["elements"] = _type(value[0]) if value else "str"
        options[name] = spec
    spec = {"argument_specs": {"main": {"short_description": short, "options": options}}}
    (role / "meta" / "argument_specs.yml").write_text(dump(spec))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

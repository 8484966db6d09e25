"""Fixtures of the observability tests; helpers live in monitoring_support
(a unique module name: every test folder has its own conftest)."""
from monitoring_support import rendered, rendered_defaults, tools  # noqa: F401  (fixtures)

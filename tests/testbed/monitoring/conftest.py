"""Fixtures of the observability tests, shared with the other axes' monitoring
folders through lib/monitoring_support.py (each variant renders once a session)."""
from lib.monitoring_support import rendered, tools  # noqa: F401  (fixtures)

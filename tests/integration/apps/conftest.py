"""Fixtures of the reference-app tests; they live in apps_support.py so test
modules can import its helpers by a name no other conftest shares."""
from apps_support import stack, stripe_mock, user_token  # noqa: F401

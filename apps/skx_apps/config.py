"""Configuration: environment variables and Secret files, nothing else.

Errors name the variable and what is expected, and are raised before the
service touches anything. Secret files are read when they are needed, never
cached for long, so a rotated Secret (the kubelet swaps the mounted files)
is picked up without a restart.
"""
import os
import re


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


def env_str(name, default=None, required=False):
    value = os.environ.get(name, "")
    if value == "":
        if required and default is None:
            raise ConfigError(f"{name} is required and not set")
        return default
    return value


def env_int(name, default, minimum=None, maximum=None):
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def env_url(name, default=None, required=False):
    value = env_str(name, default, required)
    if value is not None and not re.match(r"^https?://[^/\s]+", value):
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/") if value else value


def env_dir(name, default=None, required=False):
    value = env_str(name, default, required)
    if value is not None and not os.path.isdir(value):
        raise ConfigError(f"{name} must name an existing directory, {value!r} is not one")
    return value


def secret_dir_snapshot(path):
    """The directory to read a mounted Secret from, consistently.

    The kubelet writes a new version of a Secret into a fresh directory and
    swaps the ``..data`` symlink; resolving it once means every file read
    for one use comes from the same version (username and password match).
    """
    data = os.path.join(path, "..data")
    return os.path.realpath(data) if os.path.islink(data) else path


def read_secret_file(path, what):
    """One value from a Secret file, without its trailing newline."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None


def read_secret_lines(path, what):
    """Every non-empty line of a Secret file (e.g. several webhook secrets)."""
    return [line.strip() for line in read_secret_file(path, what).splitlines() if line.strip()]

"""The frontend's Redis settings (apps/skx_apps/frontend.py): REDIS_SENTINEL
parsed into the Sentinels' addresses, REDIS_SENTINEL_MASTER required with it,
REDIS_HOST required without it. The client against real Sentinels is in
tests/integration/redis/test_redis_sentinel.py."""
import pytest

from skx_apps.config import ConfigError
from skx_apps.frontend import Sessions, sentinel_addresses


def test_sentinel_addresses():
    assert sentinel_addresses("redis-sentinel.skx-data.svc:26379") == [("redis-sentinel.skx-data.svc", 26379)]
    assert sentinel_addresses("a:1, b:26379") == [("a", 1), ("b", 26379)]


@pytest.mark.parametrize("value", ["redis-sentinel", ":26379", "host:", "host:port", "host:0", "host:65536", "a:1,"])
def test_sentinel_addresses_refuses(value):
    with pytest.raises(ConfigError, match="REDIS_SENTINEL must be host:port"):
        sentinel_addresses(value)


@pytest.fixture
def password_file(tmp_path, monkeypatch):
    path = tmp_path / "password"
    path.write_text("pw")
    for name in ("REDIS_HOST", "REDIS_PORT", "REDIS_SENTINEL", "REDIS_SENTINEL_MASTER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(path))
    return path


def test_sentinel_needs_the_master_name(password_file, monkeypatch):
    monkeypatch.setenv("REDIS_SENTINEL", "s:26379")
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER is required"):
        Sessions()
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "redis")
    sessions = Sessions()
    assert (sessions.sentinels, sessions.master, sessions.host) == ([("s", 26379)], "redis", None)


def test_without_sentinel_the_host_is_required(password_file, monkeypatch):
    with pytest.raises(ConfigError, match="REDIS_HOST is required"):
        Sessions()
    monkeypatch.setenv("REDIS_HOST", "redis.skx-data.svc")
    sessions = Sessions()
    assert (sessions.sentinels, sessions.host, sessions.port) == (None, "redis.skx-data.svc", 6379)

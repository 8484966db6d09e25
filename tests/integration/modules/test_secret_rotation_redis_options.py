"""secret_rotation's redis options through ansible (the real argument
parsing and no_log): the combinations it refuses, each named in the message,
and the Sentinels' rotation password never in what it prints or returns."""
import pytest

SENTINEL_PASSWORD = "sentinel-rotation-pw-4f2a9c"
BASE = dict(kind="redis", secrets=[{"namespace": "skx-data", "name": "redis-auth"}],
            kubeconfig="/nonexistent/kubeconfig")


@pytest.mark.parametrize("redis, message", [
    (dict(namespace="skx-data", pod="redis-0", pods=["redis-0", "redis-1"]),
     "redis.pod and redis.pods are mutually exclusive"),
    (dict(namespace="skx-data", pods=[]), "redis.pods: expected one or more distinct pod names"),
    (dict(namespace="skx-data", pods=["redis-0", "redis-0"]), "redis.pods: expected one or more distinct"),
    (dict(pods=["redis-0"]), "redis: pod (or pods) and namespace go together"),
    (dict(sentinel_port=26379, sentinel_password=SENTINEL_PASSWORD), "redis.sentinel_port: the Sentinels are reached"),
    (dict(namespace="skx-data", pods=["redis-0"], sentinel_port=26379), "redis.sentinel_password: required with"),
    (dict(namespace="skx-data", pods=["redis-0"], sentinel_password=SENTINEL_PASSWORD),
     "redis.sentinel_password: required with redis.sentinel_port, and only with it"),
], ids=["pod-and-pods", "no-pods", "same-pod-twice", "no-namespace", "sentinel-without-pods",
        "sentinel-without-password", "password-without-sentinel"])
def test_refused_combinations_name_the_option(run_module, redis, message):
    result = run_module("secret_rotation", dict(BASE, redis=redis))
    assert result.failed and message in result["msg"], result.stdout[-2000:]
    assert SENTINEL_PASSWORD not in result.stdout + result.stderr


def test_the_sentinel_password_is_not_shown(run_module):
    """Valid options, no cluster: the module stops at the kubeconfig, and the
    password is hidden in the invocation it returns."""
    redis = dict(namespace="skx-data", pods=["redis-0", "redis-1", "redis-2"], sentinel_port=26379,
                 sentinel_password=SENTINEL_PASSWORD)
    result = run_module("secret_rotation", dict(BASE, redis=redis))
    assert result.failed and "Cannot use the cluster" in result["msg"], result.stdout[-2000:]
    assert SENTINEL_PASSWORD not in result.stdout + result.stderr
    assert result["invocation"]["module_args"]["redis"]["sentinel_password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"

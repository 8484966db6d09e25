"""A mounted Secret as the kubelet presents it, for rotation tests without a
cluster: one file per key in a version directory, switched atomically through
the ``..data`` symlink, read by clients the way the reference apps read it
(apps/skx_apps/config.py secret_dir_snapshot)."""
import os
import threading
import time
import uuid


class SecretDir:
    """The store side of module_utils/rotation.py: read() and publish(data).

    publish() stands for "patch the Secret, roll the workloads, wait": it
    switches the files, then waits ``rollout_seconds``. ``fail_on_publish``
    makes the n-th publish fail after switching the files, like a rollout that
    never becomes ready."""

    def __init__(self, path, data, rollout_seconds=0.5):
        self.path = str(path)
        os.makedirs(self.path, exist_ok=True)
        self.rollout_seconds = rollout_seconds
        self.fail_on_publish = None
        self.publications = 0
        self._write(data)

    def _write(self, data):
        version = os.path.join(self.path, "..%s" % uuid.uuid4().hex)
        os.mkdir(version)
        for key, value in data.items():
            with open(os.path.join(version, key), "w") as f:
                f.write(value)
        link = os.path.join(self.path, "..data_tmp")
        os.symlink(os.path.basename(version), link)
        os.replace(link, os.path.join(self.path, "..data"))

    def read(self):
        directory = os.path.realpath(os.path.join(self.path, "..data"))
        result = {}
        for key in os.listdir(directory):
            with open(os.path.join(directory, key)) as f:
                result[key] = f.read()
        return result

    def publish(self, data):
        self.publications += 1
        self._write(data)
        time.sleep(self.rollout_seconds)
        if self.fail_on_publish == self.publications:
            raise RuntimeError("Deployment skx-test/consumer did not roll out within 0.5s")


class ClientLoop:
    """A consumer opening a new connection with the Secret's current content
    again and again, counting attempts and failures."""

    def __init__(self, secret, attempt):
        self.secret, self.attempt = secret, attempt
        self.attempts = self.failures = 0
        self.errors = []
        self.seen = set()  # what each successful attempt returned
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.attempts += 1
            try:
                self.seen.add(self.attempt(self.secret.read()))
            except Exception as exc:  # every failure counts, whatever its kind
                self.failures += 1
                self.errors.append(str(exc))
            time.sleep(0.005)

    def __enter__(self):
        self._thread.start()
        while self.attempts < 20:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        time.sleep(0.3)  # keep connecting after the last step
        self._stop.set()
        self._thread.join(10)

"""Run one of the collection's modules through ``ansible`` from the repository
root, so the real module code path (argument parsing, no_log, check mode,
diff) is what a test exercises. Shared by the integration and testbed tests."""
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINK = os.path.join(ROOT, ".collections", "ansible_collections", "superkubernetex", "platform")


def ensure_collection_link():
    """ansible.cfg resolves superkubernetex.platform from .collections."""
    if not os.path.exists(LINK):
        os.makedirs(os.path.dirname(LINK), exist_ok=True)
        os.symlink("../../..", LINK)


class ModuleRun:
    def __init__(self, proc):
        self.stdout, self.stderr = proc.stdout, proc.stderr
        start = proc.stdout.index("\n{") + 1
        doc = json.JSONDecoder().raw_decode(proc.stdout[start:])[0]
        self.result = doc["plays"][0]["tasks"][0]["hosts"]["localhost"]

    def __getitem__(self, key):
        return self.result[key]

    def get(self, key, default=None):
        return self.result.get(key, default)

    @property
    def failed(self):
        return bool(self.result.get("failed"))


def run_module(module, args, check=False, timeout=300):
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    cmd = ["ansible", "localhost", "--diff", "-m", "superkubernetex.platform." + module, "-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    return ModuleRun(subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout))

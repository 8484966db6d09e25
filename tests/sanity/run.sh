#!/usr/bin/env bash
# ansible-test on the collection: sanity on its modules, module_utils and
# doc fragments, or (first argument "units") its unit tests of
# tests/unit/plugins. ansible-test needs the collection under
# .../ansible_collections/superkubernetex/platform, so a copy is made under
# /tmp with the collections our module_utils import (from .venv).
#   tests/sanity/run.sh                         # every sanity test
#   tests/sanity/run.sh --test validate-modules # one test
#   tests/sanity/run.sh units                   # ansible-test units
# tests/static/test_ansible_test.py runs both from the README's test command.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODE=sanity
if [ "${1:-}" = units ]; then MODE=units; shift; fi
TREE=${SKX_SANITY_TREE:-/tmp/skx-$MODE}
SITE=$ROOT/.venv/lib/python3.11/site-packages/ansible_collections
COLL=$TREE/ansible_collections/superkubernetex/platform

rm -rf "$TREE" && mkdir -p "$COLL/tests" "$TREE/ansible_collections/community" "$TREE/ansible_collections/kubernetes"
cp -r "$ROOT/plugins" "$ROOT/meta" "$ROOT/galaxy.yml" "$COLL/"
cp -r "$ROOT/tests/sanity" "$COLL/tests/"
if [ "$MODE" = units ]; then
    mkdir -p "$COLL/tests/unit"
    cp -r "$ROOT/tests/unit/plugins" "$COLL/tests/unit/"
    # The rotation tests check the keys against the reference apps' token
    # code (apps/skx_apps, on pytest.ini's pythonpath in the checkout):
    # ansible-test sets the tests' path itself, so the copy's conftest adds
    # the checkout's apps/ folder to it, as pytest.ini does.
    printf 'import sys\n\nsys.path.append(%s)\n' "'$ROOT/apps'" > "$COLL/tests/unit/conftest.py"
    # ... and its venv gets the packages that code imports, at the
    # checkout's pins.
    grep -iE '^(pyjwt|cryptography|prometheus-client)==' "$ROOT/requirements-test.txt" > "$COLL/tests/unit/requirements.txt"
fi
cp -r "$SITE/community/postgresql" "$TREE/ansible_collections/community/"
cp -r "$SITE/kubernetes/core" "$TREE/ansible_collections/kubernetes/"
find "$TREE" -name __pycache__ -prune -exec rm -rf {} +

# ansible-test bootstraps pip in its sanity venvs with a script from
# ci-files.testing.ansible.com; where that host is unreachable, a stand-in
# uses the pip bundled with Python and the system CA bundle.
GET_PIP=$HOME/.ansible/test/cache/get_pip_24_2.py
if [ ! -s "$GET_PIP" ] && ! curl -sfo "$GET_PIP" https://ci-files.testing.ansible.com/ansible-test/get-pip-24.2.py; then
    mkdir -p "$(dirname "$GET_PIP")"
    cat > "$GET_PIP" <<'PY'
import ensurepip, os, subprocess, sys
ensurepip.bootstrap()
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
cert = os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--cert", cert] + args))
PY
fi

cd "$COLL"
# shellcheck disable=SC1091
source "$ROOT/.venv/bin/activate"
if [ "$MODE" = units ]; then
    # --venv: ansible-test's own test requirements (pytest-xdist among them)
    # in a virtualenv of its own, from PyPI.
    exec ansible-test units --python 3.11 --venv "$@"
fi
exec ansible-test sanity --python 3.11 "$@" plugins/modules/ plugins/module_utils/ plugins/doc_fragments/

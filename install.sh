#!/usr/bin/env bash
# Sets up the control node and, given an inventory, deploys the platform.
#
#   ./install.sh                        set up only (venv, collections, checks)
#   ./install.sh inventories/vm         set up, then ansible-playbook site.yml
#   ./install.sh inventories/testbed    set up, start the local test cluster, deploy
#
# Extra arguments go to ansible-playbook (e.g. --ask-vault-pass, --check --diff).
set -euo pipefail

cd "$(dirname "$0")"
ROOT=$PWD
VENV=$ROOT/.venv

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

# --- Python ----------------------------------------------------------------
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || die "python3 is required (3.10 or 3.11; ansible 12 does not run on older)"
"$PYTHON" - <<'PY' || die "Python 3.10 or newer is required"
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY

# --- Debian packages the tests use (real PostgreSQL and Redis, pgBackRest for
# the point-in-time recovery test) and buildah, which playbooks/images.yml
# builds the platform's images with.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  for pkg in postgresql redis-server pgbackrest git curl buildah; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
  done
  if [ ${#need[@]} -gt 0 ]; then
    say "Installing Debian packages: ${need[*]}"
    apt-get update -qq || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

# --- Virtualenv with pinned dependencies ----------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "Creating the virtualenv $VENV"
  "$PYTHON" -m venv "$VENV" || die "cannot create a virtualenv (apt-get install python3-venv)"
fi
stamp=$VENV/.requirements.sha256
want=$(cat requirements.txt requirements-test.txt constraints.txt 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "Installing the pinned Python dependencies"
  "$VENV/bin/pip" install -q --upgrade pip wheel
  for attempt in 1 2 3; do
    "$VENV/bin/pip" install -q -r requirements-test.txt -c constraints.txt && break
    [ "$attempt" = 3 ] && die "pip install failed three times"
    sleep 5
  done
  echo "$want" > "$stamp"
fi

# checkov (policy scan of the rendered manifests) pins libraries that clash
# with ansible-lint's, so it gets a virtualenv of its own.
if [ ! -x "$ROOT/.venv-checkov/bin/checkov" ]; then
  say "Installing checkov in .venv-checkov"
  "$PYTHON" -m venv "$ROOT/.venv-checkov"
  "$ROOT/.venv-checkov/bin/pip" install -q -r requirements-checkov.txt || die "pip install checkov failed"
fi

# --- The collection, resolved from this checkout ---------------------------
mkdir -p .collections/ansible_collections/superkubernetex
ln -sfn ../../.. .collections/ansible_collections/superkubernetex/platform

# --- Preflight -------------------------------------------------------------
say "Checking the control node"
# Read the whole output (head would close the pipe early: ansible then dies
# on a broken pipe and, with pipefail, so would this script).
ansible_version=$("$VENV/bin/ansible" --version) || die "ansible does not start from $VENV"
echo "${ansible_version%%$'\n'*}"
collections=$("$VENV/bin/ansible-galaxy" collection list 2>/dev/null) || true
for collection in kubernetes.core community.postgresql community.crypto community.general ansible.posix; do
  grep -q "^$collection " <<<"$collections" || die "collection $collection is missing from the ansible bundle"
done
"$VENV/bin/python" -c "import kubernetes, psycopg, websocket, yaml" || die "the kubernetes, psycopg, websocket-client and PyYAML Python libraries are missing"
"$VENV/bin/ansible-doc" superkubernetex.platform.tenant_database >/dev/null 2>&1 \
  || die "the superkubernetex.platform collection does not resolve from $ROOT/.collections"

[ $# -eq 0 ] && { say "Set up done. Deploy with: ./install.sh inventories/<vm|existing|testbed>"; exit 0; }

# --- Deploy ------------------------------------------------------------------
INVENTORY=$1; shift
[ -e "$INVENTORY" ] || die "inventory $INVENTORY not found (try inventories/vm, inventories/existing or inventories/testbed)"
if [ "$(basename "$INVENTORY")" = testbed ]; then
  say "Starting the local test cluster"
  kubeconfig=$(testbed/up | tail -n 1)   # its last line is KUBECONFIG=<path>
  export "${kubeconfig?}"
fi
say "Deploying the platform with $INVENTORY"
"$VENV/bin/ansible-playbook" site.yml -i "$INVENTORY" "$@"
"$VENV/bin/ansible-playbook" playbooks/summary.yml -i "$INVENTORY" "$@"

#!/usr/bin/env bash
# Deploy benchmarks on the testbed. Prints figures; asserts nothing.
#   tests/benchmarks/deploy.sh            re-run, render and raw-apply figures
#   tests/benchmarks/deploy.sh --fresh    also deletes the platform namespaces
#                                         first and times a deployment from empty
set -euo pipefail
cd "$(dirname "$0")/../.."
INVENTORY=inventories/testbed
export KUBECONFIG=${KUBECONFIG:-/var/lib/skx-testbed/admin.kubeconfig}
KUBECTL=$(command -v kubectl || echo /var/cache/skx-testbed/bin/kubectl)
PLAYBOOK=.venv/bin/ansible-playbook
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

seconds() { local start=$1; echo "$(( $(date +%s%N) - start ))" | awk '{printf "%.1f", $1/1e9}'; }
changed() { grep -E '^localhost ' "$1" | sed -E 's/.*changed=([0-9]+).*/\1/'; }

if [ "${1:-}" = "--fresh" ]; then
  "$KUBECTL" delete namespace skx-app skx-data skx-monitoring skx-logging skx-instance1 skx-instance2 skx-instance3 \
    --ignore-not-found --wait=true >/dev/null
  t=$(date +%s%N)
  "$PLAYBOOK" site.yml -i "$INVENTORY" > "$out/first.log"
  echo "site.yml from an empty cluster to all Ready: $(seconds "$t") s (changed=$(changed "$out/first.log"))"
fi

t=$(date +%s%N)
"$PLAYBOOK" site.yml -i "$INVENTORY" > "$out/rerun.log"
rerun=$(seconds "$t")
echo "site.yml re-run: ${rerun} s, changed=$(changed "$out/rerun.log")"

t=$(date +%s%N)
"$PLAYBOOK" playbooks/render.yml -i "$INVENTORY" -e "platform_render_dir=$out/manifests" > "$out/render.log"
echo "render.yml: $(seconds "$t") s, $(cat "$out"/manifests/*/*.yaml | grep -c '^kind:') objects"

# The physical reference: one server-side apply of the same objects (the
# rendered Secrets hold placeholders, so they are left out).
find "$out/manifests" -name '*secret*' -delete
t=$(date +%s%N)
"$KUBECTL" apply --server-side --force-conflicts --field-manager=superkubernetex -R -f "$out/manifests" > "$out/apply.log"
raw=$(seconds "$t")
echo "kubectl apply --server-side of the rendered manifests: ${raw} s"
awk -v a="$rerun" -v b="$raw" 'BEGIN {printf "ratio site.yml re-run / raw apply: %.1f\n", a / b}'

#!/usr/bin/env bash
# Deploy benchmarks on the testbed. Prints figures; asserts nothing.
#   tests/benchmarks/deploy.sh            re-run, render and raw-apply figures
#   tests/benchmarks/deploy.sh --fresh    also deletes the platform namespaces
#                                         (and its objects in the ingress
#                                         namespace) first and times a
#                                         deployment from empty to all Ready
# The testbed is shared: run it under the lock, e.g.
#   flock /tmp/skx-testbed.lock tests/benchmarks/deploy.sh --fresh
set -euo pipefail
cd "$(dirname "$0")/../.."
INVENTORY=inventories/testbed
export KUBECONFIG=${KUBECONFIG:-/var/lib/skx-testbed/admin.kubeconfig}
# The testbed's own kubectl first: it matches the API server's version.
KUBECTL=/var/cache/skx-testbed/bin/kubectl
[ -x "$KUBECTL" ] || KUBECTL=$(command -v kubectl)
PLAYBOOK=.venv/bin/ansible-playbook
export PATH="$PWD/.venv/bin:$PATH"
NAMESPACES=(skx-app skx-data skx-monitoring skx-logging skx-node-agents skx-instance1 skx-instance2 skx-instance3)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

seconds() { local start=$1; echo "$(( $(date +%s%N) - start ))" | awk '{printf "%.1f", $1/1e9}'; }
changed() { grep -E '^localhost ' "$1" | sed -E 's/.*changed=([0-9]+).*/\1/'; }
playbook() {  # playbook LOG ARGS...: a failed run shows the end of its log
  local log=$1; shift
  "$PLAYBOOK" "$@" > "$log" 2>&1 || { tail -n 40 "$log" >&2; echo "deploy.sh: ansible-playbook $* failed" >&2; exit 1; }
}
# site.yml waits for each Deployment to be Available and for the PostgreSQL
# and Redis pods to be Ready, which is not every replica of every rollout:
# wait for every Deployment, StatefulSet and DaemonSet to finish its rollout.
wait_all_ready() {
  local ns obj
  for ns in "${NAMESPACES[@]}"; do
    "$KUBECTL" get namespace "$ns" >/dev/null 2>&1 || continue
    for obj in $("$KUBECTL" -n "$ns" get deployment,statefulset,daemonset -o name); do
      "$KUBECTL" -n "$ns" rollout status "$obj" --timeout=600s >/dev/null
    done
  done
}

if [ "${1:-}" = "--fresh" ]; then
  "$KUBECTL" delete namespace "${NAMESPACES[@]}" --ignore-not-found --wait=true >/dev/null
  # The TLS Secret, the HSTS Middleware and the TLSOption live in the ingress namespace.
  "$KUBECTL" -n kube-system delete secret,middlewares.traefik.io,tlsoptions.traefik.io \
    -l app.kubernetes.io/part-of=superkubernetex --ignore-not-found --wait=true >/dev/null
  t=$(date +%s%N)
  playbook "$out/first.log" site.yml -i "$INVENTORY"
  site=$(seconds "$t")
  wait_all_ready
  echo "site.yml from an empty cluster to all Ready: $(seconds "$t") s (site.yml itself ${site} s, changed=$(changed "$out/first.log"); then every rollout complete)"
fi

t=$(date +%s%N)
playbook "$out/rerun.log" site.yml -i "$INVENTORY"
rerun=$(seconds "$t")
echo "site.yml re-run: ${rerun} s, changed=$(changed "$out/rerun.log")"

t=$(date +%s%N)
playbook "$out/render.log" playbooks/render.yml -i "$INVENTORY" -e "platform_render_dir=$out/manifests"
echo "render.yml: $(seconds "$t") s, $(cat "$out"/manifests/*/*.yaml | grep -c '^kind:') objects"

# The physical reference: one server-side apply of the same objects (the
# rendered Secrets hold placeholders, so they are left out). kubectl diff
# first says whether that apply is like for like with what site.yml left.
# Every file that holds a Secret, whatever its name (postgres/db-credentials.yaml
# holds only Secrets): their rendered values are placeholders.
grep -rlx 'kind: Secret' "$out/manifests" | xargs -r rm -f
# render.yml writes every manifest, also those of kinds this cluster does not
# serve (HelmChartConfig on the testbed), which site.yml skips: so skip them too.
served=$("$KUBECTL" api-resources --no-headers | awk '{print $NF}' | sort -u)
for file in "$out"/manifests/*/*.yaml; do
  for kind in $(sed -n 's/^kind: *//p' "$file" | sort -u); do
    grep -qx "$kind" <<<"$served" || { echo "(left out of the raw apply: ${file#"$out"/manifests/}, kind $kind not served here)"; rm -f "$file"; break; }
  done
done
objects=$(cat "$out"/manifests/*/*.yaml | grep -c '^kind:')
set +e
"$KUBECTL" diff --server-side --force-conflicts --field-manager=superkubernetex -R -f "$out/manifests" > "$out/diff.log" 2>&1
diff_rc=$?
set -e
[ "$diff_rc" -le 1 ] || { cat "$out/diff.log" >&2; exit 1; }
t=$(date +%s%N)
"$KUBECTL" apply --server-side --force-conflicts --field-manager=superkubernetex -R -f "$out/manifests" > "$out/apply.log"
raw=$(seconds "$t")
echo "kubectl apply --server-side of the rendered manifests: ${raw} s, ${objects} objects (Secrets left out), $(grep -c '^diff ' "$out/diff.log") of them differing from the cluster before"
awk -v a="$rerun" -v b="$raw" 'BEGIN {printf "ratio site.yml re-run / raw apply: %.1f\n", a / b}'

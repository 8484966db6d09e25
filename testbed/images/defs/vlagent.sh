# The log collector, from the same module and release as the store
# (tests/lib/monitoring/install-tools.sh), with upstream's entrypoint name.
REF=docker.io/victoriametrics/vlagent:$VICTORIALOGS_VERSION
KIND=static
NEEDS=build_victorialogs
ADD=("$SKX_CACHE/bin/victorialogs-$VICTORIALOGS_VERSION/vlagent:/vlagent-prod:0755")
ENTRYPOINT='["/vlagent-prod"]'
PORTS="9429/tcp"

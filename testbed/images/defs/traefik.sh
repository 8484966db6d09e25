# Upstream's ENTRYPOINT is /entrypoint.sh (prefixes "traefik" to flag-only args); with the
# binary as ENTRYPOINT, `args: ["--entrypoints.web.address=:80", ...]` behaves the same.
REF=docker.io/traefik:$TRAEFIK_VERSION
KIND=static
NEEDS=build_traefik
ADD=("$SKX_CACHE/bin/traefik-$TRAEFIK_VERSION/traefik:/usr/local/bin/traefik:0755")
ENTRYPOINT='["/usr/local/bin/traefik"]'
PORTS="80/tcp"

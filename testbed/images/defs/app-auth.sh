# The reference app image for auth (shared settings in app.inc).
REF=ghcr.io/superkubernetex/auth:0.1.0
# shellcheck source=app.inc
. "${BASH_SOURCE[0]%/*}/app.inc"

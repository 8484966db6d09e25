# The reference app image for instance (shared settings in app.inc).
REF=ghcr.io/superkubernetex/instance:0.1.0
# shellcheck source=app.inc
. "${BASH_SOURCE[0]%/*}/app.inc"

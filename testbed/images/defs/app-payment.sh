# The reference app image for payment (shared settings in app.inc).
REF=ghcr.io/superkubernetex/payment:0.1.0
# shellcheck source=app.inc
. "${BASH_SOURCE[0]%/*}/app.inc"

# The reference app image for frontend (shared settings in app.inc).
REF="$(platform_setting platform_registry)/frontend:$(platform_setting platform_images_version)"
# shellcheck source=app.inc
. "${BASH_SOURCE[0]%/*}/app.inc"

# The reference app image for instance (shared settings in app.inc).
REF="$(platform_setting platform_registry)/instance:$(platform_setting platform_images_version)"
# shellcheck source=app.inc
. "${BASH_SOURCE[0]%/*}/app.inc"

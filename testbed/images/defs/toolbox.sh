# The platform's job image (backups, restore checks, snapshots): the
# collection's images/toolbox/Dockerfile, built as playbooks/images.yml builds it.
REF="$(platform_setting platform_registry)/toolbox:$(platform_setting platform_images_version)"
KIND=dockerfile
BASE=debian
CONTEXT=images/toolbox

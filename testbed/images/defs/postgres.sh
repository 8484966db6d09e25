# PostgreSQL 15 with Patroni and pgBackRest (the platform's database image):
# the collection's images/postgres/Dockerfile, built as playbooks/images.yml builds it.
REF="$(platform_setting platform_registry)/postgres:$(platform_setting platform_images_version)"
KIND=dockerfile
BASE=debian
CONTEXT=images/postgres

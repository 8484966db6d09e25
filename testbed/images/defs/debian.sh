# The base image the collection's Dockerfiles start from (FROM
# docker.io/library/debian:12-slim), made here from Debian packages since no
# registry can be reached: the essential set plus apt, with this machine's
# Debian sources and their apt settings (a snapshot mirror needs
# Check-Valid-Until off), so `apt-get install` in a RUN step works as on the
# real image.
REF=docker.io/library/debian:12-slim
KIND=debian
PACKAGES="apt"
CUSTOMIZE='apt-config dump | grep -E "^Acquire::Check-(Valid-Until|Date) " > "$1/etc/apt/apt.conf.d/99testbed-mirror" || true'
ENV=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
CMD='["bash"]'

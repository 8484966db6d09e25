# Base image for the reference apps (Debian python3 and libraries; no pip at run time).
# An app image is this plus the app's files: see testbed/images/build-app-image.
REF=ghcr.io/superkubernetex/python-base:1.0.0
KIND=debian
PACKAGES="python3 python3-psycopg python3-redis python3-jwt python3-cryptography python3-prometheus-client ca-certificates"
USERS="app:10001:10001:/app"
CUSTOMIZE='mkdir -p "$1/app"; chown 10001:10001 "$1/app"'
ENV=("PYTHONUNBUFFERED=1" "PYTHONDONTWRITEBYTECODE=1")
WORKDIR=/app
CMD='["python3"]'

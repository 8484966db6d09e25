# Base image for the reference apps: the Debian packages listed in apps/debian-packages.txt
# (the list the production apps/Dockerfile installs), user app uid 10001, WORKDIR /app.
REF=ghcr.io/superkubernetex/python-base:1.0.0
KIND=debian
PACKAGES="$(grep -v '^#' "$TESTBED_DIR/../apps/debian-packages.txt" | tr '\n' ' ' | tr -s ' ')"
USERS="app:10001:10001:/app"
CUSTOMIZE='mkdir -p "$1/app"; chown 10001:10001 "$1/app"'
ENV=("PYTHONUNBUFFERED=1" "PYTHONDONTWRITEBYTECODE=1")
WORKDIR=/app
CMD='["python3"]'

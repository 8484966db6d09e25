# The reference apps (apps/skx_apps) as apps/Dockerfile builds them: one image, tagged per service;
# SERVICE_NAME (set by the app and instance roles) picks the service.
REF=ghcr.io/superkubernetex/payment:0.1.0
KIND=app
BASE=python-base
TREES=("apps/skx_apps:/app/skx_apps:0")
ENV=("PYTHONPATH=/app" "PYTHONDONTWRITEBYTECODE=1" "PYTHONUNBUFFERED=1" "PORT=8080")
WORKDIR=/app
USER=10001:10001
PORTS="8080/tcp"
STOP_SIGNAL=SIGTERM
ENTRYPOINT='["python3", "-m", "skx_apps"]'
CMD='[]'

# AI Hub's production image: Debian bookworm's Python 3.11 in a venv, served by uvicorn (`manage.py serve`)
# as a non-root user. Build: docker build -t aihub . (see README, Deploy). Configure with .env.example's variables.

# --- builder: compiles llama-cpp-python (about 4 minutes on 2 cores) and the other wheels --------------
FROM debian:bookworm-slim AS builder
# Behind a proxy that intercepts TLS: --build-arg EXTRA_CA_CERTS="$(cat your-ca.crt)" lets pip trust it.
# Only this stage sees it; the runtime image does not.
ARG EXTRA_CA_CERTS=""
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential cmake ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/extra.crt && update-ca-certificates; \
    fi
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

# --- runtime: no compilers --------------------------------------------------------------------------------
FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    STATIC_ROOT=/app/staticfiles \
    PORT=8000
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 aihub \
 && useradd --system --uid 10001 --gid 10001 --create-home aihub \
 && install -d -o 10001 -g 10001 /srv/static-shared /app/data/uploads
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --chown=10001:10001 . .
# collectstatic needs settings but no secrets: a throwaway key for this one command.
RUN ENVIRONMENT=development DEBUG=0 SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
 && python -m compileall -q /app

# Numeric, so Kubernetes can check runAsNonRoot.
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/healthz', timeout=2)"]
ENTRYPOINT ["docker/entrypoint.sh"]
CMD ["serve"]

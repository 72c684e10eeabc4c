# syntax=docker/dockerfile:1.7
# fraudscreen gateway image: `docker build -t fraudscreen .`
# Runtime keeps gcc: gateways compile signed model releases on site (never a shipped .so).
# Without a compiler it still serves, through LightGBM's predictor, and logs that loudly.

FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libgomp1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fraudscreen ./fraudscreen
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .
COPY models/default /opt/fraudscreen/models/default
# Compile the default model now (same compiler and platform as the runtime stage, so the
# runtime finds it in the cache); the compile also checks parity with LightGBM.
ENV FRAUDSCREEN_CACHE_DIR=/var/lib/fraudscreen/cache
RUN /opt/venv/bin/fraudscreen compile /opt/fraudscreen/models/default

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/fraudscreen --shell /usr/sbin/nologin fraudscreen
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/fraudscreen /opt/fraudscreen
COPY --from=build --chown=fraudscreen:fraudscreen --chmod=0700 /var/lib/fraudscreen /var/lib/fraudscreen
# All state lives in the volume: every path setting is set here, and the working
# directory is the volume too, so a relative default can never land elsewhere
# (tests/unit/test_dockerfile.py builds the settings from these lines and checks).
WORKDIR /var/lib/fraudscreen
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    FRAUDSCREEN_CACHE_DIR=/var/lib/fraudscreen/cache \
    FRAUDSCREEN_MODEL_BUNDLE=/opt/fraudscreen/models/default \
    FRAUDSCREEN_MODEL_RELEASES_DIR=/var/lib/fraudscreen/releases \
    FRAUDSCREEN_SITE_KEY_FILE=/var/lib/fraudscreen/site.key \
    FRAUDSCREEN_JOURNAL_PATH=/var/lib/fraudscreen/journal.sqlite3 \
    FRAUDSCREEN_SERVER_LISTEN=0.0.0.0:50051 \
    FRAUDSCREEN_METRICS_LISTEN=0.0.0.0:9464
# Terminals reach the container, so mount certificates and set
# FRAUDSCREEN_SERVER_TLS_CERT_FILE / _KEY_FILE / _CLIENT_CA_FILE (mTLS) in production;
# then give the HEALTHCHECK below --ca-file (and --cert-file/--key-file for mTLS).
USER fraudscreen
VOLUME ["/var/lib/fraudscreen"]
EXPOSE 50051 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=4s --start-period=30s --retries=3 \
  CMD ["fraudscreen", "health", "--target", "127.0.0.1:50051", "--timeout", "3"]
ENTRYPOINT ["fraudscreen", "serve"]

# One image for every Convoy process; the command picks the service:
#   docker run IMAGE run api | run convoys | run milestones | run reminders | run notifier
#   docker run IMAGE migrate          (once per release, before the new version starts)
# Build from the project root: docker build -t convoy .

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/convoy
WORKDIR /src
# Only what the wheel needs (see .dockerignore): no tests, no local data, no venv.
COPY pyproject.toml README.md ./
COPY schemas/ schemas/
COPY services/ services/
COPY convoy_api/ convoy_api/
COPY notifier/ notifier/
RUN /opt/convoy/bin/pip install --no-cache-dir . \
 && /opt/convoy/bin/convoy config > /dev/null

FROM python:3.11-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="convoy" \
      org.opencontainers.image.description="Convoy: peer progress for SME digital projects (all services)"
RUN groupadd --system --gid 10001 convoy \
 && useradd --system --uid 10001 --gid convoy --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin convoy
COPY --from=build /opt/convoy /opt/convoy
# Production defaults; everything else comes from CONVOY_* variables (or CONVOY_*_FILE secrets).
ENV PATH=/opt/convoy/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONVOY_HTTP_HOST=0.0.0.0 \
    CONVOY_OPS_PORT=9100 \
    CONVOY_INBOUND_SMTP_HOST=0.0.0.0 \
    CONVOY_DATA_DIR=/tmp/convoy \
    CONVOY_DEMO=0 \
    CONVOY_LOG_FORMAT=json
USER 10001:10001
WORKDIR /tmp
# 8000: API (HTTP); 9100: back-end services' /live, /health, /metrics; 2526: notifier's inbound SMTP.
EXPOSE 8000 9100 2526
ENTRYPOINT ["convoy"]
CMD ["run", "api"]

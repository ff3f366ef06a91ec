# opsflow bot image: `docker build -t opsflow .`, then see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    OPSFLOW_DATA_DIR=/data \
    OPSFLOW_HTTP__HOST=0.0.0.0 \
    OPSFLOW_HTTP__PORT=3000

WORKDIR /app
# graphviz draws the workflow pictures attached in Slack.
RUN apt-get update && apt-get install -y --no-install-recommends graphviz && rm -rf /var/lib/apt/lists/*
# CPU torch first and pinned, so sentence-transformers does not pull a CUDA build.
RUN pip install torch==2.13.0
COPY pyproject.toml README.md ./
COPY core core
COPY retrieval retrieval
COPY generation generation
COPY trainer trainer
COPY connectors connectors
COPY bot bot
COPY samples samples
RUN pip install ".[es,neo4j]" \
    && useradd --system --uid 10001 --home-dir /data opsflow \
    && mkdir -p /data && chown opsflow /data
USER opsflow
VOLUME /data
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=8)"
ENTRYPOINT ["opsflow"]
CMD ["serve"]

# syntax=docker/dockerfile:1
# The platform image: the inference endpoint (default command), the Spark jobs, training, the skew
# report and the stock `feast` CLI, all from one pinned environment. Build from the repo root:
#   docker build -t fraud-feature-platform:0.1.0 .
# Base pinned by tag (Python 3.11 on Debian 12). Pin by digest in your registry mirror for
# byte-for-byte rebuilds. apt packages float within Debian 12's security updates on purpose
# (.hadolint.yaml: DL3008), so a rebuild picks up JRE fixes.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/platform
COPY pyproject.toml README.md ./
COPY providers/ providers/
COPY devstack/ devstack/
COPY serving/ serving/
COPY scoring/ scoring/
COPY spark_jobs/ spark_jobs/
COPY pipelines/ pipelines/
# Not editable: the runtime stage gets the installed package, not the build context.
RUN /opt/platform/bin/pip install ".[spark]"

FROM ${PYTHON_IMAGE} AS runtime
# A JRE for Spark (local mode in the driver pod; executors under the Spark Operator), the
# MariaDB Connector/J JDBC driver at the path spark_jobs/settings.py defaults to, and GNU OpenMP
# (LightGBM's library links it; the slim image lacks it).
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless libmariadb-java libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 platform \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin platform \
 && mkdir /models && chown 10001:10001 /models
COPY --from=build /opt/platform /opt/platform
WORKDIR /app
COPY --chown=root:root feature_repo/ feature_repo/
COPY --chown=root:root --chmod=0755 docker/spark-entrypoint.sh /usr/local/bin/platform-entrypoint
# Read-only root filesystem in Kubernetes: bytecode is not written, HOME and scratch are /tmp
# (an emptyDir), models come from a mounted volume.
ENV PATH=/opt/platform/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    SERVING_HOST=0.0.0.0 \
    SERVING_PORT=8000 \
    SERVING_FEATURE_REPO=/app/feature_repo \
    FEATURE_REPO=/app/feature_repo \
    SERVING_MODELS_DIR=/models
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SERVING_PORT', '8000'), timeout=2)"]
# `driver` / `executor` for the Spark Operator, anything else runs as given.
ENTRYPOINT ["/usr/local/bin/platform-entrypoint"]
CMD ["python", "-m", "serving"]

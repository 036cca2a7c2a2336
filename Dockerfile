# syntax=docker/dockerfile:1
# Match as a container: `make build`, then `make run` (or `make dev` for Match + Elasticsearch).
# Two stages: the first installs Match and its dependencies into a virtualenv (binary wheels,
# except pdqhash, which publishes no wheel for this Python and is compiled with g++ in that stage
# only), the second copies that virtualenv onto a clean slim base (no compiler there).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/match
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# pdqhash (PDQ, docs/pdq.md) builds from its sdist: a C++ compiler in this stage only
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
# --only-binary for the other dependencies: a missing wheel fails the build instead of compiling.
RUN /opt/match/bin/pip install --only-binary=numpy,pillow,opencv-python-headless . \
    && /opt/match/bin/python -m compileall -q /opt/match/lib

FROM ${PYTHON_IMAGE}
# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it and volumes can be chowned to it.
RUN groupadd --system --gid 10001 match \
    && useradd --system --uid 10001 --gid match --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin match \
    && mkdir /data \
    && chown match:match /data
COPY --from=build /opt/match /opt/match
ENV PATH=/opt/match/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8888 \
    WORKER_COUNT=4 \
    MATCH_DATA_DIR=/data
# The embedded store (used when ELASTICSEARCH_URL is unset) keeps its files here.
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8888
# slim has no curl: the image's own Python asks /ping on the port the server listens on.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8888') + '/health/ready', timeout=4)"]
CMD ["match", "serve"]

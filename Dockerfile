# crossrank server image (CPU). Build:  docker build -t crossrank .
# Run:    docker run -p 8080:8080 -v $PWD/crossrank.yaml:/config/crossrank.yaml crossrank
# Models named by hub id download into /models on first start (mount a volume there to keep them);
# with no config file the built-in default model is served. The image was not built in CI (no Docker
# daemon there); the steps are the README's install with the CPU torch wheel made explicit.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    HF_HOME=/models/hf CROSSRANK_CACHE=/models/crossrank

WORKDIR /app
# torch only exports hub checkpoints to ONNX; the CPU wheel keeps the image small (no CUDA libraries).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[server,torch]" && useradd --create-home crossrank && mkdir -p /models /config \
    && chown crossrank /models
USER crossrank

EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ready', timeout=2)"
# Binding 0.0.0.0 is right inside a container (the host decides what is exposed); outside one, serve
# defaults to 127.0.0.1.
CMD ["sh", "-c", "if [ -f /config/crossrank.yaml ]; then exec crossrank serve --config /config/crossrank.yaml --host 0.0.0.0 --port 8080; else exec crossrank serve --host 0.0.0.0 --port 8080; fi"]

"""Real servers on 127.0.0.1: uvicorn in a thread on a free port, serving the tiny model."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from crossrank.server.app import create_app
from crossrank.server.config import Config, config_from_dict


@dataclass
class Running:
    url: str
    config: Config
    app: object


@contextmanager
def running(config: Config, *, wait_ready: bool = True) -> Iterator[Running]:
    """Start ``create_app(config)`` under uvicorn on a free loopback port; stop it on exit."""
    import uvicorn

    app = create_app(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        if server.started and (not wait_ready or httpx.get(f"{url}/ready").status_code == 200):
            break
        time.sleep(0.05)
    try:
        yield Running(url, config, app)
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


def _tiny_config(tiny_model, **server) -> Config:
    return config_from_dict({
        "models": {"tiny": {"model": str(tiny_model), "backend": "onnx", "threads": 1},
                   "tiny-chunked": {"model": str(tiny_model), "backend": "onnx", "threads": 1,
                                    "max_chunks_per_doc": 4}},
        "server": {"max_documents": 200, "max_body_bytes": 300_000, "max_text_chars": 50_000, **server},
    })


@pytest.fixture(scope="package")
def start():
    """``start(config)``: a context manager running a server of its own for one test."""
    return running


@pytest.fixture(scope="package")
def tiny_config(tiny_model):
    """``tiny_config(**server_settings)``: the two tiny models with the given server limits."""
    return lambda **server: _tiny_config(tiny_model, **server)


@pytest.fixture(scope="package")
def server(tiny_model) -> Iterator[Running]:
    """The shared server: two tiny models, the score cache on, no auth."""
    with running(_tiny_config(tiny_model, cache_size=1000)) as srv:
        yield srv


@pytest.fixture(scope="package")
def reference(tiny_model):
    """Logits of the tiny model from transformers itself (the reference implementation)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model)).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_model))

    def logits(query: str, texts: list[str]):
        enc = tok([query] * len(texts), texts, padding=True, truncation="only_second", max_length=64,
                  return_tensors="pt")
        with torch.no_grad():
            return model(**enc).logits[:, 0].numpy().astype(float)

    return logits

"""``crossrank serve`` as a real process on the built-in model: auth, logs, SIGTERM drains in-flight requests."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from crossrank.server import launch

KEY = "very-secret-test-key-123"


@pytest.mark.minilm
def test_serve_builtin_model_and_graceful_sigterm(tmp_path):
    config = tmp_path / "crossrank.yaml"
    config.write_text("models:\n  default: minilm-l6-untrained\nserver:\n  api_keys: [${CR_SERVE_TEST_KEY}]\n")
    server = launch.start(["--config", str(config)], log=tmp_path / "serve.log", env={"CR_SERVE_TEST_KEY": KEY},
                          timeout=180)
    proc, url, log = server.proc, server.url, server.log
    auth = {"authorization": f"Bearer {KEY}"}
    try:
        assert httpx.post(f"{url}/v2/rerank", json={"model": "nope", "query": "q", "documents": ["d"]},
                          headers={"authorization": "Bearer wrong-key-456"}).status_code == 401
        docs = [f"document {i} about heat transfer in composite slabs and wings" for i in range(100)]
        responses: list[httpx.Response] = []

        def call(i: int) -> None:
            responses.append(httpx.post(f"{url}/v2/rerank", headers=auth, timeout=120,
                                        json={"model": "default", "query": f"heat {i}", "documents": docs}))

        threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        while "crossrank_requests_in_flight 0.0" in httpx.get(f"{url}/metrics").text:
            time.sleep(0.005)
        # Inference runs on the model's worker thread: the event loop answers while it works.
        assert httpx.get(f"{url}/health").status_code == 200 and any(t.is_alive() for t in threads)
        proc.send_signal(signal.SIGTERM)  # while requests are in flight
        for t in threads:
            t.join(120)
        # uvicorn shuts down gracefully, then re-raises the captured SIGTERM, which the CLI turns into
        # exit 128 + 15 (the shell's code for "terminated"); -15 where nothing handles it.
        assert proc.wait(60) in (0, 128 + signal.SIGTERM, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert [r.status_code for r in responses] == [200] * 6, text
    assert all(len(r.json()["results"]) == 100 for r in responses)
    assert all(0 <= x["relevance_score"] <= 1 for r in responses for x in r.json()["results"])
    assert "request route=/v2/rerank model=default documents=100 tokens=" in text
    assert KEY not in text and "wrong-key-456" not in text
    assert "Shutting down" in text and "Application shutdown complete" in text

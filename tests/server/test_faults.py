"""Faults: a corrupt model file, an exception inside inference, clients that hang up mid-request.

Inference faults are injected at the ONNX Runtime boundary (the session's ``run``), the library we do
not own; everything above it (engine, batcher, service, HTTP) is the real code path.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from crossrank.server.config import config_from_dict


def test_corrupt_model_file_is_named_on_ready(start, tiny_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"\x00not a safetensors file" * 10)
    config = config_from_dict({"models": {"tiny": {"model": str(tiny_model), "threads": 1},
                                          "broken": {"model": str(broken), "backend": "onnx"}}})
    with start(config, wait_ready=False) as srv:
        deadline = time.monotonic() + 120
        while (models := httpx.get(f"{srv.url}/ready").json().get("models", {})).get("broken") in (
                "pending", "loading"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ready = httpx.get(f"{srv.url}/ready")
        assert ready.status_code == 503 and models == {"tiny": "ready", "broken": "failed"}
        error = next(m for m in httpx.get(f"{srv.url}/info").json()["models"] if m["name"] == "broken")["error"]
        assert str(broken) in error or "model.safetensors" in error, error
        # the healthy model keeps serving
        assert httpx.post(f"{srv.url}/rerank", json={"model": "tiny", "query": "q", "texts": ["d"]}).status_code == 200


class FlakySession:
    """Wraps an onnxruntime session: the next ``failures`` calls raise, as a broken kernel would."""

    def __init__(self, session, failures: int, error: BaseException | None = None) -> None:
        self._session = session
        self.failures = failures
        self.error = error or RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : injected fault")

    def run(self, *args, **kwargs):
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        return self._session.run(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._session, name)


@pytest.mark.parametrize("route,body,shape,status", [
    ("/v2/rerank", {"model": "tiny", "query": "heat", "documents": ["a wing", "heat flow"]}, "message", 503),
    ("/rerank", {"model": "tiny", "query": "heat", "texts": ["a wing", "heat flow"]}, "error", 424),  # TEI's
])
def test_inference_exception_fails_one_request_and_the_next_is_served(start, tiny_config, route, body, shape,
                                                                      status):
    with start(tiny_config()) as srv:
        assert httpx.post(f"{srv.url}{route}", json=body).status_code == 200
        backend = srv.app.state.registry.entries["tiny"].batcher.encoder.backend
        backend.session = FlakySession(backend.session, failures=1)
        failed = httpx.post(f"{srv.url}{route}", json={**body, "query": "another query"})
        assert failed.status_code == status and shape in failed.json(), failed.text
        again = httpx.post(f"{srv.url}{route}", json={**body, "query": "a third query"})
        assert again.status_code == 200
        assert httpx.get(f"{srv.url}/health").status_code == 200


class Panic(BaseException):
    """What a native library's panic looks like from Python (pyo3's PanicException is a BaseException)."""


def test_a_native_panic_fails_its_request_and_the_model_keeps_serving(start, tiny_config):
    """It went past `except Exception` and ended the model's batcher thread: every later request timed out
    while /ready said ready."""
    with start(tiny_config(request_timeout_s=10)) as srv:
        body = {"model": "tiny", "query": "heat", "documents": ["a wing", "heat flow"]}
        backend = srv.app.state.registry.entries["tiny"].batcher.encoder.backend
        backend.session = FlakySession(backend.session, failures=1,
                                       error=Panic("called `Option::unwrap()` on a `None` value"))
        failed = httpx.post(f"{srv.url}/v2/rerank", json=body)
        assert failed.status_code >= 500 and "message" in failed.json()
        assert httpx.post(f"{srv.url}/v2/rerank", json={**body, "query": "again"}).status_code == 200


class NanSession(FlakySession):
    """A session whose model is broken another way: it answers, with NaN and infinite logits."""

    def run(self, *args, **kwargs):
        import numpy as np

        outputs = self._session.run(*args, **kwargs)
        outputs[0][...] = np.nan
        outputs[0][:1] = np.inf
        return outputs


@pytest.mark.parametrize("route,body,shape,status", [
    ("/v2/rerank", {"model": "tiny", "query": "heat", "documents": ["a wing", "heat flow"]}, "message", 503),
    ("/rerank", {"model": "tiny", "query": "heat", "texts": ["a wing", "heat flow"], "raw_scores": True}, "error", 424),
    ("/score", {"model": "tiny", "query": "heat", "chunks": ["a wing", "heat flow"]}, "error", 503),
])
def test_non_finite_scores_are_a_backend_error_not_nulls(start, tiny_config, route, body, shape, status):
    """JSON has no NaN: sent as null in a 200 they break every typed client; a broken model is an error."""
    with start(tiny_config()) as srv:
        backend = srv.app.state.registry.entries["tiny"].batcher.encoder.backend
        backend.session = NanSession(backend.session, failures=0)
        answer = httpx.post(f"{srv.url}{route}", json=body)
        assert answer.status_code == status and shape in answer.json(), answer.text
        assert "non-finite" in answer.text


def test_clients_that_hang_up_leak_nothing(start, tiny_config):
    docs = [f"document {i} about heat flow over a wing in a boundary layer" for i in range(150)]
    with start(tiny_config(max_documents=500)) as srv:
        def hang_up(i: int) -> str:
            try:
                httpx.post(f"{srv.url}/v2/rerank", json={"model": "tiny", "query": f"q{i}", "documents": docs},
                           timeout=0.01)
            except httpx.TimeoutException:
                return "hung up"
            return "answered"

        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(hang_up, range(48)))
        assert outcomes.count("hung up") > 0
        deadline = time.monotonic() + 60
        while "crossrank_requests_in_flight 0.0" not in httpx.get(f"{srv.url}/metrics").text:
            assert time.monotonic() < deadline, "requests of clients that left are still in flight"
            time.sleep(0.1)
        batcher = srv.app.state.registry.entries["tiny"].batcher
        while batcher._depth:
            assert time.monotonic() < deadline, "the queue never drained"
            time.sleep(0.1)
        ok = httpx.post(f"{srv.url}/v2/rerank", json={"model": "tiny", "query": "heat", "documents": docs[:3]})
        assert ok.status_code == 200 and len(ok.json()["results"]) == 3


def test_a_client_that_leaves_frees_its_slot_and_is_counted_499(start, tiny_config):
    docs = [f"document {i} " + "about heat flow over a wing in a boundary layer and the pressure on it " * 4
            for i in range(4000)]  # each fills the tiny model's 64 tokens: 8 such requests take seconds
    with start(tiny_config(max_documents=5000, max_body_bytes=5_000_000, max_concurrent_requests=8,
                           request_timeout_s=600)) as srv:
        def leave(i: int) -> None:
            with contextlib.suppress(httpx.TimeoutException):  # the first may be answered in time
                httpx.post(f"{srv.url}/rerank", json={"model": "tiny", "query": f"q{i}", "texts": docs}, timeout=0.5)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(leave, range(8)))
        deadline = time.monotonic() + 30
        while "crossrank_requests_in_flight 0.0" not in httpx.get(f"{srv.url}/metrics").text:
            assert time.monotonic() < deadline, "requests of clients that left still hold their slots"
            time.sleep(0.05)
        assert httpx.post(f"{srv.url}/rerank", json={"model": "tiny", "query": "heat", "texts": ["a wing"]},
                          timeout=600).status_code == 200
        from prometheus_client.parser import text_string_to_metric_families

        left = sum(s.value for f in text_string_to_metric_families(httpx.get(f"{srv.url}/metrics").text)
                   for s in f.samples if s.name == "crossrank_requests_total" and s.labels.get("status") == "499")
        assert left >= 1  # the ones still queued when their client left were never scored


def test_an_unexpected_error_is_a_json_500_on_a_connection_that_stays_open(start, tiny_config):
    with start(tiny_config()) as srv:
        @srv.app.post("/broken")
        async def broken() -> None:
            raise RuntimeError("detail that may hold a client's input")

        with httpx.Client(base_url=srv.url) as client:
            for _ in range(3):
                r = client.post("/broken", json={})
                assert r.status_code == 500 and r.json() == {
                    "error": {"message": "internal error: RuntimeError", "type": "backend"}}
                assert client.post("/score", json={"query": "heat", "chunks": ["a wing"]}).status_code == 200

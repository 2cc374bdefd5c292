"""/health, /ready, /info, /metrics, /docs, the score cache and the request log."""

from __future__ import annotations

import logging
import time

import httpx


def metric(text: str, name: str, default: float | None = None, **labels: str) -> float:
    """The value of one sample in Prometheus text format (labels in any order)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    if default is None:
        raise AssertionError(f"{name} {labels} not in the metrics")
    return default


def test_health_ready_info(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/ready").json()
    assert ready == {"status": "ready", "models": {"tiny": "ready", "tiny-chunked": "ready"}}
    info = httpx.get(f"{server.url}/info").json()
    assert [m["name"] for m in info["models"]] == ["tiny", "tiny-chunked"]
    assert info["models"][0]["backend"] == "onnx" and info["models"][1]["max_chunks_per_doc"] == 4
    assert info["limits"]["max_documents"] == 200 and info["version"] and info["default_model"] == "tiny"


def test_docs_and_openapi(server):
    assert httpx.get(f"{server.url}/docs").status_code == 200
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert {"/v1/rerank", "/v2/rerank", "/rerank", "/inference/cross/{name}", "/score"} <= set(paths)


def test_unknown_route_is_json(server):
    response = httpx.get(f"{server.url}/nope")
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found"
    assert httpx.get(f"{server.url}/v2/rerank").status_code == 405


def test_metrics_count_requests_pairs_and_cache_hits(server, caplog):
    body = {"query": "metrics query", "texts": ["crocs clog", "wing lift", "red shoe"]}
    before = httpx.get(f"{server.url}/metrics").text
    hits_before = metric(before, "crossrank_cache_hits_total", 0.0, model="tiny")
    with caplog.at_level(logging.INFO, logger="crossrank.server"):
        assert httpx.post(f"{server.url}/rerank", json=body).status_code == 200
        assert httpx.post(f"{server.url}/rerank", json=body).status_code == 200  # all three from the cache
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "crossrank_requests_total", route="/rerank", model="tiny", status="200") >= 2
    assert metric(text, "crossrank_cache_hits_total", model="tiny") - hits_before == 3
    # /metrics and /info count the same lookups (they differed once: /metrics only counted answered requests)
    info = httpx.get(f"{server.url}/info").json()["cache"]
    for kind in ("hits", "misses"):
        total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith(f"crossrank_cache_{kind}_total{{"))
        assert total == info[kind], (kind, total, info)
    assert metric(text, "crossrank_pairs_scored_total", model="tiny") >= 3
    assert "crossrank_request_latency_seconds_bucket" in text and "crossrank_batch_pairs_bucket" in text
    assert metric(text, "crossrank_queue_depth", model="tiny") == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request ")]
    assert lines and "model=tiny" in lines[-1] and "documents=3" in lines[-1] and "latency_ms=" in lines[-1]
    assert "tokens=0" in lines[-1]  # cached: no tokens ran
    assert any("tokens=0" not in line for line in lines)


def test_metrics_count_refused_requests_with_their_status(server):
    before = metric(httpx.get(f"{server.url}/metrics").text, "crossrank_requests_total", 0.0,
                    route="/rerank", model="tiny", status="400")
    response = httpx.post(f"{server.url}/rerank", json={"query": "q", "texts": []})
    assert response.status_code == 400
    text = httpx.get(f"{server.url}/metrics").text
    assert metric(text, "crossrank_requests_total", route="/rerank", model="tiny", status="400") == before + 1


def test_lazy_loading_and_a_model_that_fails_to_load(start, tiny_model, tmp_path, monkeypatch):
    import shutil

    from crossrank.server.config import config_from_dict
    from crossrank.server.registry import ModelRegistry

    monkeypatch.setattr(ModelRegistry, "retry_after_s", 3.0)

    config = config_from_dict({"models": {"tiny": {"model": str(tiny_model), "threads": 1},
                                          "broken": {"model": str(tmp_path / "no-such-model")}},
                               "server": {"preload": False}})
    with start(config, wait_ready=False) as srv:
        ready = httpx.get(f"{srv.url}/ready")
        assert ready.status_code == 503 and ready.json()["models"] == {"tiny": "pending", "broken": "pending"}
        assert httpx.post(f"{srv.url}/rerank", json={"query": "crocs", "texts": ["crocs clog"]}).status_code == 200
        broken = httpx.post(f"{srv.url}/v2/rerank", json={"model": "broken", "query": "q", "documents": ["d"]})
        assert broken.status_code == 503 and "failed to load" in broken.json()["message"]
        ready = httpx.get(f"{srv.url}/ready")
        assert ready.status_code == 503 and ready.json()["models"] == {"tiny": "ready", "broken": "failed"}
        assert "failed" in ready.json()["error"]["message"]
        # The model appears; requests right after the failure are not each a new load attempt...
        shutil.copytree(tiny_model, tmp_path / "no-such-model")
        again = httpx.post(f"{srv.url}/v2/rerank", json={"model": "broken", "query": "q", "documents": ["d"]})
        assert again.status_code == 503 and "next attempt on a request in" in again.json()["message"]
        # ...but one after the back-off loads it, without a restart.
        time.sleep(3.1)
        healed = httpx.post(f"{srv.url}/v2/rerank", json={"model": "broken", "query": "q", "documents": ["d"]})
        assert healed.status_code == 200 and httpx.get(f"{srv.url}/ready").status_code == 200


def test_a_calibrated_model_answers_calibrated_probabilities(start, tiny_model, tmp_path):
    import shutil

    import numpy as np

    from crossrank import CrossEncoder
    from crossrank.engine.calibration import Calibration
    from crossrank.server.config import config_from_dict

    model = tmp_path / "calibrated"
    shutil.copytree(tiny_model, model)
    Calibration("platt", {"a": 2.0, "b": -1.0}).save(model)
    docs = ["crocs clog", "wing lift", "heat flow"]
    raw = CrossEncoder(str(model), activation="raw").score([("crocs", d) for d in docs])
    with start(config_from_dict({"models": {"cal": {"model": str(model), "threads": 1}}})) as srv:
        got = httpx.post(f"{srv.url}/v2/rerank", json={"query": "crocs", "documents": docs}).json()["results"]
        scores = {r["index"]: r["relevance_score"] for r in got}
        np.testing.assert_allclose([scores[i] for i in range(3)], 1 / (1 + np.exp(-(2.0 * raw - 1.0))), atol=1e-5)
        tei = httpx.post(f"{srv.url}/rerank", json={"query": "crocs", "texts": docs, "raw_scores": True}).json()
        np.testing.assert_allclose(sorted(r["score"] for r in tei), sorted(raw), atol=1e-5)


def test_a_slow_load_answers_503_within_the_timeout_and_goes_on_loading(start, tiny_model):
    """A request for a model still loading waits at most request_timeout_s (the load itself is not cut
    short: the next request finds the model ready)."""
    from crossrank.server.config import config_from_dict

    config = config_from_dict({"models": {"tiny": {"model": str(tiny_model), "threads": 1}},
                               "server": {"preload": False, "request_timeout_s": 0.001}})
    with start(config, wait_ready=False) as srv:
        waiting = httpx.post(f"{srv.url}/v2/rerank", json={"query": "crocs", "documents": ["crocs clog"]})
        assert waiting.status_code == 503 and "still loading" in waiting.json()["message"]
        assert waiting.headers["retry-after"] == "1"
        deadline = time.monotonic() + 60
        while httpx.get(f"{srv.url}/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"{srv.url}/ready").json()["models"] == {"tiny": "ready"}


def test_a_load_outlives_the_event_loop_of_the_request_that_started_it():
    """The shared load is a thread's future, not one event loop's: a request on another loop (a new
    TestClient portal, a restarted loop) awaits the same load instead of failing with a 500."""
    from starlette.testclient import TestClient

    from crossrank.server.app import create_app
    from crossrank.server.config import config_from_dict

    config = config_from_dict({"models": {"m": {"model": "minilm-l6-untrained", "threads": 1}},
                               "server": {"preload": False, "request_timeout_s": 0.3}})
    app = create_app(config)
    client = TestClient(app)  # no "with": every request runs on an event loop of its own
    body = {"query": "heat flow", "documents": ["heat flow in a slab"]}
    first = client.post("/v2/rerank", json=body)
    if first.status_code == 503:  # still loading (MiniLM takes ~1 s): a request on a new loop waits on it too
        again = client.post("/v2/rerank", json=body)
        assert again.status_code in (200, 503), again.text
    else:
        assert first.status_code == 200, first.text
    deadline = time.monotonic() + 120
    while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    second = client.post("/v2/rerank", json=body)
    assert second.status_code == 200, second.text


def test_aliases_share_one_engine(start, tiny_model):
    """A client hard-wired to a vendor's model name reaches the configured model, loaded once."""
    from crossrank.server.config import config_from_dict

    config = config_from_dict({"models": {"tiny": {"model": str(tiny_model), "threads": 1,
                                                   "aliases": ["rerank-english-v3.0", "jina-reranker-v1-base-en"]}},
                               "server": {"default_model": "rerank-english-v3.0"}})
    with start(config) as srv:
        body = {"query": "crocs", "documents": ["crocs kids clog", "lazy dog"]}
        by_name = httpx.post(f"{srv.url}/v2/rerank", json={**body, "model": "tiny"}).json()
        for alias in ("rerank-english-v3.0", "jina-reranker-v1-base-en"):
            response = httpx.post(f"{srv.url}/v1/rerank", json={**body, "model": alias})
            assert response.status_code == 200, response.text
            assert response.headers["x-model-id"] == "tiny"
            assert response.json()["results"] == by_name["results"]
        info = httpx.get(f"{srv.url}/info").json()
        assert [(m["name"], m["aliases"]) for m in info["models"]] == [
            ("tiny", ["rerank-english-v3.0", "jina-reranker-v1-base-en"])]
        assert info["default_model"] == "tiny"
        assert len(srv.app.state.registry.entries) == 1  # one engine, one batcher
        unknown = httpx.post(f"{srv.url}/v2/rerank", json={**body, "model": "rerank-v3.5"})
        assert unknown.status_code == 404 and "rerank-english-v3.0" in unknown.json()["message"]


def test_cors_is_opt_in(server, start, tiny_config):
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization,content-type"}
    assert "access-control-allow-origin" not in httpx.options(f"{server.url}/rerank", headers=preflight).headers
    config = tiny_config(cors_allow_origins=["https://app.example"], api_keys=["k"])
    with start(config) as srv:
        answer = httpx.options(f"{srv.url}/rerank", headers=preflight)  # no key: preflights carry none
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in answer.headers["access-control-allow-headers"].lower()
        scored = httpx.post(f"{srv.url}/rerank", json={"model": "tiny", "query": "q", "texts": ["d"]},
                            headers={"origin": "https://app.example", "authorization": "Bearer k"})
        assert scored.status_code == 200
        assert scored.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-total-time" in scored.headers["access-control-expose-headers"]
        refused = httpx.post(f"{srv.url}/rerank", json={"query": "q", "texts": ["d"]},
                             headers={"origin": "https://app.example"})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(f"{srv.url}/rerank", headers={**preflight, "origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        counted = metric(httpx.get(f"{srv.url}/metrics").text, "crossrank_requests_total", 0.0, route="/rerank",
                         model="tiny", status="200")
        assert counted == 1  # the POST; preflights score nothing and are not counted as scoring requests

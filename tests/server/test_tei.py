"""TEI's /rerank: the request and response of the TEI docs, scores against transformers, TEI errors."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

TEXTS = ["Deep Learning is not...", "Deep learning is..."]  # the example of TEI's README


def test_tei_readme_example(server, reference):
    response = httpx.post(f"{server.url}/rerank", json={"query": "What is Deep Learning?", "texts": TEXTS})
    assert response.status_code == 200, response.text
    results = response.json()
    logits = reference("What is Deep Learning?", TEXTS)
    assert [r["index"] for r in results] == list(np.argsort(-logits, kind="stable"))
    for r in results:
        assert set(r) == {"index", "score"}
        assert r["score"] == pytest.approx(1 / (1 + np.exp(-logits[r["index"]])), abs=1e-4)
    for header in ("x-total-time", "x-queue-time", "x-tokenization-time", "x-inference-time"):
        assert response.headers[header].isdigit()


def test_raw_scores_and_return_text(server, reference):
    body = {"query": "crocs", "texts": ["crocs clog", "wing lift", "red shoe"], "raw_scores": True,
            "return_text": True, "truncate": True}
    results = httpx.post(f"{server.url}/rerank", json=body).json()
    logits = reference("crocs", body["texts"])
    for r in results:
        assert r["score"] == pytest.approx(logits[r["index"]], abs=1e-4)  # the logit, not a probability
        assert r["text"] == body["texts"][r["index"]]


@pytest.mark.parametrize(("content", "status", "error_type"), [
    (b'{"query": "q", "texts": []}', 400, "Empty"),
    (b'{"query": "  ", "texts": ["a"]}', 400, "Empty"),
    (b'{"query": "q", "texts": [1, 2]}', 422, "Validation"),
    (b'{"query": "q"}', 422, "Validation"),
    (b'{"query": "q", "texts": ["a"], "raw_scores": "yes"}', 422, "Validation"),
    (b'{"query": "q", "texts": ["a"], "model": "nope"}', 404, "Validation"),
    (b'{"query": "q", "texts": ["a"', 422, "Validation"),
    (b'{"query": "\xff\xfe", "texts": ["a"]}', 400, "Validation"),  # invalid UTF-8
    (b"[1, 2, 3]", 422, "Validation"),
    (b"", 422, "Validation"),
])
def test_tei_errors(server, content, status, error_type):
    """error_type takes TEI's own values (its router's ErrorType enum), which TEI clients may decode."""
    response = httpx.post(f"{server.url}/rerank", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error_type"] == error_type and isinstance(response.json()["error"], str)


def test_limits_on_size(server):
    too_many = httpx.post(f"{server.url}/rerank", json={"query": "q", "texts": ["a"] * 201})
    assert too_many.status_code == 413 and too_many.json()["error_type"] == "Validation"
    too_long = httpx.post(f"{server.url}/rerank", json={"query": "q", "texts": ["a " * 30_000]})
    assert too_long.status_code == 413, too_long.text
    huge = httpx.post(f"{server.url}/rerank", json={"query": "q", "texts": ["a" * 40_000] * 10})
    assert huge.status_code == 413 and "body" in huge.json()["error"]


def test_chunked_body_over_the_limit(server):
    def chunks():
        yield b'{"query": "q", "texts": ["'
        for _ in range(40):
            yield b"a" * 10_000
        yield b'"]}'

    response = httpx.post(f"{server.url}/rerank", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error_type"] == "Validation"


def test_echoed_text_with_a_lone_surrogate_and_left_truncation(server, tiny_model):
    body = '{"query": "shoe", "texts": ["red \\ud800 shoe"], "return_text": true}'
    r = httpx.post(f"{server.url}/rerank", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()[0]["text"] == "red \ud800 shoe"
    # Left truncation (Haystack's TruncationDirection.LEFT) keeps a long text's end, as TEI does
    from crossrank import CrossEncoder

    texts = ["aircraft wing lift " * 40 + "crocs kids clog", "crocs kids clog " + "aircraft wing lift " * 40]
    engine = CrossEncoder(tiny_model, backend="onnx", activation="raw")
    want = {side: engine.score([("crocs", t) for t in texts], truncation_side=side) for side in ("left", "right")}
    assert not np.array_equal(want["left"], want["right"])
    for side, direction in (("left", "Left"), ("right", "Right")):
        got = httpx.post(f"{server.url}/rerank", json={"query": "crocs", "texts": texts, "raw_scores": True,
                                                       "truncation_direction": direction})
        assert got.status_code == 200
        by_index = [r["score"] for r in sorted(got.json(), key=lambda r: r["index"])]
        np.testing.assert_allclose(by_index, want[side], atol=1e-6)
    # a model that reads long texts in windows still keeps the end in one window when asked for Left
    chunked = httpx.post(f"{server.url}/rerank", json={"model": "tiny-chunked", "query": "crocs", "texts": texts,
                                                       "raw_scores": True, "truncation_direction": "Left"})
    by_index = [r["score"] for r in sorted(chunked.json(), key=lambda r: r["index"])]
    np.testing.assert_allclose(by_index, want["left"], atol=1e-6)


def test_a_json_body_sent_as_a_form_is_told_its_content_type(server):
    """`curl -d '{...}'` sends application/x-www-form-urlencoded: the body then reads as nothing, and
    "Input should be a valid dictionary" alone does not say why."""
    body = b'{"query": "a", "texts": ["b"]}'
    for headers in ({"content-type": "application/x-www-form-urlencoded"}, {}):
        answer = httpx.post(f"{server.url}/rerank", content=body, headers=headers)
        assert answer.status_code == 422 and "Content-Type: application/json" in answer.json()["error"]
    assert httpx.post(f"{server.url}/rerank", content=body,
                      headers={"content-type": "application/json"}).status_code == 200

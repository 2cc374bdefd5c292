"""Metarank's cross-encoder inference API, with the request of Metarank's docs."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from crossrank.server.config import config_from_dict
from tests.server.test_ops import metric


def test_metarank_example(server, reference):
    body = {"input": [{"query": "quick brown fox", "text": "the quick brown fox jumps over"},
                      {"query": "quick brown fox", "text": "lazy dog"},
                      {"query": "crocs", "text": "crocs kids clog"}]}
    response = httpx.post(f"{server.url}/inference/cross/tiny", json=body)
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["took"], int)  # Metarank's response carries it; typed clients need it
    scores = response.json()["scores"]
    expected = np.concatenate([reference("quick brown fox", ["the quick brown fox jumps over", "lazy dog"]),
                               reference("crocs", ["crocs kids clog"])])
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-expected)), atol=1e-4)  # input order, probabilities


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/inference/cross/nope", {"input": [{"query": "q", "text": "t"}]}, 404),
    ("/inference/cross/tiny", {"input": []}, 400),
    ("/inference/cross/tiny", {"input": [{"query": "q"}]}, 422),
    ("/inference/cross/tiny", {"input": [{"query": "", "text": "t"}]}, 400),
])
def test_metarank_errors(server, path, body, status):
    response = httpx.post(f"{server.url}{path}", json=body)
    assert response.status_code == status, response.text
    assert isinstance(response.json()["error"]["message"], str)


def test_metarank_reads_bodies_as_its_server_does(server):
    """Metarank's own example is `curl -d` (a form Content-Type) and its decoder ignores unknown fields."""
    body = b'{"input": [{"query": "crocs", "text": "crocs kids clog", "id": "p1"}], "trace": true}'
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"content-type": content_type} if content_type else {}
        response = httpx.post(f"{server.url}/inference/cross/tiny", content=body, headers=headers)
        assert response.status_code == 200, (content_type, response.text)
        assert len(response.json()["scores"]) == 1
    broken = httpx.post(f"{server.url}/inference/cross/tiny", content=b'{"input": [',
                        headers={"content-type": "text/plain"})
    assert broken.status_code == 422 and isinstance(broken.json()["error"]["message"], str)
    cohere = httpx.post(f"{server.url}/v2/rerank", content=b'{"query": "q", "documents": ["d"]}',
                        headers={"content-type": "application/x-www-form-urlencoded"})
    assert cohere.status_code == 422  # other dialects keep FastAPI's rule, and say why (test_ops)


def test_metarank_model_names_with_slashes(start, tiny_model):
    """`serve --model org/name` names the model by its hub id: the path carries the slash."""
    config = config_from_dict({"models": {"org/tiny": {"model": str(tiny_model), "threads": 1}}})
    with start(config) as srv:
        body = {"input": [{"query": "q", "text": "d"}]}
        response = httpx.post(f"{srv.url}/inference/cross/org/tiny", json=body)
        assert response.status_code == 200, response.text
        assert response.headers["x-model-id"] == "org/tiny"
        assert httpx.post(f"{srv.url}/inference/cross/org", json=body).status_code == 404
        assert httpx.post(f"{srv.url}/inference/cross/org/tiny/", json=body).status_code == 200
        assert httpx.post(f"{srv.url}/inference/cross/", json=body).status_code == 404  # not the default model
        text = httpx.get(f"{srv.url}/metrics").text
        assert metric(text, "crossrank_requests_total", route="/inference/cross/{name}", model="org/tiny",
                      status="200") == 2  # with and without the trailing slash

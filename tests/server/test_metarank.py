"""Metarank's cross-encoder inference API, with the request of Metarank's docs."""

from __future__ import annotations

import httpx
import numpy as np
import pytest


def test_metarank_example(server, reference):
    body = {"input": [{"query": "quick brown fox", "text": "the quick brown fox jumps over"},
                      {"query": "quick brown fox", "text": "lazy dog"},
                      {"query": "crocs", "text": "crocs kids clog"}]}
    response = httpx.post(f"{server.url}/inference/cross/tiny", json=body)
    assert response.status_code == 200, response.text
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

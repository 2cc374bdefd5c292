"""The plain ``/score`` shape."""

from __future__ import annotations

import httpx
import numpy as np
import pytest


def test_score_best_first(server, reference):
    chunks = ["wing lift", "crocs clog", "red shoe", "crocs clog"]
    response = httpx.post(f"{server.url}/score", json={"query": "crocs", "chunks": chunks})
    assert response.status_code == 200, response.text
    pairs = response.json()
    probs = 1 / (1 + np.exp(-reference("crocs", chunks)))
    assert [i for i, _ in pairs] == list(np.argsort(-probs, kind="stable"))
    for i, s in pairs:
        assert s == pytest.approx(probs[i], abs=1e-4)
    top = httpx.post(f"{server.url}/score", json={"query": "crocs", "chunks": chunks, "top_n": 2}).json()
    assert top == pairs[:2]


def test_score_rejects_unknown_fields(server):
    response = httpx.post(f"{server.url}/score", json={"query": "q", "chunks": ["a"], "documents": ["b"]})
    assert response.status_code == 422 and response.json()["error"]["type"] == "validation"


def test_the_plain_remote_dialect_speaks_to_this_server(server):
    from crossrank.retrieval import RemoteRanker

    texts = ["crocs kids clog", "aircraft wing lift", "red running shoe"]
    plain = RemoteRanker(server.url, dialect="plain", model="tiny").rank("kids shoe", texts)
    tei = RemoteRanker(server.url, dialect="tei").rank("kids shoe", texts)  # raw scores of the default model
    assert sorted(plain.order.tolist()) == [0, 1, 2]
    assert plain.order.tolist() == tei.order.tolist()
    np.testing.assert_allclose(plain.scores, tei.scores, atol=1e-6)

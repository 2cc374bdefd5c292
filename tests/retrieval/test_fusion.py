"""RRF against its definition, computed by hand; MMR's two extremes and its point (no near-duplicates)."""

from __future__ import annotations

import numpy as np
import pytest

from crossrank.errors import InputError
from crossrank.retrieval import mmr, reciprocal_rank_fusion


def test_rrf_matches_the_formula():
    bm25 = np.array([3, 1, 2])
    dense = np.array([1, 4])
    positions, scores = reciprocal_rank_fusion({"bm25": bm25, "dense": dense}, k=60)
    expected = {3: 1 / 61, 1: 1 / 62 + 1 / 61, 2: 1 / 63, 4: 1 / 62}
    assert positions.tolist() == [1, 3, 4, 2]
    np.testing.assert_allclose(scores, [expected[p] for p in positions.tolist()])


def test_rrf_weights_and_ties():
    positions, scores = reciprocal_rank_fusion({"bm25": np.array([7]), "dense": np.array([9])}, k=60,
                                               weights={"dense": 2.0})
    assert positions.tolist() == [9, 7]
    np.testing.assert_allclose(scores, [2 / 61, 1 / 61])
    tied, _ = reciprocal_rank_fusion({"bm25": np.array([7]), "dense": np.array([5])})
    assert tied.tolist() == [5, 7]  # equal score and best rank: lower position first, deterministic
    with pytest.raises(InputError, match="unknown retrievers"):
        reciprocal_rank_fusion({"bm25": np.array([1])}, weights={"dense": 1.0})


def test_rrf_of_nothing():
    positions, scores = reciprocal_rank_fusion({"bm25": np.array([], dtype=np.int64)})
    assert positions.size == 0 and scores.size == 0


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_mmr_lambda_one_is_relevance_order_and_zero_spreads_out():
    query = _unit([1, 0, 0])
    docs = _unit([[1, 0.1, 0], [1, 0.11, 0], [0.5, 0, 1], [0.2, 1, 0]])  # 0 and 1 are near-duplicates
    relevance = docs @ query
    assert mmr(query, docs, lambda_=1.0).tolist() == np.argsort(-relevance).tolist()
    diverse = mmr(query, docs, lambda_=0.5, top_n=2).tolist()
    assert diverse[0] == 0 and diverse[1] != 1  # the duplicate of the first pick is not second
    with pytest.raises(InputError):
        mmr(query, docs, lambda_=1.5)

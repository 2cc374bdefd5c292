"""Combining and diversifying candidate lists: Reciprocal Rank Fusion and Maximal Marginal Relevance.

Both work on corpus positions and are vectorized over candidates; neither needs the retrievers'
scores to be comparable, which is the point of RRF (Cormack, Clarke & Büttcher, SIGIR 2009).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from crossrank.checks import number
from crossrank.errors import InputError

RRF_K = 60


def reciprocal_rank_fusion(rankings: Mapping[str, np.ndarray], *, k: float = RRF_K,
                           weights: Mapping[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fuse ranked lists of positions: ``score(d) = sum_r w_r / (k + rank_r(d))`` with 1-based ranks.

    Returns the positions and their fused scores, best first; ties go to the document with the best
    rank in any list, then to the lower position, so the order is deterministic.
    """
    k = number(k, "RRF k", minimum=0)
    weights = dict(weights or {})
    unknown = set(weights) - set(rankings)
    if unknown:
        raise InputError(f"RRF weights name unknown retrievers {sorted(unknown)}; have {sorted(rankings)}")
    lists = [np.asarray(r, dtype=np.int64) for r in rankings.values()]
    if not lists or all(len(r) == 0 for r in lists):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    positions = np.unique(np.concatenate(lists))
    scores = np.zeros(len(positions), dtype=np.float64)
    best_rank = np.full(len(positions), np.iinfo(np.int64).max, dtype=np.int64)
    for name, ranked in zip(rankings, lists, strict=True):
        if len(ranked) == 0:
            continue
        w = number(weights.get(name, 1.0), f"RRF weight of {name!r}", minimum=0)
        slots = np.searchsorted(positions, ranked)
        ranks = np.arange(1, len(ranked) + 1)
        scores[slots] += w / (k + ranks)
        best_rank[slots] = np.minimum(best_rank[slots], ranks)
    order = np.lexsort((positions, best_rank, -scores))
    return positions[order], scores[order]


def mmr(query_vector: np.ndarray | None, candidate_vectors: np.ndarray, *, lambda_: float = 0.5,
        top_n: int | None = None, relevance: np.ndarray | None = None) -> np.ndarray:
    """Maximal Marginal Relevance (Carbonell & Goldstein, 1998): indices into the candidates, in pick order.

    Each step picks ``argmax lambda * rel(d) - (1 - lambda) * max_{s picked} sim(d, s)``; ``rel``
    defaults to the similarity to the query. ``lambda_=1`` keeps the relevance order, ``0`` maximizes
    diversity. Vectors are expected unit length (similarities are inner products). With ``relevance``
    given, ``query_vector`` is not read and may be None (no query needs embedding).
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise InputError(f"MMR lambda must be in [0, 1], got {lambda_}")
    if query_vector is None and relevance is None:
        raise InputError("MMR needs the query's vector or the candidates' relevance")
    n = len(candidate_vectors)
    top_n = n if top_n is None else min(top_n, n)
    if n == 0 or top_n <= 0:
        return np.zeros(0, dtype=np.int64)
    rel = candidate_vectors @ query_vector if relevance is None else np.asarray(relevance, dtype=np.float32)
    pairwise = candidate_vectors @ candidate_vectors.T
    picked: list[int] = []
    max_sim = np.full(n, -np.inf, dtype=np.float32)
    available = np.ones(n, dtype=bool)
    for _ in range(top_n):
        redundancy = np.where(np.isfinite(max_sim), max_sim, 0.0)
        objective = np.where(available, lambda_ * rel - (1.0 - lambda_) * redundancy, -np.inf)
        best = int(np.argmax(objective))
        picked.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, pairwise[best])
    return np.asarray(picked, dtype=np.int64)

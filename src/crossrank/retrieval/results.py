"""What a search returns: hits that carry every stage's score and rank, and the method that made them.

A search engineer debugging relevance asks "where did this document come from?": each :class:`Hit`
answers with ``stages`` (``bm25``, ``dense``, ``rrf``, ``mmr``, ``rerank``... each with the
document's 1-based rank and score in that stage, absent where the stage did not see it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def top_k(scores: np.ndarray, k: int, candidates: np.ndarray | None = None) -> np.ndarray:
    """The ``k`` best positions by ``scores`` (among ``candidates``, default all), best first.

    Ties go to the lower corpus position, also at the cut: every candidate tied with the k-th best
    score is kept until the final sort, so the top 1 is always a prefix of the top 50 (a bare
    ``argpartition`` keeps an arbitrary subset of the ties, which changes with ``k``).
    """
    pool = np.arange(len(scores)) if candidates is None else np.asarray(candidates)
    if k <= 0:
        return pool[:0]
    if k < len(pool):
        values = scores[pool]
        kth = np.partition(values, len(values) - k)[len(values) - k]  # the k-th best score
        pool = pool[values >= kth]
    return pool[np.lexsort((pool, -scores[pool]))][:k]


@dataclass
class StageScore:
    """A document's 1-based rank and score in one stage (score ``None`` for rank-only stages like MMR)."""

    rank: int
    score: float | None = None


@dataclass
class Hit:
    """One result: the document, its final rank and score, and its trace through the stages.

    ``rank`` is the order. ``score`` is the score of the last stage that placed the hit — the reranker's
    inside the window, the first stage's after it (and for candidates a cascade pruned) — so scores of
    hits on either side of the window are on different scales and must not be sorted together; compare
    like with like through ``stages``.
    """

    id: str
    position: int
    document: dict[str, Any]
    rank: int = 0
    score: float = 0.0
    stages: dict[str, StageScore] = field(default_factory=dict)

    def stage_rank(self, stage: str) -> int | None:
        s = self.stages.get(stage)
        return s.rank if s else None

    def stage_score(self, stage: str) -> float | None:
        s = self.stages.get(stage)
        return s.score if s else None

    def to_dict(self, *, include_document: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"rank": self.rank, "id": self.id, "score": self.score,
                               "stages": {k: {"rank": v.rank, "score": v.score} for k, v in self.stages.items()}}
        if include_document:
            out["document"] = self.document
        return out


@dataclass
class SearchResult:
    """Hits for one query, best first, and how they were made.

    ``method`` names the stages that ran, e.g. ``bm25+dense/rrf+mmr+rerank``; when a ranker failed
    (a remote one timed out, answered garbage) the hits keep the first-stage order, ``method`` lacks
    ``+rerank`` and ``fallback`` says why.
    """

    query: str
    hits: list[Hit]
    method: str
    window: int = 0
    fallback: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __getitem__(self, i: int) -> Hit:
        return self.hits[i]

    @property
    def ids(self) -> list[str]:
        return [h.id for h in self.hits]

    def to_dict(self, *, include_document: bool = True) -> dict[str, Any]:
        return {"query": self.query, "method": self.method, "window": self.window, "fallback": self.fallback,
                "timings_ms": self.timings_ms,
                "hits": [h.to_dict(include_document=include_document) for h in self.hits]}

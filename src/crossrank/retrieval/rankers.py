"""Second-stage rankers: the local engine, a cascade of two, and the latency budget.

A ranker takes a query and the candidates' texts and returns a :class:`Ranking`. Rankers never
decide what to do when they fail: they raise :class:`RankerUnavailable`, and the pipeline keeps
the first-stage order and says so. Remote rankers (``remote.py``) are drop-ins for these.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from crossrank.checks import integer, number
from crossrank.errors import BackendError, InputError


class RankerUnavailable(BackendError):  # noqa: N818 - reads as a state, like the HTTP 503 it often is
    """A ranker could not rank (timeout, HTTP error, malformed answer, backend failure)."""


@dataclass
class Ranking:
    """A ranker's answer: candidate indices best first, their scores, and each stage's scores.

    ``order`` may be shorter than the candidates (a cascade drops the ones it pruned); the pipeline
    keeps those after the ranked ones, in first-stage order. ``stages`` maps a stage name to one
    score per candidate, NaN where that stage did not score it.
    """

    order: np.ndarray
    scores: np.ndarray
    stages: dict[str, np.ndarray] = field(default_factory=dict)
    #: per candidate, the model's own scores when ``scores`` are not (a fused ranker's are RRF sums);
    #: what ``min_score`` compares against
    own: np.ndarray | None = None

    def model_scores(self, n: int) -> np.ndarray:
        """The model's score of each of the ``n`` candidates, by position (NaN where it gave none)."""
        if self.own is not None:
            return self.own
        by_position = np.full(n, np.nan, dtype=np.float64)
        by_position[self.order] = self.scores
        return by_position


@runtime_checkable
class Ranker(Protocol):
    name: str

    def rank(self, query: str, texts: Sequence[str]) -> Ranking: ...


def ranking_of(name: str, scores: np.ndarray) -> Ranking:
    """Candidates best first by ``scores`` (ties keep their first-stage order), the scores as ``name``'s stage."""
    order = np.argsort(-scores, kind="stable")
    return Ranking(order=order, scores=scores[order], stages={name: scores})


class LocalRanker:
    """The local cross-encoder as a ranker; knows what it costs, so it can fit a latency budget.

    ``model`` is a :class:`~crossrank.engine.CrossEncoder` or anything its constructor takes (a
    built-in name, hub id, local dir, export). The cost model is measured on first use of
    ``budget_ms`` and refined by every call after that.
    """

    def __init__(self, model: Any = None, *, name: str = "rerank", **encoder_options: Any) -> None:
        from crossrank.engine import CrossEncoder

        self.encoder = model if isinstance(model, CrossEncoder) else CrossEncoder(model, **encoder_options)
        self.name = name
        self._cost: Any = None

    def __repr__(self) -> str:
        return f"LocalRanker({self.encoder.model_name!r}, name={self.name!r})"

    @property
    def cost(self) -> Any:
        """This machine's :class:`~crossrank.engine.cost.CostModel` for the encoder (measured once)."""
        if self._cost is None:
            from crossrank.engine.cost import measure_cost

            self._cost = measure_cost(self.encoder)
        return self._cost

    def calibrate(self) -> None:
        """Measure the cost model now (a fraction of a second) rather than inside a budgeted search."""
        _ = self.cost

    def rank(self, query: str, texts: Sequence[str]) -> Ranking:
        if not texts:
            return Ranking(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64), {self.name: np.zeros(0)})
        t0 = time.perf_counter()
        scores, stats = self.encoder.score_with_stats([(query, t) for t in texts])
        if self._cost is not None:
            self._cost.observe(stats, time.perf_counter() - t0)
        if scores.ndim != 1:
            raise InputError(f"{self.encoder.model_name} has {scores.shape[1]} labels; a ranker needs one score")
        return ranking_of(self.name, np.asarray(scores, dtype=np.float64))

    def estimate_s(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Predicted seconds to rank the first n texts, for n = 1..len(texts)."""
        from crossrank.engine.cost import pair_tokens

        tokens = np.cumsum(pair_tokens(self.encoder, query, texts))
        return np.asarray(self.cost.predict_s(tokens), dtype=np.float64)


class CascadeRanker:
    """A fast cross-encoder prunes the window to ``keep`` candidates; a larger one reranks those.

    In one call: the cascade's order is the survivors by the second ranker's score; the pruned
    candidates are left out of ``order`` (the pipeline keeps them after, in first-stage order).
    Stages report both scores: ``prune`` for every candidate, ``rerank`` for the survivors.
    """

    def __init__(self, first: Ranker, second: Ranker, *, keep: int = 10) -> None:
        self.first, self.second, self.keep = first, second, integer(keep, "cascade keep", minimum=1)
        self.name = "cascade"

    def calibrate(self) -> None:
        for ranker in (self.first, self.second):
            calibrate = getattr(ranker, "calibrate", None)
            if calibrate is not None:
                calibrate()

    def rank(self, query: str, texts: Sequence[str]) -> Ranking:
        pruned = self.first.rank(query, texts)
        prune_scores = next(iter(pruned.stages.values()), np.full(len(texts), np.nan))
        survivors = pruned.order[: self.keep]
        final = self.second.rank(query, [texts[i] for i in survivors])
        order = survivors[final.order]
        rerank = np.full(len(texts), np.nan, dtype=np.float64)
        rerank[order] = final.scores
        return Ranking(order=order, scores=final.scores,
                       stages={"prune": np.asarray(prune_scores, dtype=np.float64), "rerank": rerank})

    def estimate_s(self, query: str, texts: Sequence[str]) -> np.ndarray:
        first = _estimate(self.first, query, texts)
        survivors = [texts[i] for i in range(min(self.keep, len(texts)))]  # same lengths on average
        second = _estimate(self.second, query, survivors)
        n = np.arange(1, len(texts) + 1)
        return first + second[np.minimum(n, len(survivors)) - 1] if len(survivors) else first


class FusedRanker:
    """The cross-encoder's ranking fused with the first stage's by Reciprocal Rank Fusion.

    The window arrives in first-stage order, so a candidate's first-stage rank is its position; the
    final score is ``1/(k + first_rank) + weight/(k + ranker_rank)``. A reranker that is good but not
    better than its first stage everywhere can still add what the first stage lacks without throwing
    away what it knew (the design the issue calls fusion). Stages keep the inner ranker's scores and
    add ``fused``.
    """

    def __init__(self, inner: Ranker, *, k: float = 60, weight: float = 1.0) -> None:
        self.inner, self.k = inner, number(k, "fusion k", minimum=1)
        self.weight = number(weight, "fusion weight", minimum=0)
        self.name = f"{inner.name}+rrf"

    def calibrate(self) -> None:
        calibrate = getattr(self.inner, "calibrate", None)
        if calibrate is not None:
            calibrate()

    def rank(self, query: str, texts: Sequence[str]) -> Ranking:
        inner = self.inner.rank(query, texts)
        n = len(texts)
        inner_rank = np.full(n, n, dtype=np.float64)  # candidates the inner ranker left out rank last
        inner_rank[inner.order] = np.arange(len(inner.order))
        fused = 1.0 / (self.k + 1 + np.arange(n)) + self.weight / (self.k + 1 + inner_rank)
        order = np.argsort(-fused, kind="stable")
        return Ranking(order=order, scores=fused[order].astype(np.float64),
                       stages={**inner.stages, "fused": fused.astype(np.float64)}, own=inner.model_scores(n))

    def estimate_s(self, query: str, texts: Sequence[str]) -> np.ndarray:
        return _estimate(self.inner, query, texts)


def _estimate(ranker: Ranker, query: str, texts: Sequence[str]) -> np.ndarray:
    estimate = getattr(ranker, "estimate_s", None)
    if estimate is None:
        raise InputError(f"budget_ms needs rankers with a cost model; {ranker!r} has none (remote rankers don't)")
    return estimate(query, texts)


def window_for_budget(ranker: Ranker, query: str, texts: Sequence[str], remaining_s: float | None = None, *,
                      deadline: float | None = None) -> int:
    """The largest n such that ranking the first n texts is predicted to take at most ``remaining_s``,
    or to end by ``deadline`` (a ``time.perf_counter()`` instant). With a deadline the estimate itself
    (it tokenizes the window) is paid from the budget: the time left is read after it."""
    if (remaining_s is None) == (deadline is None):
        raise InputError("window_for_budget needs remaining_s or deadline, exactly one")
    if not texts:
        return 0
    predicted = _estimate(ranker, query, texts)  # first: a ranker without a cost model fails every time
    left = float(remaining_s) if deadline is None else deadline - time.perf_counter()  # type: ignore[arg-type]
    if left <= 0:
        return 0
    return int(np.searchsorted(predicted, left, side="right"))


def default_ranker(model: str | os.PathLike[str] | None = None, **options: Any) -> LocalRanker:
    """The local engine with the default (built-in) model unless one is named."""
    return LocalRanker(model, **options)

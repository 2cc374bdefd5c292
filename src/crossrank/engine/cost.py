"""What scoring costs on this machine: a linear model ``seconds = overhead + tokens / tokens_per_s``.

Encoder cost is close to linear in the tokens of a length-sorted, padded batch, so two timed
calls of different sizes are enough to fit it. Callers with a latency budget (the retrieval
pipeline's ``budget_ms``) ask how many pairs fit; callers that score anyway feed their measured
calls back with :meth:`CostModel.observe` so the model tracks the machine's current load.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from crossrank.engine.encoder import CrossEncoder, ScoreStats

_FILLER = ("the results of the experiment show that the method improves retrieval quality on several "
           "collections while keeping the cost of scoring low for short and long documents alike").split()


@dataclass
class CostModel:
    """Fitted cost of one scoring call; ``predict_s`` is what a call over ``tokens`` tokens should take."""

    overhead_s: float
    tokens_per_s: float
    measured_tokens: int = 0

    def predict_s(self, tokens: float | np.ndarray) -> float | np.ndarray:
        return self.overhead_s + np.asarray(tokens, dtype=np.float64) / self.tokens_per_s

    def observe(self, stats: ScoreStats, elapsed_s: float, *, weight: float = 0.2) -> None:
        """Blend a measured call into the throughput (exponential moving average)."""
        work_s = elapsed_s - self.overhead_s
        if stats.tokens <= 0 or work_s <= 0:
            return
        self.tokens_per_s = (1 - weight) * self.tokens_per_s + weight * (stats.tokens / work_s)
        self.measured_tokens += stats.tokens


def pair_tokens(encoder: CrossEncoder, query: str, documents: Sequence[str]) -> np.ndarray:
    """Tokens the encoder would run for each (query, document) pair, windows of long documents included."""
    if not documents:
        return np.zeros(0, dtype=np.int64)
    enc = encoder.tokenizer.encode([query] * len(documents), list(documents),
                                   max_chunks=encoder.max_chunks_per_doc, overlap=encoder.chunk_overlap)
    return np.bincount(enc.owner, weights=enc.lengths, minlength=len(documents)).astype(np.int64)


def measure_cost(encoder: CrossEncoder, *, small: int = 4, large: int = 32, words: int = 60,
                 repeats: int = 3) -> CostModel:
    """Fit the cost model by timing the encoder on synthetic pairs (distinct, so none is deduplicated).

    Takes the fastest of ``repeats`` runs at each size: the minimum is the machine's cost, the rest
    is noise from whatever else runs. Costs a fraction of a second for MiniLM-L6 on two cores.
    """
    def pairs(n: int) -> list[tuple[str, str]]:
        return [(f"query number {i}", f"document {i} " + " ".join(_FILLER[j % len(_FILLER)] for j in range(words)))
                for i in range(n)]

    encoder.score(pairs(2))  # warm-up: first-run allocations are not the steady state
    timings = {}
    for n in (small, large):
        best, tokens = float("inf"), 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            _, stats = encoder.score_with_stats(pairs(n))
            best = min(best, time.perf_counter() - t0)
            tokens = stats.tokens
        timings[n] = (tokens, best)
    (t_small, s_small), (t_large, s_large) = timings[small], timings[large]
    per_token = max((s_large - s_small) / max(t_large - t_small, 1), 1e-9)
    overhead = max(s_small - t_small * per_token, 0.0)
    return CostModel(overhead_s=overhead, tokens_per_s=1.0 / per_token, measured_tokens=t_small + t_large)

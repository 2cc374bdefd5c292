"""IR metrics via ir-measures, and paired significance tests via scipy.

A run is ``{qid: {docid: score}}`` (higher is better), the shape pytrec_eval and ir-measures use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crossrank.errors import InputError

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

# CLI/JSON name -> ir-measures name. RR@10 is MRR@10; relevance is gain >= 1 (graded qrels stay graded for NDCG).
DEFAULT_MEASURES: dict[str, str] = {"ndcg@10": "nDCG@10", "mrr@10": "RR@10", "recall@100": "R@100"}


def _measures(names: Sequence[str] | None) -> dict[str, Any]:
    import ir_measures

    chosen = DEFAULT_MEASURES if names is None else {n: DEFAULT_MEASURES.get(n.lower(), n) for n in names}
    parsed = {}
    for label, spec in chosen.items():
        try:
            parsed[label] = ir_measures.parse_measure(spec)
        except Exception as exc:  # noqa: BLE001 - ir-measures raises NameError/ValueError/SyntaxError for a bad name
            raise InputError(f"unknown measure {label!r} (ir-measures names such as nDCG@10, RR@10, R@100, P@5)") \
                from exc
    return parsed


def _complete(run: Run, qrels: Qrels) -> dict[str, dict[str, float]]:
    """Every judged query appears in the run (an empty ranking scores 0), so means are over the same queries.
    Ids holding lone surrogates (undecodable bytes) are left out: pytrec_eval crashes the process on them,
    and no judged document has one."""
    return {qid: {d: float(s) for d, s in run.get(qid, {}).items() if d.isascii() or _encodable(d)}
            for qid in qrels}


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def per_query(run: Run, qrels: Qrels, measures: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """``{measure: {qid: value}}`` over every judged query (missing queries count as 0)."""
    import ir_measures

    chosen = _measures(measures)
    by_measure = {label: dict.fromkeys(qrels, 0.0) for label in chosen}
    labels_of: dict[Any, list[str]] = {}  # two labels may name one measure (ndcg@10 and nDCG@10)
    for label, m in chosen.items():
        labels_of.setdefault(m, []).append(label)
    full = _complete(run, qrels)
    nonempty = {q: r for q, r in full.items() if r}
    if nonempty:
        for m in ir_measures.iter_calc(list(labels_of), dict(qrels), nonempty):
            for label in labels_of[m.measure]:
                by_measure[label][m.query_id] = float(m.value)
    return by_measure


def evaluate(run: Run, qrels: Qrels, measures: Sequence[str] | None = None) -> dict[str, float]:
    """Mean of each measure over all judged queries."""
    return means(per_query(run, qrels, measures))


def means(by_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``{measure: mean over queries}`` of :func:`per_query`'s figures (0 where there are no queries)."""
    return {label: float(np.mean(list(values.values()))) if values else 0.0 for label, values in by_query.items()}


@dataclass(frozen=True)
class Comparison:
    """Outcome of a paired test of method ``a`` against ``b`` on one measure."""

    measure: str
    a: str
    b: str
    mean_a: float
    mean_b: float
    relative: float | None  # (mean_a - mean_b) / mean_b; None when mean_b is 0 (no ratio exists)
    p_randomization: float
    p_ttest: float
    queries: int

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_randomization < alpha


def compare(a: Mapping[str, float], b: Mapping[str, float], *, measure: str = "ndcg@10", names: tuple[str, str] = (
        "a", "b"), resamples: int = 10_000, seed: int = 0) -> Comparison:
    """Paired two-sided randomization test and paired t-test on per-query values of one measure.

    The randomization test (Smucker et al., 2007, recommend it for IR) flips the sign of each query's
    difference at random; scipy does the resampling, we only line the queries up.
    """
    from scipy import stats

    qids = sorted(set(a) & set(b))
    x = np.array([a[q] for q in qids], dtype=np.float64)
    y = np.array([b[q] for q in qids], dtype=np.float64)
    mean_a, mean_b = float(x.mean()) if qids else 0.0, float(y.mean()) if qids else 0.0
    if len(qids) < 2 or np.allclose(x, y):
        p_rand = p_t = 1.0
    else:
        res = stats.permutation_test((x, y), lambda u, v: np.mean(u - v), permutation_type="samples",
                                     n_resamples=resamples, alternative="two-sided",
                                     rng=np.random.default_rng(seed))
        p_rand = float(res.pvalue)
        p_t = float(stats.ttest_rel(x, y).pvalue)
    relative = (mean_a - mean_b) / mean_b if mean_b else (None if mean_a else 0.0)
    return Comparison(measure, names[0], names[1], mean_a, mean_b, relative, p_rand, p_t, len(qids))

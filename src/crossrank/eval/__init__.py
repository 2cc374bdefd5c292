"""Evaluation: BEIR-layout collections, IR metrics through ir-measures, and paired significance tests.

Metric code is not ours: ir-measures (pytrec_eval underneath) computes every figure, so numbers are
comparable with published ones. What lives here is the glue: reading judged collections, naming
measures the way the CLI prints them, and deciding whether one method really beats another.
"""

from crossrank.eval.collection import Collection, load_collection
from crossrank.eval.metrics import DEFAULT_MEASURES, Comparison, compare, evaluate, per_query

__all__ = [
    "DEFAULT_MEASURES",
    "Collection",
    "Comparison",
    "compare",
    "evaluate",
    "load_collection",
    "per_query",
]

"""Two-stage retrieval: BM25 + dense first stage, RRF, MMR, cross-encoder rerank.

>>> from crossrank.retrieval import BM25, Dense, Index, LocalRanker, MMR, load_corpus
>>> index = Index.build(load_corpus("movies.jsonl"), ["title", "text"])
>>> search = (BM25(index) | Dense(index)) + MMR(0.7) + LocalRanker()
>>> search("family movie about bears", top_k=5, window=25)

Imports are lazy so ``import crossrank`` stays free of onnxruntime, bm25s and torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

_EXPORTS = {
    "Corpus": "corpus", "load_corpus": "corpus",
    "BM25Config": "bm25", "BM25Index": "bm25",
    "BiEncoder": "dense", "VectorIndex": "dense",
    "reciprocal_rank_fusion": "fusion", "mmr": "fusion",
    "Hit": "results", "SearchResult": "results", "StageScore": "results",
    "Ranking": "rankers", "Ranker": "rankers", "LocalRanker": "rankers", "CascadeRanker": "rankers",
    "FusedRanker": "rankers",
    "RankerUnavailable": "rankers", "window_for_budget": "rankers",
    "RemoteRanker": "remote",
    "rerank_search_response": "elastic",
    "Index": "index",
    "BM25": "pipeline", "Dense": "pipeline", "Fusion": "pipeline", "MMR": "pipeline", "Pipeline": "pipeline",
    "build_pipeline": "pipeline",
}

__all__ = [*_EXPORTS, "sample_corpus_path"]


def sample_corpus_path() -> Path:
    """The bundled sample corpus: 65 short movie descriptions written for crossrank (id, title, genre, text)."""
    return Path(__file__).resolve().parent.parent / "data" / "sample.jsonl"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'crossrank.retrieval' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"crossrank.retrieval.{module}"), name)
    globals()[name] = value
    return value

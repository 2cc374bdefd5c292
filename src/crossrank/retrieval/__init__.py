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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names are, for type checkers (they were Any)
    from crossrank.retrieval.bm25 import BM25Config as BM25Config
    from crossrank.retrieval.bm25 import BM25Index as BM25Index
    from crossrank.retrieval.corpus import Corpus as Corpus
    from crossrank.retrieval.corpus import load_corpus as load_corpus
    from crossrank.retrieval.dense import BiEncoder as BiEncoder
    from crossrank.retrieval.dense import VectorIndex as VectorIndex
    from crossrank.retrieval.elastic import rerank_response as rerank_response
    from crossrank.retrieval.elastic import rerank_search_response as rerank_search_response
    from crossrank.retrieval.elastic import rerank_solr_response as rerank_solr_response
    from crossrank.retrieval.fusion import mmr as mmr
    from crossrank.retrieval.fusion import reciprocal_rank_fusion as reciprocal_rank_fusion
    from crossrank.retrieval.index import Index as Index
    from crossrank.retrieval.pipeline import BM25 as BM25
    from crossrank.retrieval.pipeline import MMR as MMR
    from crossrank.retrieval.pipeline import Dense as Dense
    from crossrank.retrieval.pipeline import Fusion as Fusion
    from crossrank.retrieval.pipeline import Pipeline as Pipeline
    from crossrank.retrieval.pipeline import build_pipeline as build_pipeline
    from crossrank.retrieval.rankers import CascadeRanker as CascadeRanker
    from crossrank.retrieval.rankers import FusedRanker as FusedRanker
    from crossrank.retrieval.rankers import LocalRanker as LocalRanker
    from crossrank.retrieval.rankers import Ranker as Ranker
    from crossrank.retrieval.rankers import RankerUnavailable as RankerUnavailable
    from crossrank.retrieval.rankers import Ranking as Ranking
    from crossrank.retrieval.rankers import window_for_budget as window_for_budget
    from crossrank.retrieval.remote import RemoteRanker as RemoteRanker
    from crossrank.retrieval.results import Hit as Hit
    from crossrank.retrieval.results import SearchResult as SearchResult
    from crossrank.retrieval.results import StageScore as StageScore

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
    "rerank_search_response": "elastic", "rerank_solr_response": "elastic", "rerank_response": "elastic",
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

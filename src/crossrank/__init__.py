"""crossrank: cross-encoder reranking, exact and fast.

>>> from crossrank import CrossEncoder
>>> ce = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2")
>>> ce.rank("crocs", ["Crocs Kids' Baya Clog", "running shoes"], top_k=1)
"""

from typing import TYPE_CHECKING

from crossrank.engine import CrossEncoder, RankedDocument, ScoreStats
from crossrank.errors import (
    BackendError,
    CrossrankError,
    InputError,
    MissingDependencyError,
    ModelLoadError,
    ScoringStopped,
)

__version__ = "0.1.0"

if TYPE_CHECKING:  # what the lazy names below are, for type checkers (they were plain `object`)
    from crossrank.retrieval.corpus import load_corpus as load_corpus
    from crossrank.retrieval.elastic import rerank_response as rerank_response
    from crossrank.retrieval.elastic import rerank_search_response as rerank_search_response
    from crossrank.retrieval.elastic import rerank_solr_response as rerank_solr_response
    from crossrank.retrieval.index import Index as Index
    from crossrank.retrieval.pipeline import BM25 as BM25
    from crossrank.retrieval.pipeline import MMR as MMR
    from crossrank.retrieval.pipeline import Dense as Dense
    from crossrank.retrieval.pipeline import Pipeline as Pipeline
    from crossrank.retrieval.pipeline import build_pipeline as build_pipeline
    from crossrank.retrieval.rankers import CascadeRanker as CascadeRanker
    from crossrank.retrieval.rankers import LocalRanker as LocalRanker
    from crossrank.retrieval.remote import RemoteRanker as RemoteRanker
    from crossrank.retrieval.results import Hit as Hit
    from crossrank.retrieval.results import SearchResult as SearchResult

#: The retrieval pipeline, importable from the top (``from crossrank import Index, BM25``) but loaded
#: only when touched, so ``import crossrank`` stays quick and free of bm25s, usearch and torch.
_RETRIEVAL = ("BM25", "Dense", "MMR", "Index", "Pipeline", "SearchResult", "Hit", "LocalRanker",
              "CascadeRanker", "RemoteRanker", "build_pipeline", "load_corpus", "rerank_search_response",
              "rerank_solr_response", "rerank_response")


def __getattr__(name: str) -> object:
    if name in _RETRIEVAL:
        import crossrank.retrieval

        return getattr(crossrank.retrieval, name)
    raise AttributeError(f"module 'crossrank' has no attribute {name!r}")

__all__ = [
    "BackendError",
    "CrossEncoder",
    "CrossrankError",
    "InputError",
    "MissingDependencyError",
    "ModelLoadError",
    "RankedDocument",
    "ScoreStats",
    "ScoringStopped",
    "__version__",
    *_RETRIEVAL,
]

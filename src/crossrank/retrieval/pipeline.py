"""Composing the stages, Cherche-style: ``search = (BM25(index) | Dense(index)) + MMR(0.7) + ranker``.

``|`` fuses retrievers with Reciprocal Rank Fusion, ``+`` appends a stage: MMR diversification, a
corpus whose documents the hits should carry, a ranker (local engine, cascade or remote). The
result is a :class:`Pipeline`, callable on one query or a list of queries. A failing ranker never
fails the search: the hits keep the first-stage order and the result says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, overload

import numpy as np

from crossrank.checks import integer, number
from crossrank.engine.documents import as_items, field_names, query_text
from crossrank.errors import BackendError, InputError
from crossrank.retrieval.corpus import Corpus
from crossrank.retrieval.fusion import RRF_K, mmr, reciprocal_rank_fusion
from crossrank.retrieval.index import Index
from crossrank.retrieval.rankers import Ranker, window_for_budget
from crossrank.retrieval.results import Hit, SearchResult, StageScore

log = logging.getLogger(__name__)

#: How deep each retriever reads by default; RRF needs more than the window to fuse well.
DEFAULT_DEPTH = 100


class _Composable:
    def __add__(self, other: Any) -> Pipeline:
        return Pipeline(self) + other  # type: ignore[arg-type]


class Retriever(_Composable):
    """A first stage over an :class:`Index`. ``|`` with another retriever gives their RRF fusion."""

    name = "retriever"

    def __init__(self, index: Index, *, k: int = DEFAULT_DEPTH) -> None:
        self.index = index
        self.k = k

    def __or__(self, other: Retriever | Fusion) -> Fusion:
        if not isinstance(other, (Retriever, Fusion)):
            return NotImplemented
        others = other.retrievers if isinstance(other, Fusion) else [other]
        return Fusion([self, *others])

    def retrieve(self, query: str, k: int, context: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def warm(self) -> None:
        """Load what the first query would load (a model), so a time budget measures searching only."""


class BM25(Retriever):
    """BM25 over the index's fields (bm25s)."""

    name = "bm25"

    def __init__(self, index: Index, *, k: int = DEFAULT_DEPTH) -> None:
        if index.bm25 is None:
            raise InputError("this index has no BM25 part; build it with bm25=True")
        super().__init__(index, k=k)

    def retrieve(self, query: str, k: int, context: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return self.index.bm25.search(query, k)  # type: ignore[union-attr]


class Dense(Retriever):
    """Nearest neighbours of the query's embedding (exact or HNSW, as the index was built)."""

    name = "dense"

    def __init__(self, index: Index, *, k: int = DEFAULT_DEPTH) -> None:
        if index.vectors is None:
            raise InputError("this index has no dense part; build it with dense=True")
        super().__init__(index, k=k)

    def retrieve(self, query: str, k: int, context: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        vector = _query_vector(self.index, query, context)
        return self.index.vectors.search(vector, k)  # type: ignore[union-attr]

    def warm(self) -> None:
        # The bi-encoder loads on the first query (~0.3 s here): inside a budget it left no time to rerank.
        self.index.encoder.warm()


def _query_vector(index: Index, query: str, context: dict[str, Any]) -> np.ndarray:
    if "query_vector" not in context:
        context["query_vector"] = index.embed_query(query)
    return context["query_vector"]


class Fusion(_Composable):
    """Reciprocal Rank Fusion of retrievers; ``weights`` by retriever name (``bm25``, ``dense``)."""

    name = "rrf"

    def __init__(self, retrievers: Sequence[Retriever], *, k: float = RRF_K,
                 weights: Mapping[str, float] | None = None) -> None:
        names = [r.name for r in retrievers]
        if len(set(names)) != len(names):
            raise InputError(f"fused retrievers need distinct names, got {names}")
        if len({id(r.index) for r in retrievers}) != 1:
            raise InputError("fused retrievers must search the same index")
        self.retrievers = list(retrievers)
        self.k = number(k, "RRF k", minimum=0)
        self.weights = {name: number(w, f"RRF weight of {name!r}", minimum=0) for name, w in (weights or {}).items()}
        if len(names) > 1 and not any(self.weights.get(name, 1.0) > 0 for name in names):  # all fused scores 0
            raise InputError(f"RRF weights {self.weights} leave no retriever with a positive weight")
        self.index = retrievers[0].index

    def __or__(self, other: Retriever | Fusion) -> Fusion:
        if not isinstance(other, (Retriever, Fusion)):
            return NotImplemented
        others = other.retrievers if isinstance(other, Fusion) else [other]
        return Fusion([*self.retrievers, *others], k=self.k, weights=self.weights)


class MMR:
    """Diversify the candidates before reranking: ``lambda_=1`` is pure relevance, ``0`` pure novelty.

    Relevance is the first-stage score scaled to [0, 1] (so MMR respects BM25 in a hybrid), novelty
    the cosine similarity between document vectors; the index needs its dense part.
    """

    name = "mmr"

    def __init__(self, lambda_: float = 0.7) -> None:
        self.lambda_ = number(lambda_, "MMR lambda", minimum=0, maximum=1)


class Pipeline:
    """The stages of a search, in order: first stage, optional MMR, optional documents, optional ranker."""

    def __init__(self, first: Retriever | Fusion, *, mmr: MMR | None = None, documents: Corpus | None = None,
                 ranker: Ranker | None = None, on: Sequence[str] | None = None) -> None:
        if not isinstance(first, (Retriever, Fusion)):
            raise InputError(f"a pipeline starts with a retriever, got {type(first).__name__}")
        self.first = first
        self.index: Index = first.index
        self.mmr = mmr
        self.documents = documents
        self.ranker = ranker
        self.on = field_names(on) if on else list(self.index.fields)
        if on:  # a typo would rerank empty texts: fail now, like the index build does
            self.index.corpus.check_fields(self.on)

    def __add__(self, stage: Any) -> Pipeline:
        new = Pipeline(self.first, mmr=self.mmr, documents=self.documents, ranker=self.ranker, on=self.on)
        if isinstance(stage, MMR):
            if self.index.vectors is None:
                raise InputError("MMR needs document vectors: build the index with dense=True")
            new.mmr = stage
        elif isinstance(stage, Corpus):
            if len(stage) != len(self.index):
                raise InputError(f"documents have {len(stage)} entries for an index of {len(self.index)}")
            new.documents = stage
        elif isinstance(stage, Ranker):
            if self.ranker is not None:
                raise InputError("the pipeline already has a ranker; use CascadeRanker to chain two")
            new.ranker = stage
        else:
            raise InputError(f"cannot add a {type(stage).__name__} to a pipeline")
        return new

    @property
    def method(self) -> str:
        return self._unranked_method + (f"+{self.ranker.name}" if self.ranker else "")

    @property
    def _unranked_method(self) -> str:
        """The stages before the ranker: what a search that reranked nothing reports."""
        retrievers = self.first.retrievers if isinstance(self.first, Fusion) else [self.first]
        name = "+".join(r.name for r in retrievers) + ("/rrf" if isinstance(self.first, Fusion) else "")
        return name + ("+mmr" if self.mmr else "")

    @overload
    def __call__(  # type: ignore[overload-overlap]  # a str is a Sequence[str]; the str overload wins
            self, query: str, *, top_k: int = 10, window: int = 25, budget_ms: float | None = None,
                 min_score: float | None = None, depth: int | None = None) -> SearchResult: ...
    @overload
    def __call__(self, query: Sequence[str], *, top_k: int = 10, window: int = 25, budget_ms: float | None = None,
                 min_score: float | None = None, depth: int | None = None) -> list[SearchResult]: ...
    def __call__(self, query: str | Sequence[str], *, top_k: int = 10, window: int = 25,
                 budget_ms: float | None = None, min_score: float | None = None,
                 depth: int | None = None) -> SearchResult | list[SearchResult]:
        """Search one query (a :class:`SearchResult`) or a list of queries (a list of them).

        ``window`` candidates go to the ranker (fewer if ``budget_ms`` says so: the window that fits
        the budget left after the first stage, by the ranker's measured cost); ``min_score`` keeps only
        reranked hits scoring at least that (ignored when the ranker failed: first-stage scores are
        on another scale); ``depth`` is how many candidates each retriever reads (default: its ``k``,
        at least ``window`` and ``top_k``).
        """
        top_k, window = integer(top_k, "top_k"), integer(window, "window")
        if depth is not None:  # a float from a JSON body was a TypeError deep in a retriever
            depth = integer(depth, "depth", minimum=1)
        if budget_ms is not None:
            budget_ms = number(budget_ms, "budget_ms", above=0)
        if min_score is not None:  # NaN would keep nothing, silently
            min_score = number(min_score, "min_score")
            if self.ranker is None:
                raise InputError("min_score keeps reranked hits scoring at least that: this pipeline has no ranker")
        if isinstance(query, (str, bytes, bytearray)):  # bytes are one query, not a list of ints
            return self._search(query, top_k, window, budget_ms, min_score, depth)  # type: ignore[arg-type]
        queries = as_items(query, "queries")  # a list, or any iterable of queries (a generator, a numpy array)
        return [self._search(q, top_k, window, budget_ms, min_score, depth) for q in queries]

    search = __call__

    def _first_stage(self, query: str, depth: int | None, needed: int, context: dict[str, Any]
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, Trace]]:
        traces: dict[str, Trace] = {}
        retrievers = self.first.retrievers if isinstance(self.first, Fusion) else [self.first]
        rankings = {}
        for r in retrievers:
            positions, scores = r.retrieve(query, max(depth or r.k, needed, 1), context)
            rankings[r.name] = positions
            traces[r.name] = Trace(positions, scores)
        if not isinstance(self.first, Fusion):
            (trace,) = traces.values()
            return trace.positions, np.asarray(trace.scores, dtype=np.float64), traces
        positions, fused = reciprocal_rank_fusion(rankings, k=self.first.k, weights=self.first.weights)
        traces["rrf"] = Trace(positions, fused)
        return positions, fused, traces

    def _search(self, query: str, top_k: int, window: int, budget_ms: float | None, min_score: float | None,
                depth: int | None) -> SearchResult:
        if budget_ms is not None and self.ranker is not None:  # once, before the clock: the budget is for the search
            for retriever in self.first.retrievers if isinstance(self.first, Fusion) else [self.first]:
                retriever.warm()
            calibrate = getattr(self.ranker, "calibrate", None)
            if calibrate is not None:
                calibrate()
        started = time.perf_counter()
        query = query_text(query)
        context: dict[str, Any] = {}
        timings: dict[str, float] = {}
        candidates, first_scores, traces = self._first_stage(query, depth, max(window, top_k), context)
        timings["first_stage"] = _ms(started)
        base_score = dict(zip(candidates.tolist(), first_scores.tolist(), strict=True))
        method = self._unranked_method  # the ranker joins it only if it ranked something
        if self.mmr is not None and len(candidates):
            t0 = time.perf_counter()
            n_pick = max(window, top_k)
            vectors = self.index.vectors.document_vectors(candidates)  # type: ignore[union-attr]
            relevance = first_scores / first_scores.max() if first_scores.max() > 0 else first_scores
            picked = mmr(None, vectors, lambda_=self.mmr.lambda_, top_n=n_pick, relevance=relevance)
            rest = np.setdiff1d(np.arange(len(candidates)), picked, assume_unique=True)
            candidates = candidates[np.concatenate([picked, rest])]
            traces["mmr"] = Trace(candidates[: len(picked)], None)
            timings["mmr"] = _ms(t0)
        reranked: dict[int, float] = {}
        gate: dict[int, float] = {}
        fallback = None
        used_window = 0
        if self.ranker is not None and len(candidates) and window:
            used_window = min(window, len(candidates))
            texts = [self.index.corpus.text_at(int(p), self.on) for p in candidates[:used_window]]
            if budget_ms is not None:
                deadline = started + budget_ms / 1000
                used_window = min(used_window, window_for_budget(self.ranker, query, texts, deadline=deadline))
                texts = texts[:used_window]
                if not used_window:  # said, so min_score being left unapplied is not a silent surprise
                    fallback = f"budget_ms={budget_ms:g} left no time to rerank, kept first-stage order"
            t0 = time.perf_counter()
            try:
                ranking = self.ranker.rank(query, texts) if used_window else None
            except BackendError as exc:  # RankerUnavailable, or the local engine failing on a batch
                ranking, fallback = None, f"{self.ranker.name} failed, kept first-stage order: {exc}"
                log.warning("search %r: %s", query[:80], fallback)
            timings["rerank"] = _ms(t0)
            if ranking is not None:
                method += f"+{self.ranker.name}"
                head = candidates[:used_window]
                ordered = head[ranking.order]
                for stage, scores in ranking.stages.items():
                    finite = np.flatnonzero(np.isfinite(scores))
                    stage_order = finite[np.argsort(-scores[finite], kind="stable")]
                    traces[stage] = Trace(head[stage_order], scores[stage_order])
                reranked = dict(zip(ordered.tolist(), ranking.scores.tolist(), strict=True))
                # min_score reads the model's own scores: a fused ranker's final score is an RRF sum
                gate = {p: s for p, s in zip(head.tolist(), ranking.model_scores(len(head)).tolist(), strict=True)
                        if p in reranked}
                unranked = np.setdiff1d(head, ordered, assume_unique=True)
                keep_order = np.isin(head, unranked)
                candidates = np.concatenate([ordered, head[keep_order], candidates[used_window:]])
        if min_score is not None and reranked:
            candidates = np.array([p for p in candidates.tolist() if gate.get(p, -np.inf) >= min_score],
                                  dtype=np.int64)
        documents = self.documents or self.index.corpus
        hits = []
        shown = candidates[:top_k]
        found = {name: trace.lookup(shown) for name, trace in traces.items()}
        for rank, p in enumerate(shown.tolist(), 1):
            stages = {name: s for name, at in found.items() if (s := at[rank - 1]) is not None}
            score = reranked[p] if p in reranked else base_score.get(p, 0.0)
            hits.append(Hit(id=self.index.corpus.ids[p], position=p, document=documents.documents[p], rank=rank,
                            score=float(score), stages=stages))
        timings["total"] = _ms(started)
        return SearchResult(query=query, hits=hits, method=method, window=used_window if not fallback else 0,
                            fallback=fallback, timings_ms=timings)


class Trace(NamedTuple):
    """One stage's ranking (positions best first, their scores, or ``None`` for rank-only stages).

    Kept as arrays and looked up only for the hits returned: building a per-document map for every
    candidate of every stage cost ~0.8 ms a query, ~8% of a hybrid search at 100k documents.
    """

    positions: np.ndarray
    scores: np.ndarray | None

    def lookup(self, hits: np.ndarray) -> list[StageScore | None]:
        """Each hit's rank and score in this stage, ``None`` where the stage did not see it."""
        if not len(hits) or not len(self.positions):
            return [None] * len(hits)
        # Sorted search, not a hits x positions match matrix: that was quadratic (20,000 hits of a
        # 100k-document stage built a 2 GB boolean matrix).
        by_position = np.argsort(self.positions, kind="stable")
        sorted_positions = self.positions[by_position]
        slot = np.minimum(np.searchsorted(sorted_positions, hits), len(sorted_positions) - 1)
        seen = sorted_positions[slot] == hits
        at = by_position[slot]
        scores = self.scores.tolist() if self.scores is not None else None
        return [StageScore(int(i) + 1, None if scores is None else scores[i]) if ok else None
                for i, ok in zip(at.tolist(), seen.tolist(), strict=True)]


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def build_pipeline(index: Index, *, retrievers: Sequence[str] | None = None, rrf_k: float = RRF_K,
                   weights: Mapping[str, float] | None = None, mmr_lambda: float | None = None,
                   ranker: Ranker | None = None, on: Sequence[str] | None = None, depth: int = DEFAULT_DEPTH
                   ) -> Pipeline:
    """The usual pipeline over an index: every retriever it has (or those named), RRF, MMR, ranker."""
    available = {"bm25": index.bm25 is not None, "dense": index.vectors is not None}
    names = list(retrievers) if retrievers else [n for n, ok in available.items() if ok]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InputError(f"unknown retriever {unknown[0]!r}; expected bm25 or dense")
    classes = {"bm25": BM25, "dense": Dense}
    stages = [classes[n](index, k=depth) for n in names]
    lacking = set(weights or {}) - set(names)
    if lacking:
        raise InputError(f"weights name retrievers this pipeline lacks: {sorted(lacking)}; it has {names}")
    fusion = Fusion(stages, k=rrf_k, weights=weights)  # checks k and weights even when one retriever needs neither
    first: Retriever | Fusion = stages[0] if len(stages) == 1 else fusion
    pipeline = Pipeline(first, on=on)
    if mmr_lambda is not None:
        pipeline = pipeline + MMR(mmr_lambda)
    if ranker is not None:
        pipeline = pipeline + ranker
    return pipeline

"""Run retrieval methods over a judged collection and measure them.

A method is written the way the pipeline names itself: a first stage (``bm25``, ``dense`` or
``hybrid`` = both fused by RRF) and optional stages (``+mmr``, ``+rerank``), e.g. ``hybrid+rerank``.
``default`` is the pipeline ``crossrank search`` runs by default. Each method's run keeps the top
``depth`` documents (Recall@100 needs 100), the reranked window first.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.errors import InputError
from crossrank.eval.collection import Collection
from crossrank.eval.metrics import means, per_query

log = logging.getLogger(__name__)

FIRST_STAGES = {"bm25": ["bm25"], "dense": ["dense"], "hybrid": ["bm25", "dense"]}
MODIFIERS = ("mmr", "rerank", "fuse")


@dataclass(frozen=True)
class Method:
    name: str
    retrievers: tuple[str, ...]
    mmr: bool = False
    rerank: bool = False
    fuse: bool = False  # the rerank fused with the first stage by RRF (rankers.FusedRanker)
    run: str | None = None  # an external first stage: the name of a --run file (eval.runs)


def parse_method(name: str, default: str = "hybrid", runs: Sequence[str] = ()) -> Method:
    """``hybrid+mmr+rerank`` -> retrievers (bm25, dense), mmr, rerank; a clear error for anything else.
    ``runs`` are the names of external first stages (run files) a method may start with."""
    spec = default if name == "default" else name
    first, *mods = spec.strip().lower().split("+")
    if first not in FIRST_STAGES and first not in runs:
        raise InputError(f"unknown method {name!r}: it must start with one of {sorted(FIRST_STAGES)}"
                         + (f" or a --run name {sorted(runs)}" if runs else ""))
    bad = [m for m in mods if m not in MODIFIERS]
    if bad or len(set(mods)) != len(mods):
        raise InputError(f"unknown or repeated stage {bad[0] if bad else mods!r} in {name!r}; "
                         f"stages are {MODIFIERS}")
    if "fuse" in mods and "rerank" not in mods:
        raise InputError(f"{name!r}: +fuse fuses the rerank with the first stage, so it needs +rerank")
    if first in runs and first not in FIRST_STAGES:
        if "mmr" in mods:
            raise InputError(f"{name!r}: +mmr needs crossrank's embeddings of the run's documents; not for a run")
        return Method(name, (), False, "rerank" in mods, "fuse" in mods, run=first)
    return Method(name, tuple(FIRST_STAGES[first]), "mmr" in mods, "rerank" in mods, "fuse" in mods)


@dataclass
class MethodResult:
    """One method's figures on one collection: mean measures, per-query values, stage latencies (ms)."""

    method: str
    collection: str
    measures: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(repr=False)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    queries: int = 0
    fallbacks: int = 0
    run: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)  # {qid: {docid: score}}

    @classmethod
    def measured(cls, method: str, collection: Collection, run: dict[str, dict[str, float]],
                 latency_ms: dict[str, list[float]], fallbacks: int = 0) -> MethodResult:
        """``run`` scored against the collection's judgments (ir-measures, once per query), with each
        stage's latencies as p50 and mean."""
        by_query = per_query(run, collection.qrels)
        latency = {stage: {"p50": float(np.percentile(v, 50)), "mean": float(np.mean(v))}
                   for stage, v in latency_ms.items() if v}
        return cls(method, collection.name, means(by_query), by_query, latency, len(run), fallbacks, run)

    def write_trec(self, path: Path) -> None:
        """The run as a TREC run file (``qid Q0 docid rank score tag``), for trec_eval or another tool."""
        tag = self.method.replace(" ", "_")
        spaced = next((i for qid, scores in self.run.items() for i in (qid, *scores) if len(i.split()) != 1), None)
        if spaced is not None:  # the format has no quoting: the line would read as other columns
            raise InputError(f"cannot write {path}: id {spaced!r} holds whitespace, which a TREC run cannot hold")
        with path.open("w", encoding="utf-8") as fh:
            for qid, scores in self.run.items():
                ranked = sorted(scores.items(), key=lambda kv: -kv[1])
                fh.writelines(f"{qid} Q0 {doc} {rank} {score:g} {tag}\n" for rank, (doc, score) in enumerate(ranked, 1))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "collection": self.collection, **self.measures, "queries": self.queries,
                "latency_ms": self.latency_ms, **({"fallbacks": self.fallbacks} if self.fallbacks else {})}


def index_for(collection: Collection, fields: Sequence[str] = ("title", "text"), *, dense: bool = True,
              progress: Callable[[str, int, int], None] | None = None, dense_windows: int | str = "auto") -> Any:
    """The collection's index, built once and cached under crossrank's cache, keyed by the corpus bytes."""
    from crossrank.engine.model import cache_root
    from crossrank.retrieval import Index, load_corpus
    from crossrank.retrieval.dense import check_windows

    digest = hashlib.sha256(collection.corpus_path.read_bytes()).hexdigest()[:16]
    dense_windows = check_windows(dense_windows)
    windows = f"-w{dense_windows}" if dense and dense_windows != 1 else ""
    key = f"{collection.name}-{digest}-{'-'.join(fields)}{'-dense' if dense else ''}{windows}"
    path = cache_root() / "eval-index" / key
    if (path / "manifest.json").exists():
        try:
            return Index.load(path)
        except InputError as exc:  # a cache: what is damaged is built again, not reported for the user to fix
            log.warning("cached index of %s is damaged (%s); building it again", collection.name, exc)
            shutil.rmtree(path, ignore_errors=True)
    index = Index.build(load_corpus(collection.corpus_path, id_field="_id"), list(fields), dense=dense,
                        progress=progress, dense_windows=dense_windows)
    index.save(path)
    return index


def run_method(index: Any, collection: Collection, method: Method, *, window: int = 100, depth: int = 100,
               ranker: Any = None, progress: Callable[[int], None] | None = None) -> MethodResult:
    """Search every judged query with ``method`` and score the runs with ir-measures."""
    from crossrank.retrieval import build_pipeline

    if method.rerank and ranker is None:
        raise InputError(f"{method.name} needs a ranker")
    if method.fuse:
        from crossrank.retrieval import FusedRanker

        ranker = FusedRanker(ranker)
    pipeline = build_pipeline(index, retrievers=list(method.retrievers), mmr_lambda=0.7 if method.mmr else None,
                              ranker=ranker if method.rerank else None, depth=max(depth, window))
    run: dict[str, dict[str, float]] = {}
    stage_ms: dict[str, list[float]] = {}
    fallbacks = 0
    for qid, text in collection.queries.items():
        t0 = time.perf_counter()
        result = pipeline(text, top_k=depth, window=window if method.rerank else 0)
        stage_ms.setdefault("wall", []).append((time.perf_counter() - t0) * 1000)
        for stage, ms in result.timings_ms.items():
            stage_ms.setdefault(stage, []).append(ms)
        fallbacks += result.fallback is not None
        # The run's scores only have to order: rank-derived scores keep the pipeline's order exactly.
        run[qid] = {hit.id: float(depth - i) for i, hit in enumerate(result.hits)}
        if progress:
            progress(1)
    return MethodResult.measured(method.name, collection, run, stage_ms, fallbacks)

"""Your own first stage, measured: a TREC run file evaluated as it is, and reranked by a cross-encoder.

Elasticsearch, OpenSearch, Solr, Vespa and Pyserini results are commonly exported as TREC runs
(``qid Q0 docid rank score tag``). ``crossrank eval DATA --run es=es.trec --model M`` then measures the
engine's own ranking and what a rerank of its top ``--window`` buys, over the same judged queries and
with the same metrics as crossrank's own stages.
"""

from __future__ import annotations

import gzip
import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from crossrank.errors import BackendError, InputError
from crossrank.eval.collection import Collection, undecodable

log = logging.getLogger(__name__)

#: A run's name becomes a method's first stage (``es+rerank``): no '+', ',' or spaces.
_NAME = re.compile(r"[a-z0-9_.-]+")


def run_name(spec: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` (named by its file stem, lowercased) -> (name, path)."""
    name, sep, path = spec.partition("=")
    if not sep or "/" in name:
        name, path = Path(spec).name.split(".")[0], spec
    name = name.strip().lower()
    if not _NAME.fullmatch(name):
        raise InputError(f"--run {spec!r}: {name!r} cannot name a method (letters, digits, '_', '-', '.'); "
                         "write --run NAME=PATH")
    return name, Path(path)


def _open_text(path: Path) -> IO[str]:
    """The run file as text: plain or gzip-compressed (Anserini and Pyserini write ``.gz`` runs), UTF-8
    with or without a byte-order mark; undecodable bytes kept as surrogates, for the reader to refuse."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head[:2] == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="surrogateescape")
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InputError(f"run file {path} is UTF-16 (what PowerShell's > writes); save it as UTF-8")
    return path.open(encoding="utf-8-sig", errors="surrogateescape")


def read_run(path: Path) -> dict[str, list[str]]:
    """Each query's documents, best first: by score, ties by document id, descending — trec_eval's order,
    so its published figures are reproduced (the rank column is not trusted: tools disagree on it)."""
    if not path.is_file():
        raise InputError(f"run file {path} not found")
    scored: dict[str, list[tuple[float, str]]] = {}
    seen: set[tuple[str, str]] = set()
    with _open_text(path) as fh:
        for n, line in enumerate(fh, 1):
            if undecodable(line):
                raise InputError(f"{path}:{n}: not UTF-8 text")
            row = line.split()
            if not row:
                continue
            if len(row) != 6:
                raise InputError(f"{path}:{n}: expected 6 whitespace-separated columns (qid Q0 docid rank score "
                                 f"tag), got {len(row)}")
            qid, _, doc, _, score_text, _ = row
            try:
                score = float(score_text)
            except ValueError:
                raise InputError(f"{path}:{n}: score {score_text!r} is not a number") from None
            if not math.isfinite(score):
                raise InputError(f"{path}:{n}: score {score_text!r} is not finite")
            if (qid, doc) in seen:
                raise InputError(f"{path}:{n}: document {doc!r} is listed twice for query {qid!r}")
            seen.add((qid, doc))
            scored.setdefault(qid, []).append((score, doc))
    if not scored:
        raise InputError(f"run file {path} holds no results")
    return {qid: [doc for _, doc in sorted(rows, reverse=True)] for qid, rows in scored.items()}


def run_external(collection: Collection, method: Any, ranking: dict[str, list[str]], *, window: int, depth: int,
                 fields: list[str], ranker: Any = None, progress: Callable[[int], None] | None = None) -> Any:
    """The run named by ``method.run`` as it is, or with its top ``window`` reranked by ``ranker`` (fused with
    the run's order for ``+fuse``); measured like crossrank's own methods (a
    :class:`~crossrank.eval.runner.MethodResult`)."""
    from crossrank.eval.runner import MethodResult
    from crossrank.retrieval.corpus import join_fields

    name, rerank = method.run, method.rerank
    if rerank and ranker is None:
        raise InputError(f"{method.name} needs a ranker")
    if method.fuse:
        from crossrank.retrieval import FusedRanker

        ranker = FusedRanker(ranker)

    judged = [q for q in collection.queries if q in ranking]
    if not judged:
        raise InputError(f"run {name!r} has none of {collection.name}'s judged query ids "
                         f"(e.g. {next(iter(collection.queries))!r}): is it a run of this collection?")
    listed = {d for q in judged for d in ranking[q][:max(depth, window)]}
    unknown = {d for d in listed if d not in collection.corpus}
    if unknown == listed:
        raise InputError(f"none of the documents run {name!r} lists for {collection.name}'s judged queries is in "
                         f"its corpus (e.g. {sorted(unknown)[:3]}; corpus ids look like "
                         f"{list(collection.corpus)[:3]}): the run must name documents by the corpus's _id")
    run: dict[str, dict[str, float]] = {}
    rerank_ms: list[float] = []
    fallbacks = 0
    for qid, query in collection.queries.items():
        docs = ranking.get(qid, [])[: max(depth, window if rerank else 0)]
        if rerank and docs:
            head = docs[:window]
            known = [d for d in head if d in collection.corpus]
            texts = [join_fields(collection.corpus[d], fields, f"document {d!r}") for d in known]
            t0 = time.perf_counter()
            try:
                order = ranker.rank(query, texts).order.tolist()
            except BackendError as exc:  # as the pipeline does: the first stage's order, and say so
                log.warning("%s %s+rerank, query %s: ranker failed, kept the run's order: %s",
                            collection.name, name, qid, exc)
                order, fallbacks = list(range(len(known))), fallbacks + 1
            rerank_ms.append((time.perf_counter() - t0) * 1000)
            reranked = [known[i] for i in order]
            left = set(known) - set(reranked)  # pruned by a cascade: after the reranked ones
            # documents the corpus lacks cannot be read: they follow the reranked ones, in the run's order
            docs = reranked + [d for d in known if d in left] + \
                [d for d in head if d not in collection.corpus] + docs[window:]
        run[qid] = {doc: float(len(docs) - i) for i, doc in enumerate(docs[:depth])}
        if progress:
            progress(1)
    if unknown:
        log.warning("%s: %d of the %d documents run %r lists are not in the corpus (e.g. %s): they count as "
                    "unjudged%s", collection.name, len(unknown), len(listed), name, sorted(unknown)[:3],
                    ", and follow the reranked ones in a window" if rerank else "")
    missing = len(collection.queries) - len(judged)
    if missing:
        log.warning("%s: run %r has no results for %d of %d judged queries; they count as 0",
                    collection.name, name, missing, len(collection.queries))
    # The run's own stage was timed elsewhere, if at all: a reranked row's total is its rerank; a plain one has none.
    return MethodResult.measured(method.name, collection, run, {"rerank": rerank_ms, "total": rerank_ms}, fallbacks)

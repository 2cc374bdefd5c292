"""Reranking the hits of an Elasticsearch / OpenSearch ``_search`` response, returned in the same shape.

The response goes in as the JSON the engine returned; the ranker reads the ``_source`` fields named
by ``on``; the response comes back with ``hits.hits`` reordered, each ``_score`` replaced by the
reranker's and the engine's own score and rank kept under ``_crossrank`` so nothing is lost. A
failing ranker leaves the response as it was, with ``_crossrank.fallback`` saying why.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from crossrank.checks import integer
from crossrank.engine.documents import document_text, field_names, query_text
from crossrank.errors import InputError
from crossrank.retrieval.rankers import Ranker, RankerUnavailable

log = logging.getLogger(__name__)


def _hits(response: Any) -> list[dict[str, Any]]:
    hits = response.get("hits") if isinstance(response, Mapping) else None
    items = hits.get("hits") if isinstance(hits, Mapping) else None
    if not isinstance(items, list):
        raise InputError("not an Elasticsearch/OpenSearch _search response: it has no hits.hits list")
    return items


def rerank_search_response(response: Mapping[str, Any], query: str, ranker: Ranker, *,
                           on: Sequence[str] = ("title", "text"), window: int | None = None) -> dict[str, Any]:
    """A copy of ``response`` with its first ``window`` hits (all by default) reranked by ``ranker``.

    Hits beyond the window keep their order after the reranked ones. Each reranked hit gets
    ``_crossrank: {first_stage_rank, first_stage_score, rerank_rank}``; ``hits.max_score`` follows.
    """
    query = query_text(query)
    if not isinstance(response, Mapping):
        raise InputError(f"not an Elasticsearch/OpenSearch _search response: a {type(response).__name__}, "
                         "not the JSON object")
    if window is not None:  # None: every hit
        window = integer(window, "window")
    fields = field_names(on)
    out = copy.deepcopy(dict(response))
    hits = _hits(out)
    n = len(hits) if window is None else min(window, len(hits))
    if n == 0:
        return out
    texts = []
    for i, hit in enumerate(hits[:n]):
        source = hit.get("_source") if isinstance(hit, Mapping) else None
        if not isinstance(source, Mapping):
            raise InputError(f"hit {i} has no _source object; ask the engine for the fields in `on`")
        texts.append(document_text(source, fields, f"hit {i} (_id {hit.get('_id')!r}) _source"))
    try:
        ranking = ranker.rank(query, texts)
    except RankerUnavailable as exc:
        reason = f"{ranker.name} failed, kept the engine's order: {exc}"
        log.warning("rerank of _search response: %s", reason)
        out["_crossrank"] = {"method": "engine", "fallback": reason}
        return out
    ordered = ranking.order.tolist()
    seen = set(ordered)
    unranked = [i for i in range(n) if i not in seen]
    for rerank_rank, (i, score) in enumerate(zip(ordered, ranking.scores.tolist(), strict=True), 1):
        hit = hits[i]
        hit["_crossrank"] = {"first_stage_rank": i + 1, "first_stage_score": hit.get("_score"),
                             "rerank_rank": rerank_rank}
        hit["_score"] = float(score)
    out["hits"]["hits"] = [hits[i] for i in ordered] + [hits[i] for i in unranked] + hits[n:]
    if ordered:
        out["hits"]["max_score"] = float(ranking.scores[0])
    out["_crossrank"] = {"method": f"engine+{ranker.name}", "window": n, "fallback": None}
    return out

"""Reranking the hits of an Elasticsearch / OpenSearch ``_search`` response, returned in the same shape.

The response goes in as the JSON the engine returned; the ranker reads the ``_source`` fields named
by ``on``, as the engine names them (``author.name`` reads ``{"author": {"name": ...}}``, and every
name of an array of authors); a hit with none of them is ranked as an empty text. The response comes
back with ``hits.hits`` reordered, each ``_score`` replaced by the reranker's and the engine's own
score and rank kept under ``_crossrank`` so nothing is lost. A failing ranker leaves the response as
it was, with ``_crossrank.fallback`` saying why.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from crossrank.checks import integer
from crossrank.engine.documents import field_names, query_text
from crossrank.errors import BackendError, InputError
from crossrank.retrieval.corpus import join_fields
from crossrank.retrieval.rankers import Ranker

log = logging.getLogger(__name__)


def _hits(response: Any) -> list[dict[str, Any]]:
    hits = response.get("hits") if isinstance(response, Mapping) else None
    items = hits.get("hits") if isinstance(hits, Mapping) else None
    if not isinstance(items, list):
        raise InputError("not an Elasticsearch/OpenSearch _search response: it has no hits.hits list")
    return items


def _values(value: Any, path: list[str]) -> list[Any]:
    """The values at a dotted field path, as the engine resolves it: through objects, across arrays of
    objects, and through keys that themselves hold dots (``{"author.name": ...}``)."""
    if not path:
        return value if isinstance(value, list) else [value]
    if isinstance(value, list):
        return [v for item in value for v in _values(item, path)]
    if isinstance(value, Mapping):
        for cut in range(len(path), 0, -1):  # the longest key first: "a.b" before "a" then "b"
            key = ".".join(path[:cut])
            if key in value:
                return _values(value[key], path[cut:])
    return []


def _hit_text(source: Mapping[str, Any], fields: list[str], what: str) -> str:
    """The hit's text as the pipeline reads a document's: its fields (resolved by path) joined."""
    resolved = {f: v[0] if len(v) == 1 else v for f in fields if (v := _values(source, f.split(".")))}
    return join_fields(resolved, fields, what)


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
    texts, empty = [], []
    for i, hit in enumerate(hits[:n]):
        source = hit.get("_source") if isinstance(hit, Mapping) else None
        if not isinstance(source, Mapping):
            raise InputError(f"hit {i} has no _source object; ask the engine for the fields in `on`")
        text = _hit_text(source, fields, f"hit {i} (_id {hit.get('_id')!r}) _source")
        if not text:  # a sparse document: ranked on nothing, as the pipeline ranks one
            empty.append(hit.get("_id", i))
        texts.append(text)
    if empty and len(empty) == n:
        raise InputError(f"none of the fields {fields} is in any hit's _source; name the fields to rank on")
    if empty:
        log.warning("rerank of _search response: %d hits have none of %s, ranked as empty texts: %s",
                    len(empty), fields, empty[:5])
    try:
        ranking = ranker.rank(query, texts)
    except BackendError as exc:  # RankerUnavailable, or the local engine failing on a batch
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

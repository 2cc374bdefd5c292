"""Reranking the hits of an Elasticsearch / OpenSearch ``_search`` or a Solr ``/select`` response, returned
in the same shape.

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
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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


def _hit_text(sources: Sequence[Mapping[str, Any]], fields: list[str], what: str) -> str:
    """The hit's text as the pipeline reads a document's: its fields (each resolved by path in the first
    of ``sources`` that has it) joined."""
    resolved = {}
    for f in fields:
        v = next((v for source in sources if (v := _values(source, f.split(".")))), None)
        if v:
            resolved[f] = v[0] if len(v) == 1 else v
    return join_fields(resolved, fields, what)


class HasBody(Protocol):
    """A client library's response object that holds the JSON as ``.body`` (elasticsearch-py 8+'s
    ``ObjectApiResponse``, opensearch-py's alike)."""

    @property
    def body(self) -> Any: ...


#: What the rerank functions take: the response JSON as a mapping, or a client's response object.
Response = Mapping[str, Any] | HasBody


#: Hits reranked by default: what eval reranks. A 10,000-hit response reranked whole took minutes on a CPU;
#: the hits past the window keep the engine's order (with a null score).
WINDOW = 100


@dataclass(frozen=True)
class _Shape:
    """Where an engine's response keeps what a rerank reads and rewrites."""

    engine: str  # for messages
    sources: Callable[[Mapping[str, Any]], list[Any]]  # where a hit's fields are, in the order to look
    score_key: str
    id_key: str


def _elastic_fields(hit: Mapping[str, Any]) -> list[Any]:
    """A hit's ``_source`` (possibly filtered), then its ``fields`` (the ``fields`` option, or ``_source:
    false``): the same names, every value an array, which :func:`_values` reads alike. A field is read from
    the first that has it."""
    found = [hit[key] for key in ("_source", "fields") if hit.get(key) is not None]
    return found or [{}]


_ELASTIC = _Shape("Elasticsearch/OpenSearch", _elastic_fields, "_score", "_id")
_SOLR = _Shape("Solr", lambda doc: [doc], "score", "id")


def _rerank_hits(hits: list[Any], window: int | None, query: str, ranker: Ranker, fields: list[str],
                 shape: _Shape) -> tuple[list[Any], float | None, dict[str, Any] | None]:
    """The hits reordered (the first ``window`` by the ranker, the rest after them as they were), the new
    top score (None when nothing was reranked) and the response-level ``_crossrank`` note (None when
    there was nothing to rerank)."""
    n = len(hits) if window is None else min(window, len(hits))
    if n == 0:
        return hits, None, None
    texts, empty = [], []
    for i, hit in enumerate(hits[:n]):
        sources: list[Any] = shape.sources(hit) if isinstance(hit, Mapping) else [None]
        if not all(isinstance(source, Mapping) for source in sources):
            what = "_source or fields object" if shape is _ELASTIC else "field object"
            raise InputError(f"hit {i} has no {what}; ask the engine for the fields in `on`")
        text = _hit_text(sources, fields, f"hit {i} ({shape.id_key} {hit.get(shape.id_key)!r})")
        if not text:  # a sparse document: ranked on nothing, as the pipeline ranks one
            empty.append(hit.get(shape.id_key, i))
        texts.append(text)
    if len(empty) == n:
        raise InputError(f"none of the fields {fields} is in any hit; name the fields to rank on")
    if empty:
        log.warning("rerank of a %s response: %d hits have none of %s, ranked as empty texts: %s",
                    shape.engine, len(empty), fields, empty[:5])
    try:
        ranking = ranker.rank(query, texts)
    except BackendError as exc:  # RankerUnavailable, or the local engine failing on a batch
        reason = f"{ranker.name} failed, kept the engine's order: {exc}"
        log.warning("rerank of a %s response: %s", shape.engine, reason)
        return hits, None, {"method": "engine", "fallback": reason}
    ordered = ranking.order.tolist()
    scores = dict(zip(ordered, ranking.scores.tolist(), strict=True))
    # Hits the ranker did not score (past the window, or pruned by a cascade) follow the reranked ones with
    # no score: the engine's (BM25 ~12) beside the ranker's (0-1) would sort them first for anyone who
    # sorts by score. Every hit keeps its engine score and rank under _crossrank.
    final = [*ordered, *(i for i in range(n) if i not in scores), *range(n, len(hits))]
    for rerank_rank, i in enumerate(final, 1):
        hit = hits[i]
        if isinstance(hit, MutableMapping):  # past the window, a hit is whatever the engine sent
            hit["_crossrank"] = {"first_stage_rank": i + 1, "first_stage_score": hit.get(shape.score_key),
                                 "rerank_rank": rerank_rank if i in scores else None}
            hit[shape.score_key] = scores.get(i)
    top = float(ranking.scores[0]) if ordered else None
    note = {"method": f"engine+{ranker.name}", "window": n, "fallback": None}
    return [hits[i] for i in final], top, note


def _prepare(response: Any, query: str, on: Sequence[str], window: int | None, engine: str
             ) -> tuple[dict[str, Any], str, list[str], int | None]:
    query = query_text(query)
    response = _unwrap(response)
    if not isinstance(response, Mapping):
        raise InputError(f"not an {engine} response: a {type(response).__name__}, not the JSON object")
    if window is not None:  # None: every hit
        window = integer(window, "window")
    return copy.deepcopy(dict(response)), query, field_names(on), window


def rerank_search_response(response: Response, query: str, ranker: Ranker, *,
                           on: Sequence[str] = ("title", "text"), window: int | None = WINDOW) -> dict[str, Any]:
    """A copy of an Elasticsearch/OpenSearch ``_search`` response with its first ``window`` hits (100 by
    default, None for all) reranked by ``ranker``.

    Hits beyond the window keep their order after the reranked ones, with ``_score: null`` (the engine's
    scale is not the ranker's). Every hit gets ``_crossrank: {first_stage_rank, first_stage_score,
    rerank_rank}`` (``rerank_rank`` null when not reranked); ``hits.max_score`` follows. The fields are read
    from ``_source``, or from ``fields`` when a hit has no ``_source``. The response-level ``_crossrank`` has
    ``search_after``, the engine's last ``sort`` values, when hits carry them: the cursor for the next page
    (the last hit after the rerank is not the engine's last). An async search's result is reranked inside;
    the client's response object (``es.search(...)``) is read through its ``.body``.
    """
    out, query, fields, window = _prepare(response, query, on, window, "Elasticsearch/OpenSearch _search")
    if "hits" not in out and isinstance(out.get("response"), dict) and "hits" in out["response"]:
        # an async search's result ({"id", "is_running", "response": {...}}): the search inside it
        out["response"] = rerank_search_response(out["response"], query, ranker, on=fields, window=window)
        return out
    if "hits" not in out and isinstance(out.get("responses"), list):
        raise InputError("an _msearch response: rerank each search of it, responses[i], with its own query")
    engine_hits = _hits(out)
    last_sort = engine_hits[-1].get("sort") if engine_hits and isinstance(engine_hits[-1], Mapping) else None
    hits, top, note = _rerank_hits(engine_hits, window, query, ranker, fields, _ELASTIC)
    if note is None:
        return out
    out["hits"]["hits"] = hits
    if top is not None:
        out["hits"]["max_score"] = top
    if last_sort is not None:  # the next page's cursor is the engine's last hit, wherever it now stands
        note["search_after"] = last_sort
    out["_crossrank"] = note
    return out


def rerank_solr_response(response: Response, query: str, ranker: Ranker, *,
                         on: Sequence[str] = ("title", "text"), window: int | None = WINDOW) -> dict[str, Any]:
    """A copy of a Solr ``/select`` JSON response (``wt=json``) with its first ``window`` documents (100 by
    default, None for all) reranked by ``ranker``: ``response.docs`` reordered, each reranked document's ``score``
    replaced (Solr's own kept under ``_crossrank``, as for Elasticsearch), ``response.maxScore`` following.
    The documents are read through ``on`` as stored fields (multi-valued fields are lists: their values
    are joined); ask Solr for them with ``fl``. Grouped responses (``group=true``) are refused.
    """
    out, query, fields, window = _prepare(response, query, on, window, "Solr /select")
    body = out.get("response")
    docs = body.get("docs") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(docs, list):
        hint = " (a grouped response: rerank each group's doclist, or query without group=true)" \
            if "grouped" in out else ""
        raise InputError(f"not a Solr /select response: it has no response.docs list{hint}")
    docs, top, note = _rerank_hits(docs, window, query, ranker, fields, _SOLR)
    if note is None:
        return out
    body["docs"] = docs
    if top is not None and "maxScore" in body:
        body["maxScore"] = top
    out["_crossrank"] = note
    return out


def rerank_response(response: Response, query: str, ranker: Ranker, *,
                    on: Sequence[str] = ("title", "text"), window: int | None = WINDOW) -> dict[str, Any]:
    """An Elasticsearch/OpenSearch or a Solr response reranked, whichever it is (by its shape)."""
    response = _unwrap(response)
    inner = response.get("response") if isinstance(response, Mapping) else None
    solr = isinstance(response, Mapping) and "hits" not in response and (
        (isinstance(inner, Mapping) and "docs" in inner) or "responseHeader" in response or "grouped" in response)
    if solr:
        return rerank_solr_response(response, query, ranker, on=on, window=window)
    return rerank_search_response(response, query, ranker, on=on, window=window)


def _unwrap(response: Any) -> Any:
    """The JSON of a client's response object: the Elasticsearch 8+ client's ``ObjectApiResponse`` (and
    OpenSearch's alike) is no ``Mapping`` but holds the JSON as ``.body``."""
    body = getattr(response, "body", None) if not isinstance(response, Mapping) else None
    return body if isinstance(body, Mapping) else response

"""What every dialect shares: validate once, admit or refuse, await the batcher, time it.

Dialect modules turn their request into a :class:`RerankQuery`, call :func:`rerank`, and turn
the :class:`Ranked` back into their response with :func:`respond`. No dialect validates on its
own and none computes a score: the activation is a name handed to the engine.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse

from crossrank.engine.documents import document_texts, field_names, query_text
from crossrank.errors import CrossrankError, InputError
from crossrank.jsonl import dumps
from crossrank.server.batcher import Batcher, BatcherClosed, ScoreResult
from crossrank.server.errors import ApiError

log = logging.getLogger("crossrank.server")


class JsonResponse(JSONResponse):
    """A JSON response that can echo any text a client sent.

    A lone surrogate (``"\\ud800"`` in the request) cannot be written as UTF-8: such a body goes out
    with ASCII escapes instead — valid JSON, the very string that came in — rather than a 500.
    """

    def render(self, content: Any) -> bytes:
        return dumps(content, separators=(",", ":")).encode("utf-8")


#: Deepest nesting an object document may have. Real documents nest a few levels; a hostile one nests
#: hundreds, and every recursive walk over it (its text, the JSON echoed back) would meet Python's
#: recursion limit as a 500.
MAX_DOCUMENT_DEPTH = 64
#: Most fields a request may name to rank on (Cohere's rank_fields): each is looked up in every document.
MAX_RANK_FIELDS = 64


def _document_problem(value: Any) -> str | None:
    """Why a document cannot be echoed or read safely, or None: NaN or Infinity anywhere (Python's JSON
    reads them, no JSON can carry them back), or nesting deeper than ``MAX_DOCUMENT_DEPTH``. A loop,
    not recursion, so the check itself cannot overflow."""
    stack = [(value, 0)]  # containers only: scalars are checked where they are met
    while stack:
        item, depth = stack.pop()
        if depth >= MAX_DOCUMENT_DEPTH:
            return f"is nested deeper than {MAX_DOCUMENT_DEPTH} levels"
        for v in item.values() if isinstance(item, dict) else item:
            if isinstance(v, float):
                if not math.isfinite(v):
                    return "holds NaN or Infinity, which JSON does not allow"
            elif isinstance(v, (dict, list)):
                stack.append((v, depth + 1))
    return None


@dataclass
class RerankQuery:
    """A rerank request in no dialect: documents are strings or dicts (read through ``fields``)."""

    query: Any
    documents: Any
    model: str | None = None
    fields: list[str] | None = None
    raw_scores: bool = False  # engine logits instead of sigmoid probabilities
    max_chunks: int | None = None  # windows per long document; None: the model's setting
    max_tokens_per_doc: int | None = None  # Cohere v2: read about this many tokens of each document
    top_n: int | None = None
    truncation_side: str = "right"  # TEI's truncation_direction: which end of a long document is kept


@dataclass
class Ranked:
    """Scores in the caller's order, the best-first order (cut to ``top_n``) and the costs."""

    model: str
    scores: np.ndarray
    order: list[int]
    result: ScoreResult


def _texts(q: RerankQuery, max_documents: int, max_chars: int) -> tuple[str, list[str]]:
    if isinstance(q.query, str) and not q.query.strip():
        raise ApiError("empty", "query is empty")
    try:
        query = query_text(q.query)
    except InputError as exc:
        raise ApiError("validation", str(exc)) from None
    fields = None
    if q.fields is not None:
        if not q.fields:
            raise ApiError("validation", "the list of fields to rank on is empty")
        try:
            fields = field_names(q.fields, "rank_fields")  # each once: ["text"] * 100000 is one field
        except InputError as exc:
            raise ApiError("validation", str(exc)) from None
        if len(fields) > MAX_RANK_FIELDS:
            raise ApiError("validation", f"{len(fields)} fields to rank on; at most {MAX_RANK_FIELDS}")
    if not isinstance(q.documents, list):
        raise ApiError("validation", "documents must be a list of strings or objects")
    if not q.documents:
        raise ApiError("empty", "the list of documents is empty")
    if len(q.documents) > max_documents:
        raise ApiError("payload_limit", f"{len(q.documents)} documents; this server takes at most {max_documents}")
    for i, d in enumerate(q.documents):
        if isinstance(d, dict) and (problem := _document_problem(d)):
            raise ApiError("validation", f"document {i} {problem}")
    try:
        texts = document_texts(q.documents, fields)
    except InputError as exc:
        raise ApiError("validation", str(exc)) from None
    if len(query) > max_chars or any(len(t) > max_chars for t in texts):
        raise ApiError("payload_limit", f"a query or document is longer than {max_chars} characters")
    return query, texts


@asynccontextmanager
async def _admitted(request: Request, model: str) -> AsyncIterator[None]:
    """Count the request in flight, or refuse it with 429 when the server, or its model's own
    ``max_concurrent_requests``, is full."""
    state = request.app.state
    limit = state.config.server.max_concurrent_requests
    if state.in_flight >= limit:
        raise ApiError("overloaded", f"more than {limit} requests in flight; retry", retry_after=1)
    own = state.config.models[model].max_concurrent_requests
    by_model = state.in_flight_by_model
    if own is not None and by_model.get(model, 0) >= own:
        raise ApiError("overloaded", f"model {model!r} has {own} requests in flight; retry", retry_after=1)
    state.in_flight += 1
    by_model[model] = by_model.get(model, 0) + 1
    # Watch for the client going away, so an abandoned request stops waiting and frees its slot.
    request.state.gone = asyncio.ensure_future(_disconnect(request))
    try:
        yield
    finally:
        state.in_flight -= 1
        by_model[model] -= 1
        request.state.gone.cancel()


async def _disconnect(request: Request) -> None:
    """Returns when the client has closed the connection (the body was read before scoring starts)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _activation(batcher: Batcher, raw: bool) -> str:
    """Logits when asked; otherwise the probability the engine says this model's scores map to."""
    return "raw" if raw else batcher.encoder.probability_activation


async def _scores(request: Request, batcher: Batcher, query: str, texts: list[str], activation: str,
                  chunks: int, truncation_side: str = "right") -> ScoreResult:
    """Submit one query's documents to the batcher and await them within the request timeout."""
    timeout = request.app.state.config.server.request_timeout_s
    try:
        future = batcher.submit(query, texts, activation=activation, chunks=chunks, truncation_side=truncation_side)
    except BatcherClosed as exc:
        raise ApiError("unhealthy", str(exc)) from None
    scored = asyncio.wrap_future(future)
    gone: asyncio.Future = request.state.gone
    try:
        await asyncio.wait({scored, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not scored.done():  # timed out, client gone, or this task cancelled (a sibling failed)
            future.abandon()  # queued: skipped; running: the engine stops at its next batch
            scored.cancel()
    if not scored.done() or scored.cancelled():
        if gone.done():
            raise ApiError("client_closed", "the client closed the connection before the scores were ready")
        raise ApiError("timeout", f"the request took longer than {timeout:g} s")
    try:
        result = scored.result()
    except InputError as exc:
        raise ApiError("validation", str(exc)) from None
    except CrossrankError as exc:
        raise ApiError("backend", str(exc)) from None
    if not np.isfinite(result.scores).all():  # a broken checkpoint (an inf bias, NaN weights): no number to send
        raise ApiError("backend", "the model produced a non-finite score (NaN or infinity); its weights are broken")
    return result


def _observe(request: Request, model: str, result: ScoreResult) -> None:
    state = request.app.state
    request.state.tokens = getattr(request.state, "tokens", 0) + result.tokens
    state.metrics.queue_latency.labels(model).observe(result.queue_s)


async def rerank(request: Request, q: RerankQuery) -> Ranked:
    """Score ``q`` on its model through the batcher; raises :class:`ApiError` for anything a client sees."""
    limits = request.app.state.config.server
    entry = request.app.state.registry.entry(q.model)
    request.state.model = entry.name
    query, texts = _texts(q, limits.max_documents, limits.max_text_chars)
    request.state.documents = len(texts)
    chunks = q.max_chunks
    if chunks is not None:  # a cap asked for (Cohere's default is 10): the server's own cap bounds it
        if chunks < 1:
            raise ApiError("validation", "max_chunks_per_doc must be >= 1")
        chunks = min(chunks, limits.max_chunks_per_doc)
    async with _admitted(request, entry.name):
        batcher = await request.app.state.registry.batcher(entry.name, limits.request_timeout_s)
        if chunks is None and q.max_tokens_per_doc is not None:
            # As many model windows as cover about that many document tokens, within the server's limit.
            chunks = min(-(-q.max_tokens_per_doc // batcher.encoder.max_length), limits.max_chunks_per_doc)
        if q.truncation_side == "left":  # TEI's Left: one window, the document's end
            chunks = 1
        result = await _scores(request, batcher, query, texts, _activation(batcher, q.raw_scores),
                               chunks or batcher.encoder.max_chunks_per_doc, q.truncation_side)
    _observe(request, entry.name, result)
    order = np.argsort(-result.scores, kind="stable")  # ties keep the caller's order
    if q.top_n is not None:
        order = order[: q.top_n]
    return Ranked(entry.name, result.scores, order.tolist(), result)


async def score_pairs(request: Request, model: str | None, pairs: list[tuple[Any, Any]],
                      raw_scores: bool = False) -> Ranked:
    """Scores of (query, text) pairs with many queries, in the caller's order (one batcher job per query)."""
    limits = request.app.state.config.server
    entry = request.app.state.registry.entry(model)
    request.state.model = entry.name
    if not pairs:
        raise ApiError("empty", "the list of inputs is empty")
    if len(pairs) > limits.max_documents:
        raise ApiError("payload_limit", f"{len(pairs)} inputs; this server takes at most {limits.max_documents}")
    groups: dict[str, list[int]] = {}
    texts: list[str] = []
    for i, (query, text) in enumerate(pairs):
        q, (t,) = _texts(RerankQuery(query=query, documents=[text]), 1, limits.max_text_chars)
        groups.setdefault(q, []).append(i)
        texts.append(t)
    request.state.documents = len(pairs)
    async with _admitted(request, entry.name):
        batcher = await request.app.state.registry.batcher(entry.name, limits.request_timeout_s)
        activation = _activation(batcher, raw_scores)
        results = await asyncio.gather(*(
            _scores(request, batcher, q, [texts[i] for i in rows], activation, batcher.encoder.max_chunks_per_doc)
            for q, rows in groups.items()))
    scores = np.empty(len(pairs), dtype=np.float64)
    merged = ScoreResult(scores=scores)
    for rows, result in zip(groups.values(), results, strict=True):
        scores[rows] = result.scores
        _observe(request, entry.name, result)
        merged.tokens += result.tokens
        merged.cache_hits += result.cache_hits
        merged.queue_s = max(merged.queue_s, result.queue_s)
        merged.tokenize_s = max(merged.tokenize_s, result.tokenize_s)
        merged.inference_s = max(merged.inference_s, result.inference_s)
        merged.batch_pairs = max(merged.batch_pairs, result.batch_pairs)
    request.state.tokens = merged.tokens
    return Ranked(entry.name, scores, list(range(len(pairs))), merged)


def header_safe(value: str) -> str:
    """``value`` as an HTTP header value: header values are Latin-1 bytes, so a model named in another
    script (a directory called 模型) is percent-encoded as UTF-8 rather than failing the finished request."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe=" !\"#$&'()*+,/:;<=>?@[]^`{|}~")


#: What ``respond`` adds to every scored response (TEI's names, in this order), exposed to browsers when CORS
#: is on.
TIMING_HEADERS = ["x-total-time", "x-queue-time", "x-tokenization-time", "x-inference-time", "x-model-id"]


def elapsed_ms(request: Request) -> float:
    """Milliseconds since the request arrived (the clock ``Observe`` starts)."""
    return (time.perf_counter() - request.state.started) * 1000


def respond(request: Request, body: Any, ranked: Ranked) -> JSONResponse:
    """The JSON response with TEI's timing headers (milliseconds)."""
    r = ranked.result
    values = (f"{elapsed_ms(request):.0f}", f"{r.queue_s * 1000:.0f}", f"{r.tokenize_s * 1000:.0f}",
              f"{r.inference_s * 1000:.0f}", header_safe(ranked.model))
    return JsonResponse(body, headers=dict(zip(TIMING_HEADERS, values, strict=True)))

"""Cohere's rerank API (``/v1/rerank``, ``/v2/rerank``), which Jina's ``/v1/rerank`` shares.

Request: ``model``, ``query``, ``documents`` (strings or objects), ``top_n``, ``rank_fields``,
``return_documents``, ``max_chunks_per_doc`` (v1) or ``max_tokens_per_doc`` (v2). Response:
``{"id", "results": [{"index", "relevance_score", "document"?}], "meta"}`` plus Jina's
``model`` and ``usage``. ``relevance_score`` is the sigmoid of the logit, in [0, 1]. An object document
is ranked on ``rank_fields``, by default its ``text`` (Cohere's rule); ``max_chunks_per_doc`` above the
server's ``max_chunks_per_doc`` is capped to it (Cohere's default, 10, is a cap too). Errors carry Jina's
``detail`` beside Cohere's ``message`` (Jina's clients read ``detail``).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from crossrank.server.errors import cohere_body, error_responses
from crossrank.server.service import Ranked, RerankQuery, rerank, respond

router = APIRouter(tags=["cohere / jina"])
error_body = cohere_body


class CohereRerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: StrictStr
    documents: list[StrictStr | dict[str, Any]]
    model: StrictStr | None = None
    top_n: StrictInt | None = Field(None, ge=1)
    rank_fields: list[StrictStr] | None = None
    return_documents: StrictBool | None = False
    max_chunks_per_doc: StrictInt | None = Field(None, ge=1)
    max_tokens_per_doc: StrictInt | None = Field(None, ge=1)


class CohereResult(BaseModel):
    index: int
    relevance_score: float
    document: dict[str, Any] | None = None


class CohereRerankResponse(BaseModel):
    id: str
    results: list[CohereResult]
    meta: dict[str, Any]
    model: str
    usage: dict[str, int]


RESPONSES: dict[int | str, dict] = {200: {"model": CohereRerankResponse}, **error_responses("cohere")}


def _document(doc: Any) -> dict:
    return {"text": doc} if isinstance(doc, str) else doc


def _body(ranked: Ranked, documents: list, return_documents: bool, version: str) -> dict:
    results = []
    for i in ranked.order:
        item: dict[str, Any] = {"index": i, "relevance_score": float(ranked.scores[i])}
        if return_documents:
            item["document"] = _document(documents[i])
        results.append(item)
    tokens = ranked.result.tokens
    return {
        "id": str(uuid.uuid4()),
        "results": results,
        "meta": {"api_version": {"version": version}, "billed_units": {"search_units": 1},
                 "tokens": {"input_tokens": tokens, "output_tokens": 0}},
        "model": ranked.model,
        "usage": {"total_tokens": tokens},
    }


async def _handle(request: Request, body: CohereRerankRequest, version: str) -> JSONResponse:
    # Without rank_fields, Cohere (and Jina) rank an object document by its "text" field alone.
    fields = body.rank_fields if body.rank_fields is not None else ["text"]
    ranked = await rerank(request, RerankQuery(
        query=body.query, documents=body.documents, model=body.model, fields=fields,
        max_chunks=body.max_chunks_per_doc, max_tokens_per_doc=body.max_tokens_per_doc, top_n=body.top_n))
    return respond(request, _body(ranked, body.documents, bool(body.return_documents), version), ranked)


@router.post("/v1/rerank", summary="Cohere v1 / Jina rerank", responses=RESPONSES)
async def rerank_v1(request: Request, body: CohereRerankRequest) -> JSONResponse:
    return await _handle(request, body, "1")


@router.post("/v2/rerank", summary="Cohere v2 rerank", responses=RESPONSES)
async def rerank_v2(request: Request, body: CohereRerankRequest) -> JSONResponse:
    return await _handle(request, body, "2")

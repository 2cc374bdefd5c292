"""Hugging Face Text Embeddings Inference's ``POST /rerank``.

Request: ``{"query", "texts", "raw_scores", "return_text", "truncate", "truncation_direction"}``;
response: ``[{"index", "score", "text"?}]`` best first; errors ``{"error", "error_type"}``.
``score`` is the sigmoid of the logit unless ``raw_scores``. Long texts are always truncated
(keeping the query), whatever ``truncate`` says: TEI refuses them when ``truncate`` is false,
crossrank answers instead. ``truncation_direction: Left`` keeps a long text's end, as in TEI. An
empty query is a 400 ``Empty`` here, as on every route (TEI scores it when the text is not empty):
crossrank's engine refuses a query with no tokens rather than rank documents on nothing.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from crossrank.server.errors import error_responses, tei_body, tei_status
from crossrank.server.service import RerankQuery, rerank, respond

router = APIRouter(tags=["tei"])
error_body = tei_body
error_status = tei_status  # an inference failure is TEI's 424, not 503


class TeiRerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: StrictStr
    texts: list[StrictStr]
    raw_scores: StrictBool = False
    return_text: StrictBool = False
    truncate: StrictBool | None = None
    truncation_direction: Literal["Right", "Left", "right", "left"] = "Right"
    model: StrictStr | None = None  # not in TEI (one model per server); picks a model here


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | None = None


@router.post("/rerank", summary="TEI rerank", responses={200: {"model": list[TeiRank]}, **error_responses("tei")})
async def rerank_tei(request: Request, body: TeiRerankRequest) -> JSONResponse:
    ranked = await rerank(request, RerankQuery(query=body.query, documents=body.texts, model=body.model,
                                               raw_scores=body.raw_scores,
                                               truncation_side=body.truncation_direction.lower()))
    results = []
    for i in ranked.order:
        item: dict = {"index": i, "score": float(ranked.scores[i])}
        if body.return_text:
            item["text"] = body.texts[i]
        results.append(item)
    return respond(request, results, ranked)

"""The plain shape: ``{"query", "chunks"}`` -> ``[[index, score], ...]`` best first.

Optional ``model``, ``top_n`` and ``raw_scores`` (logits instead of sigmoid probabilities).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from crossrank.server.errors import error_responses, openai_body
from crossrank.server.service import RerankQuery, rerank, respond

router = APIRouter(tags=["plain"])
error_body = openai_body


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: StrictStr
    chunks: list[StrictStr]
    model: StrictStr | None = None
    top_n: StrictInt | None = Field(None, ge=0)
    raw_scores: StrictBool = False


@router.post("/score", summary="Plain scores, best first",
             responses={200: {"model": list[list[float]], "description": "[[index, score], ...] best first"},
                        **error_responses("openai")})
async def score(request: Request, body: ScoreRequest) -> JSONResponse:
    ranked = await rerank(request, RerankQuery(query=body.query, documents=body.chunks, model=body.model,
                                               top_n=body.top_n, raw_scores=body.raw_scores))
    return respond(request, [[i, float(ranked.scores[i])] for i in ranked.order], ranked)

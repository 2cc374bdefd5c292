"""Metarank's cross-encoder inference API: ``POST /inference/cross/{name}``.

Request ``{"input": [{"query", "text"}, ...]}``, response ``{"scores": [...]}`` in input order.
The model comes from the path; scores are sigmoid probabilities like every other dialect here.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictStr

from crossrank.server.errors import error_responses, openai_body
from crossrank.server.service import respond, score_pairs

router = APIRouter(tags=["metarank"])
error_body = openai_body


class QueryText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: StrictStr
    text: StrictStr


class CrossInferenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: list[QueryText]


class CrossInferenceResponse(BaseModel):
    scores: list[float]


@router.post("/inference/cross/{name}", summary="Metarank cross-encoder inference",
             responses={200: {"model": CrossInferenceResponse}, **error_responses("openai")})
async def cross(request: Request, name: str, body: CrossInferenceRequest) -> JSONResponse:
    ranked = await score_pairs(request, name, [(p.query, p.text) for p in body.input])
    return respond(request, {"scores": [float(s) for s in ranked.scores]}, ranked)

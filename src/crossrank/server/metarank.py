"""Metarank's cross-encoder inference API: ``POST /inference/cross/{name}``.

Request ``{"input": [{"query", "text"}, ...]}``, response ``{"took": ms, "scores": [...]}`` in input
order. The model comes from the path (a name may hold ``/``, as hub ids do); scores are sigmoid
probabilities like every other dialect here. As Metarank's own server does, the body is read as JSON
whatever its Content-Type (its documented example is a bare ``curl -d``) and unknown fields are ignored.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictStr

from crossrank.server.errors import ApiError, error_responses, openai_body
from crossrank.server.service import elapsed_ms, respond, score_pairs

router = APIRouter(tags=["metarank"])
error_body = openai_body
reads_any_content_type = True  # app.py reads these routes' bodies as JSON whatever they are labelled


class QueryText(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: StrictStr
    text: StrictStr


class CrossInferenceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: list[QueryText]


class CrossInferenceResponse(BaseModel):
    took: int  # milliseconds, as Metarank reports it (also the x-total-time header)
    scores: list[float]


@router.post("/inference/cross/{name:path}", summary="Metarank cross-encoder inference",
             responses={200: {"model": CrossInferenceResponse}, **error_responses("openai")})
async def cross(request: Request, name: str, body: CrossInferenceRequest) -> JSONResponse:
    name = name[:-1] if name.endswith("/") else name  # /inference/cross/msmarco/ is msmarco
    if not name:  # the path names the model: /inference/cross/ names none, and is not the default
        raise ApiError("not_found", "name the model in the path: /inference/cross/{name}")
    ranked = await score_pairs(request, name, [(p.query, p.text) for p in body.input])
    return respond(request, {"took": round(elapsed_ms(request)), "scores": [float(s) for s in ranked.scores]}, ranked)

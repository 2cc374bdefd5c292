"""Optional API keys: ``Authorization: Bearer KEY`` (Cohere's SDK, Jina, OpenAI clients) or ``X-API-Key``.

Keys are compared in constant time (``hmac.compare_digest`` against every configured key, no
early exit) and never logged or echoed.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from crossrank.server.errors import ApiError


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else auth.strip()
    return request.headers.get("x-api-key")


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: passes when no keys are configured or a configured key is presented.

    ``async`` though it never awaits: FastAPI runs a plain ``def`` dependency in its thread pool, a
    thread hand-off on every request (~0.3 ms of a 1.7 ms cached rerank on the 2-core VM).
    """
    keys: list[str] = request.app.state.config.server.api_keys
    if not keys:
        return
    key = presented_key(request)
    if key is None:
        raise ApiError("unauthorized", "missing API key: send 'Authorization: Bearer <key>'")
    given = key.encode("latin-1")  # the header's own bytes (HTTP headers reach us decoded as Latin-1)
    matched = False
    for k in keys:
        matched |= hmac.compare_digest(given, k.encode("utf-8"))
    if not matched:
        raise ApiError("unauthorized", "invalid API key")

"""Optional API keys: ``Authorization: Bearer KEY`` (Cohere's SDK, Jina, OpenAI clients) or ``X-API-Key``.

Checked by :class:`ApiKeyGate` before anything else reads the request: a client without a key gets
its 401 before the server reads, parses or validates a body it was never going to score. Keys are
compared in constant time (``hmac.compare_digest`` against every configured key, no early exit) and
never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from crossrank.server.errors import ApiError

#: What stays open without a key: liveness and readiness probes, Prometheus, the API docs.
PUBLIC_PATHS = frozenset({"/health", "/ready", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc",
                          "/openapi.json"})


def presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    """The key a request carries, as the header's bytes (UTF-8 keys match their UTF-8 bytes)."""
    auth = headers.get(b"authorization")
    if auth:
        scheme, _, value = auth.partition(b" ")
        return value.strip() if scheme.lower() == b"bearer" else auth.strip()
    return headers.get(b"x-api-key")


def check_key(keys: list[str], headers: dict[bytes, bytes]) -> None:
    """Pass when no keys are configured or a configured key is presented; otherwise a 401 ApiError."""
    if not keys:
        return
    given = presented_key(headers)
    if given is None:
        raise ApiError("unauthorized", "missing API key: send 'Authorization: Bearer <key>'")
    matched = False
    for k in keys:
        matched |= hmac.compare_digest(given, k.encode("utf-8"))
    if not matched:
        raise ApiError("unauthorized", "invalid API key")


class ApiKeyGate:
    """Refuse requests to anything but :data:`PUBLIC_PATHS` without a configured key (no keys: open)."""

    def __init__(self, app: ASGIApp, keys: list[str], render: Callable[[str, ApiError], Response]) -> None:
        self.app, self.keys, self.render = app, keys, render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.keys and scope["type"] == "http" and scope["path"] not in PUBLIC_PATHS:
            try:
                check_key(self.keys, dict(scope["headers"]))
            except ApiError as err:
                await self.render(scope["path"], err)(scope, receive, send)
                return
        await self.app(scope, receive, send)

"""HTTP errors: one exception, one kind -> status table, and one body shape per dialect.

Every failure a client can cause or meet is an :class:`ApiError` by the time it leaves a
handler; ``app.py`` renders it in the dialect of the route (TEI's ``{"error", "error_type"}``,
Cohere's ``{"message"}``, OpenAI-style ``{"error": {"message", "type"}}`` elsewhere).
"""

from __future__ import annotations

STATUS = {
    "empty": 400,
    "bad_request": 400,
    "unauthorized": 401,
    "not_found": 404,
    "payload_limit": 413,
    "validation": 422,
    "overloaded": 429,
    "unhealthy": 503,
    "backend": 503,
    "timeout": 504,
}


class ApiError(Exception):
    """An error response: ``kind`` picks the status (see ``STATUS``); ``message`` is safe to show."""

    def __init__(self, kind: str, message: str, *, retry_after: int | None = None) -> None:
        if kind not in STATUS:
            raise ValueError(f"unknown error kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = STATUS[kind]
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


def tei_body(err: ApiError) -> dict:
    return {"error": err.message, "error_type": err.kind}


def cohere_body(err: ApiError) -> dict:
    return {"message": err.message}


def openai_body(err: ApiError) -> dict:
    return {"error": {"message": err.message, "type": err.kind}}

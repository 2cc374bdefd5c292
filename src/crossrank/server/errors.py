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
    "body_timeout": 408,
    "payload_limit": 413,
    "validation": 422,
    "overloaded": 429,
    "client_closed": 499,  # nginx's code: nobody reads it, the logs and metrics do
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


#: TEI's own ``error_type`` values (its router's ``ErrorType``), which TEI clients may decode as an enum
TEI_ERROR_TYPES = {"empty": "Empty", "overloaded": "Overloaded", "unhealthy": "Unhealthy", "backend": "Backend",
                   "timeout": "Backend", "client_closed": "Backend"}


#: TEI's status where it differs from crossrank's: TEI answers an inference failure with 424 Failed Dependency
TEI_STATUS = {"backend": 424}


def tei_status(err: ApiError) -> int:
    return TEI_STATUS.get(err.kind, err.status)


def tei_body(err: ApiError) -> dict:
    return {"error": err.message, "error_type": TEI_ERROR_TYPES.get(err.kind, "Validation")}


def cohere_body(err: ApiError) -> dict:
    return {"message": err.message, "detail": err.message}  # Jina's clients read "detail"


def openai_body(err: ApiError) -> dict:
    return {"error": {"message": err.message, "type": err.kind}}


# --- what the OpenAPI schema says about errors (so clients and schemathesis can rely on it) ---

CLIENT_STATUSES = (400, 401, 404, 408, 413, 422, 429, 500, 503, 504)


def _error_models() -> dict[str, type]:
    from pydantic import BaseModel

    class TeiError(BaseModel):
        error: str
        error_type: str

    class CohereError(BaseModel):
        message: str
        detail: str

    class ErrorDetail(BaseModel):
        message: str
        type: str

    class OpenAIError(BaseModel):
        error: ErrorDetail

    return {"tei": TeiError, "cohere": CohereError, "openai": OpenAIError}


ERROR_MODELS = _error_models()


def error_responses(dialect: str) -> dict[int | str, dict]:
    """The route's error statuses, each with the dialect's body shape, for ``responses=`` on a route."""
    model = ERROR_MODELS[dialect]
    described = {400: "bad input (empty query, undecodable body)", 401: "missing or wrong API key",
                 404: "unknown model", 408: "the body stalled for body_timeout_s",
                 413: "body or documents over the server's limits",
                 422: "a field of the wrong type or out of range", 429: "too many concurrent requests (Retry-After)",
                 424: "inference failed (TEI's status for a backend error)",
                 500: "unexpected error (logged)", 503: "model not loaded or inference failed",
                 504: "request timed out"}
    statuses = (*CLIENT_STATUSES, 424) if dialect == "tei" else CLIENT_STATUSES
    return {status: {"model": model, "description": described[status]} for status in statuses}

"""The FastAPI app: routes from the dialect modules, limits, auth, errors, logs, metrics, lifecycle.

``create_app(config)`` is the whole server; ``crossrank serve`` hands it to uvicorn. Errors of
every kind leave as JSON in the dialect of the route; a request never meets a bare 500 page.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossrank import __version__
from crossrank.server import cohere, metarank, plain, tei
from crossrank.server.auth import ApiKeyGate
from crossrank.server.cache import ScoreCache
from crossrank.server.config import Config
from crossrank.server.errors import ApiError, error_responses, openai_body
from crossrank.server.metrics import CONTENT_TYPE_LATEST, Metrics
from crossrank.server.registry import ModelRegistry
from crossrank.server.service import TIMING_HEADERS, JsonResponse

log = logging.getLogger("crossrank.server")
DIALECTS = (cohere, tei, metarank, plain)
ErrorBody = Callable[[ApiError], dict]


_TIMEOUT_CM = getattr(asyncio, "timeout", None)  # Python 3.11+


class BodyLimit:
    """Refuse bodies over ``max_bytes`` with 413 before any parsing (Content-Length or counted), and
    bodies that stall for ``timeout_s`` with 408: a client that sends part of a body and stops must not
    hold its buffer (up to ``max_bytes``) and its connection forever."""

    def __init__(self, app: ASGIApp, max_bytes: int, render: Callable[[str, ApiError], Response],
                 timeout_s: float) -> None:
        self.app, self.max_bytes, self.render, self.timeout_s = app, max_bytes, render, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_big = ApiError("payload_limit", f"the request body is larger than {self.max_bytes} bytes")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self.render(scope["path"], too_big)(scope, receive, send)
            return
        try:
            body = await self._read(receive)
        except asyncio.TimeoutError:  # (not TimeoutError: that alias is Python 3.11+)
            slow = ApiError("body_timeout", f"the request body stalled for {self.timeout_s:g} s")
            await self.render(scope["path"], slow)(scope, receive, send)
            return
        if body is None:  # the client left: its own status (499) in the log and metrics, not a 500
            gone = ApiError("client_closed", "the client closed the connection before its request body arrived")
            await self.render(scope["path"], gone)(scope, receive, send)
            return
        if len(body) > self.max_bytes:
            await self.render(scope["path"], too_big)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or as much as passes the limit (the caller refuses it), or None on disconnect."""
        chunks: list[bytes] = []
        size = 0
        while True:
            # A deadline per message, not for the whole body: a slow but steady upload is fine, a stalled
            # one is not. asyncio.timeout (3.11+) arms a timer; wait_for would wrap each receive in a task.
            if _TIMEOUT_CM is not None:
                async with _TIMEOUT_CM(self.timeout_s):
                    message = await receive()
            else:  # pragma: no cover - Python 3.10
                message = await asyncio.wait_for(receive(), self.timeout_s)
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > self.max_bytes or not message.get("more_body", False):
                return b"".join(chunks)


class ReadAsJson:
    """Bodies sent to a dialect whose reference server reads every body as JSON (``reads_any_content_type``:
    Metarank's, whose own example is a bare ``curl -d`` labelled form-urlencoded) are labelled JSON before
    FastAPI reads them; every other route keeps FastAPI's rule (JSON only when it says so)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        owner = scoring_route(scope["path"]) if scope["type"] == "http" else None
        if owner is not None and getattr(owner[1], "reads_any_content_type", False):
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


class Observe:
    """One log line and the request metrics per scoring request; starts the clock ``respond`` reads.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs the
    app in a task behind memory streams, ~0.5 ms a request on this 2-core VM — 2% of a 10-title
    int8 request (docs/benchmarks.md, HTTP overhead). It is also the last guard: an exception no
    handler turned into a response becomes the route's JSON 500 here, logged and counted, on a
    connection that stays open (Starlette's own 500 path re-raises to uvicorn, which drops it).
    A scoring request refused before its model was known (401, 422, unknown model) counts as model "-".
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # what ``request.state`` reads and writes
        started = state["started"] = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception as exc:
            if status:  # the response had started: nothing valid can follow it
                raise
            log.exception("unexpected error on %s", scope["path"])
            await internal_error(scope["path"], exc)(scope, receive, send_status)
        finally:
            self._record(scope, state, status or 500, started)

    def _record(self, scope: Scope, state: dict, status: int, started: float) -> None:
        owner = scoring_route(scope["path"])  # also for requests refused before routing (401, 413)
        if owner is None or scope["method"] == "OPTIONS":  # a browser's CORS preflight scores nothing
            return
        route, model = owner[0], state.get("model") or "-"
        latency = time.perf_counter() - started
        self.metrics.requests.labels(route, model, str(status)).inc()
        self.metrics.latency.labels(route, model).observe(latency)
        log.info("request route=%s model=%s documents=%s tokens=%s status=%d latency_ms=%.1f", route, model,
                 state.get("documents", 0), state.get("tokens", 0), status, latency * 1000)


#: (template, prefix for templates with parameters or None, name shown, dialect) of every scoring route,
#: read once: every request asks which route owns it, two or three times (middlewares, errors, metrics).
_SCORING_ROUTES = [(t, t.split("{", 1)[0] if "{" in t else None, re.sub(r":\w+}", "}", t), dialect)
                   for dialect in DIALECTS for t in (getattr(r, "path", "") for r in dialect.router.routes)]


def scoring_route(path: str) -> tuple[str, ModuleType] | None:
    """The scoring route template that serves ``path`` (converters dropped: ``{name}``, not ``{name:path}``)
    and the dialect module that owns it, or None."""
    for template, prefix, shown, dialect in _SCORING_ROUTES:
        if path == template or (prefix is not None and path.startswith(prefix)):
            return shown, dialect
    return None


def render_error(path: str, err: ApiError) -> JSONResponse:
    """The dialect that owns ``path`` decides the error's shape (``error_body``) and, where it differs from
    crossrank's, its status (``error_status``); OpenAI-style for the rest."""
    owner = scoring_route(path)
    body: ErrorBody = owner[1].error_body if owner else openai_body
    status = getattr(owner[1], "error_status", None) if owner else None
    return JsonResponse(body(err), status_code=status(err) if status else err.status, headers=err.headers)


def internal_error(path: str, exc: Exception) -> JSONResponse:
    """A 500 in the route's dialect that names the exception type, never its message (it may hold input)."""
    response = render_error(path, ApiError("backend", f"internal error: {type(exc).__name__}"))
    response.status_code = 500
    return response


def create_app(config: Config) -> FastAPI:
    """The server for ``config``: models load at startup (``server.preload``) or on first use."""
    metrics = Metrics()
    cache = ScoreCache(config.server.cache_size) if config.server.cache_size else None
    registry = ModelRegistry(config, metrics, cache)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if config.server.preload:
            threading.Thread(target=registry.load_all, name="crossrank-load", daemon=True).start()
        yield
        # uvicorn has stopped accepting and let in-flight requests finish; drain what is queued.
        await asyncio.to_thread(registry.close, config.server.request_timeout_s)

    app = FastAPI(title="crossrank", version=__version__, lifespan=lifespan,
                  description="Cross-encoder reranking: Cohere, Jina, TEI, Metarank and plain APIs.")
    app.state.config = config
    app.state.metrics = metrics
    app.state.registry = registry
    app.state.in_flight = 0
    app.state.in_flight_by_model = {}
    metrics.in_flight.set_function(lambda: app.state.in_flight)

    for dialect in DIALECTS:
        app.include_router(dialect.router)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return render_error(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors()[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            problems.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        sent = request.headers.get("content-type", "")
        unread = any(e.get("type") in ("model_attributes_type", "dict_type") and tuple(e.get("loc", ())) == ("body",)
                     for e in exc.errors())
        if unread and "json" not in sent.lower():  # e.g. `curl -d` sends a form type: the body is not read as JSON
            problems.insert(0, f"the body must be JSON sent as Content-Type: application/json (got {sent or 'none'!r})")
        return render_error(request.url.path, ApiError("validation", "invalid request: " + "; ".join(problems)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers a body it cannot decode (invalid UTF-8) with a 400: a validation error too.
        kind = {400: "validation", 404: "not_found", 401: "unauthorized", 413: "payload_limit"}.get(
            exc.status_code, "bad_request")
        err = ApiError(kind, str(exc.detail))
        response = render_error(request.url.path, err)
        response.status_code = exc.status_code  # e.g. 405 keeps its status, in our JSON shape
        return response

    app.add_middleware(ReadAsJson)
    app.add_middleware(BodyLimit, max_bytes=config.server.max_body_bytes, render=render_error,
                       timeout_s=config.server.body_timeout_s)
    app.add_middleware(ApiKeyGate, keys=config.server.api_keys, render=render_error)  # before any body is read
    if config.server.cors_allow_origins:  # outside the key gate: a browser's preflight carries no key
        app.add_middleware(CORSMiddleware, allow_origins=config.server.cors_allow_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"], expose_headers=TIMING_HEADERS)
    app.add_middleware(Observe, metrics=metrics)  # outermost: sees every answer

    @app.get("/health", tags=["ops"], summary="The process is up")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], summary="Every model is loaded",
             responses={503: {"description": "a model is loading or failed to load (which, and why)"}})
    async def ready() -> JSONResponse:
        models = {e.name: e.state for e in registry.entries.values()}
        if registry.ready:
            return JSONResponse({"status": "ready", "models": models})
        failed = [n for n, s in models.items() if s == "failed"]
        message = f"models failed to load: {failed}" if failed else "models are loading"
        return JSONResponse({**openai_body(ApiError("unhealthy", message)), "models": models}, status_code=503)

    @app.get("/info", tags=["ops"], summary="Models, backends, limits, version",
             responses={401: error_responses("openai")[401]})
    async def info() -> dict[str, Any]:
        s = config.server
        return {
            "version": __version__,
            "pid": os.getpid(),  # which process answered: replicas behind a balancer differ
            "default_model": config.names().get(config.default_model, config.default_model),  # its own name
            "models": registry.describe(),
            "limits": {"max_documents": s.max_documents, "max_body_bytes": s.max_body_bytes,
                       "max_text_chars": s.max_text_chars, "max_concurrent_requests": s.max_concurrent_requests,
                       "max_chunks_per_doc": s.max_chunks_per_doc, "request_timeout_s": s.request_timeout_s},
            "batching": {"max_batch_pairs": s.max_batch_pairs, "batch_wait_ms": s.batch_wait_ms},
            "cache": {"size": s.cache_size, "entries": len(cache) if cache else 0,
                      "hits": cache.hits if cache else 0, "misses": cache.misses if cache else 0},
            "auth": bool(s.api_keys),
        }

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app

"""Remote rankers over HTTP, drop-ins for the local engine: Cohere, TEI and plain dialects.

"plain" is crossrank's own ``POST /score`` (``{"query", "chunks"}`` -> ``[[index, score], ...]``), so a
pipeline can rerank through another crossrank server. Every dialect asks for the service's probability
(sigmoid, or the calibrated one where the model has a calibration), never logits: ``min_score`` means the
same whichever dialect a ranker speaks.

Each dialect only translates: a request body from (query, texts) and a list of (index, score) from
the answer. Everything else (timeout, retries with backoff, the API key, checking the answer)
is shared. Any failure becomes :class:`~crossrank.retrieval.rankers.RankerUnavailable`, which the
pipeline turns into "first-stage order, and say so", never into a failed search.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import numpy as np

from crossrank.checks import integer, number
from crossrank.engine.documents import clean_text, query_text
from crossrank.errors import InputError, MissingDependencyError
from crossrank.retrieval.rankers import RankerUnavailable, Ranking, ranking_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dialect:
    """How one API spells a rerank call."""

    name: str
    path: str
    #: Documents one request may carry: TEI refuses more than its ``--max-client-batch-size`` (32 by
    #: default) with a 413, Cohere documents 1,000; a longer list goes as several requests at once.
    max_documents: int | None = None

    def request(self, query: str, texts: Sequence[str], model: str | None) -> dict[str, Any]:
        if self.name == "cohere":
            body: dict[str, Any] = {"query": query, "documents": list(texts), "top_n": len(texts)}
            if model:
                body["model"] = model
            return body
        if self.name == "tei":  # TEI refuses a text past its model's length unless asked to truncate it
            return {"query": query, "texts": list(texts), "truncate": True}
        body = {"query": query, "chunks": list(texts)}
        if model:
            body["model"] = model
        return body

    def results(self, answer: Any) -> list[Any]:
        if self.name == "cohere":
            items = answer.get("results") if isinstance(answer, dict) else None
        elif self.name == "tei":
            items = answer
        else:  # [[index, score], ...]
            items = answer
            if isinstance(items, list):
                items = [{"index": it[0], "score": it[1]} if isinstance(it, list) and len(it) == 2 else it
                         for it in items]
        if not isinstance(items, list):
            raise RankerUnavailable(f"{self.name} ranker answered {type(answer).__name__} without a result list")
        return items

    @property
    def score_key(self) -> str:
        return "relevance_score" if self.name == "cohere" else "score"


DIALECTS = {d.name: d for d in (Dialect("cohere", "/v1/rerank", 1000), Dialect("tei", "/rerank", 32),
                                 Dialect("plain", "/score", 1000))}  # plain: crossrank serve's default limit


FLOAT32_MAX = float(np.finfo(np.float32).max)
CONNECTIONS = 100  # httpx's default pool size, and the attempts one ranker runs at once


class _Redactor(logging.Filter):
    """Masks the query values of rankers' URLs in httpx's own log lines (``HTTP Request: POST <url>``)."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._installed = False

    def add(self, secrets: list[str]) -> None:
        if secrets:
            self._secrets.update(secrets)
            if not self._installed:
                logging.getLogger("httpx").addFilter(self)
                self._installed = True

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for secret in list(self._secrets):
            redacted = redacted.replace(secret, "***")
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_HTTPX_REDACTOR = _Redactor()


def shown_url(url: str) -> str:
    """A URL as a message may show it: no user or password, query values masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unreadable URL)"
    query = "&".join(f"{k}=***" if v else k for k, _, v in (q.partition("=") for q in parts.query.split("&")))
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=query if parts.query else ""))


def _retry_after(value: str | None) -> float:
    """Seconds a ``Retry-After`` header asks for (its delay-seconds form; an HTTP date counts as none)."""
    try:
        seconds = float(value) if value is not None else 0.0
    except ValueError:
        return 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


def _float32(score: Any) -> bool:
    """Whether a JSON value is a number that float32 holds as a finite value."""
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        return False
    try:
        return math.isfinite(score) and abs(float(score)) <= FLOAT32_MAX
    except OverflowError:  # an int no float holds
        return False


class RemoteRanker:
    """A reranking service as a ranker.

    ``url`` is the service's base URL (the dialect's path is added: ``/v1/rerank``, ``/rerank``,
    ``/score``) or a full endpoint URL with a path. ``timeout`` bounds each attempt as a whole, not
    each read: a server that dribbles its answer byte by byte is cut off too. ``retries`` more
    attempts follow a timeout, a connection error, a 429 or a 5xx, with exponential backoff; a 4xx
    other than 429 is not retried; a 429's ``Retry-After`` is waited for, up to ``timeout``.
    ``max_documents`` caps the documents of one request (default: the dialect's, 32 for TEI, 1,000 for
    Cohere): a longer list goes as several requests at once. Credentials in the URL and the key never
    appear in messages, logs or ``repr``.
    """

    def __init__(self, url: str, *, dialect: str = "cohere", model: str | None = None, api_key: str | None = None,
                 timeout: float = 2.0, retries: int = 1, backoff_s: float = 0.05, name: str = "rerank",
                 max_documents: int | None = None) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError("remote rankers", "retrieval", "httpx") from exc
        if dialect not in DIALECTS:
            raise InputError(f"unknown ranker dialect {dialect!r}; expected one of {sorted(DIALECTS)}")
        timeout = number(timeout, "timeout", above=0, maximum=86_400)
        retries = integer(retries, "retries")
        backoff_s = number(backoff_s, "backoff_s", minimum=0, maximum=3_600)
        self.dialect = DIALECTS[dialect]
        try:
            parts = urlsplit(url) if isinstance(url, str) else None
        except ValueError:  # e.g. an unclosed IPv6 bracket
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            what = repr(shown_url(url)) if isinstance(url, str) else f"a {type(url).__name__}"
            raise InputError(f"ranker URL {what} is not an http(s) URL")
        if api_key is not None and (not isinstance(api_key, str) or not api_key.isascii()):
            raise InputError("the ranker's api_key must be an ASCII string (it travels in an HTTP header)")
        if api_key is not None:
            api_key = api_key.strip()  # read from a file, it ends with a newline
            if any(ord(c) < 32 or ord(c) == 127 for c in api_key):
                raise InputError("the ranker's api_key holds a control character; it cannot travel in a header")
        if max_documents is not None:
            max_documents = integer(max_documents, "max_documents", minimum=1)
        self.max_documents = max_documents or self.dialect.max_documents
        if parts.path in ("", "/"):  # a base URL: the dialect's path goes before any query string
            parts = parts._replace(path=self.dialect.path)
        # user:password travels as basic auth, not in the URL httpx logs; query values (a key in the URL)
        # are masked in crossrank's messages and in httpx's own log lines
        auth = (unquote(parts.username or ""), unquote(parts.password or "")) if parts.username else None
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        self.endpoint = urlunsplit(parts)
        raw = [q.partition("=")[2] for q in parts.query.split("&")] if parts.query else []
        query_values = [v for v in {*raw, *(v for _, v in parse_qsl(parts.query))} if len(v) >= 4]
        self._secrets = [x for x in (api_key, *(auth or ()), *query_values) if x]
        _HTTPX_REDACTOR.add(query_values)
        self.shown = shown_url(self.endpoint)  # the endpoint as messages show it
        self.model, self.timeout, self.retries, self.backoff_s = model, timeout, retries, backoff_s
        self.name = name
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, auth=auth,
                                    limits=httpx.Limits(max_connections=CONNECTIONS))
        # Attempts run here so the caller waits at most ``timeout`` for one, whatever the server does
        # between reads (httpx's timeouts are per read: a reply trickling in under each took up to twice it).
        # As many workers as connections: the pool must not be what limits concurrent searches.
        self._attempts = ThreadPoolExecutor(max_workers=CONNECTIONS, thread_name_prefix="crossrank-remote")
        self._closed = False

    def __repr__(self) -> str:
        return f"RemoteRanker({self.shown!r}, dialect={self.dialect.name!r})"

    def _redact(self, text: str) -> str:
        """``text`` (an httpx or server message) with the endpoint as shown and no credential in it."""
        text = text.replace(self.endpoint, self.shown)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        """Release the connection pool; later calls fail as an unavailable ranker (the pipeline falls back)."""
        self._closed = True
        self._attempts.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def rank(self, query: str, texts: Sequence[str]) -> Ranking:
        # Read as the local engine reads them: a lone surrogate replaced, bytes or None refused.
        query = query_text(query)
        texts = [clean_text(t, f"text {i}") for i, t in enumerate(texts)]
        if not texts:
            return Ranking(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), {self.name: np.zeros(0)})
        size = self.max_documents or len(texts)
        if len(texts) <= size:
            scores = self._scores(query, texts)
        else:  # several requests at once; scores are probabilities, comparable across requests
            parts = [texts[i:i + size] for i in range(0, len(texts), size)]
            with ThreadPoolExecutor(max_workers=min(len(parts), 8), thread_name_prefix="crossrank-remote-part") as pool:
                scores = np.concatenate(list(pool.map(lambda part: self._scores(query, part), parts)))
        return ranking_of(self.name, scores)

    def _scores(self, query: str, texts: list[str], attempts: int | None = None) -> np.ndarray:
        return self._parse(self._post(self.dialect.request(query, texts, self.model), attempts), len(texts))

    def available(self) -> bool:
        """Whether the service answers a one-document rerank correctly within the timeout. Never raises."""
        try:
            self._scores("ping", ["ping"], attempts=1)
        except RankerUnavailable as exc:
            log.info("ranker %s is unavailable: %s", self.shown, exc)
            return False
        return True

    def _post(self, body: dict[str, Any], attempts: int | None = None) -> Any:
        import httpx

        if self._closed:
            raise RankerUnavailable(f"{self.shown}: this ranker was closed")
        attempts = attempts or self.retries + 1
        last, wait = "", 0.0
        for attempt in range(attempts):
            if attempt:
                time.sleep(wait or self.backoff_s * 2 ** (attempt - 1))
            wait = 0.0
            try:
                status, content, headers = self._post_once(body)
            except httpx.TimeoutException:
                last = f"timed out after {self.timeout:g}s"
            except RankerUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever an attempt raised, the search falls back
                last = self._redact(f"{type(exc).__name__}: {exc}")
            else:
                if status == 200:
                    try:
                        return json.loads(content)
                    except (ValueError, RecursionError) as exc:  # RecursionError: nested past Python's stack
                        raise RankerUnavailable(f"{self.shown} answered invalid JSON") from exc
                last = self._redact(f"HTTP {status}: {content[:200].decode('utf-8', 'replace')}")
                if 300 <= status < 400:
                    where = headers.get("location")
                    last = f"HTTP {status}, redirected" + (f" to {shown_url(where)}: use that URL" if where else "")
                if status == 429:
                    wait = min(_retry_after(headers.get("retry-after")), self.timeout)
                elif status < 500:
                    break
            log.warning("ranker %s: attempt %d/%d failed: %s", self.shown, attempt + 1, attempts, last)
        raise RankerUnavailable(f"{self.shown}: {last}")

    def _post_once(self, body: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
        """One POST whose whole answer must arrive within ``timeout`` (httpx's own timeout is per read)."""
        import httpx

        started: list[float] = []

        def run() -> tuple[int, bytes, dict[str, str]]:
            started.append(time.monotonic())
            return self._exchange(body, started[0] + self.timeout)

        try:
            attempt = self._attempts.submit(run)
        except RuntimeError:  # closed by another thread meanwhile
            raise RankerUnavailable(f"{self.shown}: this ranker was closed") from None
        try:
            # Time queued behind other attempts (many searches, a window sent as several requests) is not
            # this attempt's: each of those ends within its own timeout, so the queue moves.
            while not started:
                try:
                    return attempt.result(timeout=0.05)
                except FutureTimeout:
                    continue
            return attempt.result(timeout=max(0.0, started[0] + self.timeout - time.monotonic()))
        except FutureTimeout:
            # Not sent yet: never sent. Sent: the worker stops at its next read (deadline passed) or read timeout.
            attempt.cancel()
            raise httpx.ReadTimeout(f"no complete answer within {self.timeout:g}s") from None
        except CancelledError:  # close() dropped it before it started
            raise RankerUnavailable(f"{self.shown}: this ranker was closed") from None
        except RuntimeError as exc:  # httpx: the client was closed under the attempt
            if not self._closed:
                raise
            raise RankerUnavailable(f"{self.shown}: this ranker was closed") from exc

    def _exchange(self, body: dict[str, Any], deadline: float) -> tuple[int, bytes, dict[str, str]]:
        import httpx

        with self._client.stream("POST", self.endpoint, json=body) as response:
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(f"no complete answer within {self.timeout:g}s")
            headers = {k: response.headers[k] for k in ("retry-after", "location") if k in response.headers}
            return response.status_code, b"".join(chunks), headers

    def _parse(self, answer: Any, n: int) -> np.ndarray:
        """The scores in the documents' order, the answer checked strictly: every index an int in range and
        seen once, every score a finite number."""
        items = self.dialect.results(answer)
        key = self.dialect.score_key
        scores = np.full(n, np.nan, dtype=np.float64)
        for item in items:
            index = item.get("index") if isinstance(item, dict) else None
            score = item.get(key) if isinstance(item, dict) else None
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n:
                raise RankerUnavailable(f"{self.shown} answered a bad index {index!r} for {n} documents")
            if not _float32(score):  # also an int past float range, or a float past float32's
                raise RankerUnavailable(f"{self.shown} answered a bad {key} {str(score)[:40]}")
            if not np.isnan(scores[index]):
                raise RankerUnavailable(f"{self.shown} answered index {index} twice")
            scores[index] = score
        ranked = np.count_nonzero(~np.isnan(scores))
        if ranked < n:  # the rest would keep first-stage scores, on another scale: not a rerank
            raise RankerUnavailable(f"{self.shown} answered {ranked} of {n} documents")
        return scores

"""Models by name, from the configuration only: a request names a model, never a path on disk.

Each model is loaded once (eagerly at startup in a background thread, or on first use) into a
``CrossEncoder`` plus its :class:`~crossrank.server.batcher.Batcher`. Loading runs off the event
loop, so /health answers while models load and /ready says when they all have.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from crossrank.errors import CrossrankError
from crossrank.server.batcher import Batcher
from crossrank.server.cache import ScoreCache
from crossrank.server.config import Config, ModelConfig
from crossrank.server.errors import ApiError
from crossrank.server.metrics import Metrics

log = logging.getLogger("crossrank.server")


@dataclass
class ModelEntry:
    name: str
    config: ModelConfig
    state: str = "pending"  # pending | loading | ready | failed
    error: str | None = None
    failed_at: float = 0.0
    batcher: Batcher | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    loader: Future | None = None  # the one load every waiting request shares (from any event loop)


class ModelRegistry:
    """The configured models and their load state.

    A model that failed to load is tried again on a request only after ``retry_after_s``: a model
    directory that appears later, or a transient failure, heals without a restart, but a burst of
    requests for a broken model does not queue one load attempt each.
    """

    retry_after_s = 30.0

    def __init__(self, config: Config, metrics: Metrics, cache: ScoreCache | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.cache = cache
        self.entries = {name: ModelEntry(name, m) for name, m in config.models.items()}
        self.names = config.names()  # aliases included
        self._closed = False
        # Loads on request run here, one thread per model at most, never in the event loop's default
        # executor (requests waiting there for a slow load would starve every other to_thread user).
        self._loads = ThreadPoolExecutor(max_workers=max(1, len(self.entries)), thread_name_prefix="crossrank-load")

    @property
    def ready(self) -> bool:
        return all(e.state == "ready" for e in self.entries.values())

    def entry(self, name: str | None) -> ModelEntry:
        """The entry for ``name`` or an alias of it (the default model when None); unknown names are a 404."""
        name = name or self.config.default_model
        own = self.names.get(name) if isinstance(name, str) else None
        if own is None:
            raise ApiError("not_found", f"model {name!r} is not served here; models: {sorted(self.names)}")
        return self.entries[own]

    async def batcher(self, name: str | None, timeout: float | None = None) -> Batcher:
        """The batcher of a model, loading it off the event loop if it is not loaded yet; a load that
        does not finish within ``timeout`` is a 503 for this request (the load goes on for the next)."""
        entry = self.entry(name)
        if entry.batcher is None:
            if entry.loader is None or entry.loader.done():
                entry.loader = self._loads.submit(self.load, entry)
            try:  # each request wraps the shared future on its own loop; shield: a timeout leaves the load be
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(entry.loader)), timeout)
            except asyncio.TimeoutError:  # (TimeoutError itself only from Python 3.11)
                raise ApiError("unhealthy", f"model {entry.name!r} is still loading; retry shortly",
                               retry_after=1) from None
        if entry.batcher is None:
            wait = max(1, round(self.retry_after_s - (time.monotonic() - entry.failed_at)))
            raise ApiError("unhealthy", f"model {entry.name!r} failed to load: {entry.error} "
                                        f"(next attempt on a request in {wait} s)")
        return entry.batcher

    def load(self, entry: ModelEntry) -> None:
        """Load one model (idempotent, thread-safe); a failure is recorded, not raised."""
        with entry.lock:
            if entry.batcher is not None or self._closed:
                return
            if entry.state == "failed" and time.monotonic() - entry.failed_at < self.retry_after_s:
                return  # failed moments ago, perhaps while this request waited for the lock
            entry.state, entry.error = "loading", None
            m = entry.config
            try:
                from crossrank.engine import CrossEncoder

                encoder = CrossEncoder(m.model, backend=m.backend, quantize=m.quantize, max_length=m.max_length,
                                       threads=m.threads, max_batch_tokens=m.max_batch_tokens,
                                       max_chunks_per_doc=m.max_chunks_per_doc)
                if encoder.num_labels != 1:
                    raise CrossrankError(f"it has {encoder.num_labels} labels; the server serves one-score rerankers")
                encoder.score([("warm up", "the first call builds the tokenizer's truncation state")])
                if self._closed:  # shut down while loading: nobody will close a batcher made now
                    entry.state = "pending"
                    return
            except Exception as exc:  # noqa: BLE001 - a runtime's own error must not leave the entry "loading"
                entry.state, entry.error = "failed", str(exc) if isinstance(exc, CrossrankError) else repr(exc)
                entry.failed_at = time.monotonic()
                log.error("model=%s state=failed error=%s", entry.name, entry.error)
                return
            s = self.config.server
            entry.batcher = Batcher(entry.name, encoder, max_batch_pairs=s.max_batch_pairs,
                                    max_wait_s=s.batch_wait_ms / 1000, cache=self.cache,
                                    on_batch=self.metrics.batch_hook(entry.name),
                                    on_cache=self.metrics.cache_hook(entry.name))
            self.metrics.watch_queue(entry.name, lambda: entry.batcher.depth if entry.batcher else 0)
            entry.state = "ready"
            if self._closed:  # close() ran meanwhile and skipped this entry (its lock was held): close it here
                entry.batcher.close()
                entry.batcher, entry.state = None, "pending"
                return
            log.info("model=%s state=ready source=%s backend=%s precision=%s max_length=%d", entry.name,
                     encoder.model_name, encoder.backend.name, encoder.backend.precision, encoder.max_length)

    def load_all(self) -> None:
        for entry in self.entries.values():
            self.load(entry)

    def describe(self) -> list[dict]:
        out = []
        for e in self.entries.values():
            item: dict = {"name": e.name, "aliases": e.config.aliases, "model": e.config.model, "state": e.state}
            if e.batcher is not None:
                enc = e.batcher.encoder
                item.update(source=enc.model_name, backend=enc.backend.name, precision=enc.backend.precision,
                            device=enc.backend.device, max_length=enc.max_length,
                            max_chunks_per_doc=enc.max_chunks_per_doc, threads=enc.threads)
            if e.error:
                item["error"] = e.error
            out.append(item)
        return out

    def close(self, timeout: float | None = None) -> None:
        """Stop loading, drain every batcher (queued requests are answered), stop the workers."""
        self._closed = True
        self._loads.shutdown(wait=False, cancel_futures=True)
        for e in self.entries.values():
            if not e.lock.acquire(blocking=False):
                continue  # loading: the load sees _closed and makes no batcher; do not wait for it
            try:
                if e.batcher is not None:
                    e.batcher.close(timeout)
            finally:
                e.lock.release()

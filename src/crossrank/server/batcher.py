"""Dynamic batching: one worker thread per model owns a queue; requests await futures.

Concurrent requests are coalesced into one engine call (the engine then packs the merged pairs
into token-budget batches, which is where coalescing pays: fewer, fuller batches). The worker
takes every job already queued; when the last call merged several jobs (evidence of concurrent
load) it also waits up to ``max_wait_s`` for more, so a lone client never pays that wait.
A merged call holds at most ``max_batch_pairs`` pairs, except that one big request always goes
whole (the engine splits it into batches itself).

The event loop never runs inference: ``submit`` only enqueues and returns a
``concurrent.futures.Future``. ``close`` stops new work and drains what was queued.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from crossrank.engine import CrossEncoder, ScoreStats
from crossrank.errors import BackendError, ScoringStopped
from crossrank.server.cache import CacheKey, ScoreCache, cache_key

log = logging.getLogger("crossrank.server")


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and takes no new jobs."""


@dataclass
class ScoreResult:
    """One request's scores and what they cost; times are those of the engine call it rode in."""

    scores: np.ndarray
    tokens: int = 0
    queue_s: float = 0.0
    tokenize_s: float = 0.0
    inference_s: float = 0.0
    batch_pairs: int = 0
    cache_hits: int = 0


_EXITS = (KeyboardInterrupt, SystemExit)  # what ends the worker thread rather than one request


def _fail(jobs: list[_Job], exc: BaseException) -> None:
    """Fail the jobs not answered yet; a panic (a BaseException) becomes the backend error every layer above
    handles."""
    error = exc if isinstance(exc, Exception) else BackendError(f"the engine failed: {type(exc).__name__}: {exc}")
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)


class JobFuture(Future):
    """A job's future; ``abandon()`` says nobody waits for it any more.

    A queued job is then cancelled (the worker skips it). A running one cannot be: the engine polls
    ``abandoned`` between its batches and stops, so a request that timed out or whose client left does
    not keep the model busy for the rest of its documents.
    """

    def __init__(self) -> None:
        super().__init__()
        self.abandoned = False
        self.counted = True  # in the queue-depth gauge until the worker takes its job or it is cancelled

    def abandon(self) -> None:
        self.abandoned = True
        self.cancel()


@dataclass
class _Job:
    query: str
    texts: list[str]
    activation: str
    chunks: int
    side: str = "right"  # which end of a long document truncation keeps ("left": its end)
    future: JobFuture = field(default_factory=JobFuture)
    enqueued: float = field(default_factory=time.perf_counter)


_STOP = object()
BatchHook = Callable[[ScoreStats], None]


class Batcher:
    """The queue and worker thread of one model."""

    def __init__(self, name: str, encoder: CrossEncoder, *, max_batch_pairs: int = 256, max_wait_s: float = 0.002,
                 cache: ScoreCache | None = None, on_batch: BatchHook | None = None,
                 on_cache: Callable[[int, int], None] | None = None) -> None:
        self.name = name
        self.encoder = encoder
        self.max_batch_pairs = max_batch_pairs
        self.max_wait_s = max_wait_s
        self.cache = cache
        self.on_batch = on_batch
        self.on_cache = on_cache  # (hits, misses) of each cache lookup
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._depth = 0  # jobs queued, not yet taken by the worker
        self._lock = threading.Lock()
        self._closed = False
        self._last_merged = 1
        self._held: _Job | None = None  # taken from the queue, but too big to join the last batch
        self._thread = threading.Thread(target=self._run, name=f"crossrank-batcher-{name}", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Jobs waiting for the worker (the queue-depth gauge): one per request, one per distinct query of
        a Metarank request; a job cancelled while queued (its request timed out or left) leaves it at once."""
        held = self._held
        return self._depth + (held is not None and not held.future.cancelled())

    def submit(self, query: str, texts: list[str], *, activation: str, chunks: int,
               truncation_side: str = "right") -> JobFuture:
        """Enqueue one request; the future resolves to a :class:`ScoreResult` or the engine's exception."""
        job = _Job(query, texts, activation, chunks, truncation_side)
        with self._lock:
            if self._closed:
                raise BatcherClosed(f"model {self.name!r} is shutting down")
            self._depth += 1
            self._queue.put(job)
        job.future.add_done_callback(self._cancelled)  # a bound method: no job -> future -> job cycle
        return job.future

    def _cancelled(self, future: Future) -> None:
        if future.cancelled():
            self._uncount(future)  # type: ignore[arg-type]

    def _uncount(self, future: JobFuture) -> None:
        with self._lock:
            if future.counted:
                future.counted = False
                self._depth -= 1

    def close(self, timeout: float | None = None) -> None:
        """Take no new jobs, finish every queued one, stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- worker ------------------------------------------------------------------------------

    def _take(self, block: bool, timeout: float | None = None) -> object:
        item = self._queue.get(block, timeout)
        if isinstance(item, _Job):
            self._uncount(item.future)
        return item

    def _run(self) -> None:
        live: list[_Job] = []
        try:
            while True:
                first, self._held = (self._held or self._take(True)), None
                if first is _STOP:
                    return
                jobs, stopping = self._collect(first)  # type: ignore[arg-type]
                live = [j for j in jobs if j.future.set_running_or_notify_cancel()]  # timed-out callers cancel
                groups: dict[tuple[str, int, str], list[_Job]] = {}
                for job in live:
                    groups.setdefault((job.activation, job.chunks, job.side), []).append(job)
                for group in groups.values():
                    self._score_group(group)
                if stopping:
                    return
        except BaseException as exc:  # the thread ends (SystemExit...): nobody may be left waiting on it
            with self._lock:
                self._closed = True  # later submits are refused, not queued for no one
            pending = [*live, *([self._held] if isinstance(self._held, _Job) else [])]
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Job):
                    pending.append(item)
            _fail(pending, exc)
            raise

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` plus what is queued (or arrives within the wait), up to ``max_batch_pairs``: a request
        that would overflow the batch opens the next one (a request alone may exceed it; the engine
        splits it by tokens)."""
        jobs, pairs = [first], len(first.texts)
        deadline = time.perf_counter() + (self.max_wait_s if self._last_merged > 1 else 0.0)
        stopping = False
        while pairs < self.max_batch_pairs:
            try:
                remaining = deadline - time.perf_counter()
                nxt = self._take(True, remaining) if remaining > 0 else self._take(False)
            except queue.Empty:
                break
            if nxt is _STOP:
                stopping = True
                break
            if pairs + len(nxt.texts) > self.max_batch_pairs:  # type: ignore[attr-defined]
                self._held = nxt  # type: ignore[assignment]  # it opens the next batch instead
                break
            jobs.append(nxt)  # type: ignore[arg-type]
            pairs += len(nxt.texts)  # type: ignore[attr-defined]
        self._last_merged = len(jobs)
        return jobs, stopping

    def _score_group(self, jobs: list[_Job]) -> None:
        try:
            self._score_merged(jobs)
        except ScoringStopped as exc:  # every caller of the call had gone: nothing to retry or answer
            _fail(jobs, exc)
        except BaseException as exc:  # noqa: BLE001 - isolate the failing request rather than fail them all
            # BaseException: a native library's panic must fail its requests, not end this model's only thread
            if isinstance(exc, _EXITS):
                raise  # the thread ends: _run fails every job still waiting
            if len(jobs) == 1:
                _fail(jobs, exc)
                return
            for job in jobs:
                if job.future.done():
                    continue
                try:
                    self._score_merged([job])
                except BaseException as one:  # noqa: BLE001 - as above
                    if isinstance(one, _EXITS):
                        raise
                    _fail([job], one)

    def _score_merged(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        activation, chunks, side = jobs[0].activation, jobs[0].chunks, jobs[0].side
        keys: list[list[CacheKey]] = (
            [[cache_key(self.name, activation, chunks, j.query, t, side) for t in j.texts] for j in jobs]
            if self.cache is not None else [[] for _ in jobs])
        cached = [self.cache.get_many(k) if self.cache is not None else [None] * len(j.texts)
                  for j, k in zip(jobs, keys, strict=True)]
        missing = ([[i for i, v in enumerate(c) if v is None] for c in cached] if self.cache is not None
                   else [list(range(len(j.texts))) for j in jobs])
        if self.cache is not None and self.cache.size and self.on_cache is not None:
            missed = sum(map(len, missing))
            self.on_cache(sum(len(j.texts) for j in jobs) - missed, missed)
        pairs = [(j.query, j.texts[i]) for j, miss in zip(jobs, missing, strict=True) for i in miss]
        if pairs:
            scores, stats = self.encoder.score_with_stats(
                pairs, activation=activation, max_chunks_per_doc=chunks, truncation_side=side,
                stop=lambda: all(j.future.abandoned for j in jobs))
            if self.on_batch is not None:
                self.on_batch(stats)
        else:  # every score came from the cache
            scores, stats = np.zeros(0, dtype=np.float64), ScoreStats()
        offset = 0
        for job, key, found, miss in zip(jobs, keys, cached, missing, strict=True):
            own = scores[offset:offset + len(miss)]
            tokens = int(stats.pair_tokens[offset:offset + len(miss)].sum()) if len(miss) else 0
            offset += len(miss)
            hits = len(found) - len(miss)
            if hits:
                out = np.array([np.nan if v is None else v for v in found], dtype=np.float64)
                out[miss] = own
            else:
                out = own.astype(np.float64)
            if self.cache is not None and miss:
                self.cache.put_many([key[i] for i in miss], own.tolist())
            job.future.set_result(ScoreResult(
                scores=out, tokens=tokens, queue_s=started - job.enqueued, tokenize_s=stats.tokenize_s,
                inference_s=stats.inference_s, batch_pairs=len(pairs), cache_hits=hits))

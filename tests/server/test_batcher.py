"""The batcher on the tiny model: coalescing, whole big requests, cancellation, isolation, drain."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from crossrank import CrossEncoder, InputError
from crossrank.server.batcher import Batcher, BatcherClosed
from crossrank.server.cache import ScoreCache, cache_key

DOCS = ["crocs kids clog", "aircraft wing lift", "the best red shoe", "running shoe for kids", "heat flow"]


@pytest.fixture(scope="module")
def encoder(tiny_model):
    return CrossEncoder(tiny_model, backend="onnx", threads=1)


def test_concurrent_jobs_are_coalesced_and_answered_in_order(encoder):
    calls = []
    batcher = Batcher("tiny", encoder, max_batch_pairs=10_000, max_wait_s=0.0, on_batch=calls.append)
    try:
        busy = batcher.submit("crocs", ["crocs " * 50] * 300, activation="raw", chunks=1)  # keeps the worker busy
        jobs = [(f"query {i} crocs", DOCS[i % 5:] + DOCS[: i % 5]) for i in range(20)]
        futures = [batcher.submit(q, docs, activation="raw", chunks=1) for q, docs in jobs]
        results = [f.result(timeout=60) for f in futures]
        busy.result(timeout=60)
    finally:
        batcher.close()
    assert len(calls) <= 3  # 21 requests, at most 3 engine calls (the busy one, then the rest merged)
    assert max(c.pairs for c in calls) >= 50
    for (q, docs), result in zip(jobs, results, strict=True):
        np.testing.assert_allclose(result.scores, encoder.score([(q, d) for d in docs], activation="raw"),
                                   atol=1e-5)
        assert result.tokens == sum(encoder.score_with_stats([(q, d)])[1].tokens for d in docs)


def test_one_big_request_goes_whole_in_engine_batches(encoder):
    calls = []
    batcher = Batcher("tiny", encoder, max_batch_pairs=8, on_batch=calls.append)
    try:
        docs = [f"{DOCS[i % 5]} {i}" for i in range(600)]
        result = batcher.submit("crocs", docs, activation="sigmoid", chunks=1).result(timeout=60)
    finally:
        batcher.close()
    assert len(result.scores) == 600 and np.all((result.scores >= 0) & (result.scores <= 1))
    assert calls[0].pairs == 600 and len(calls[0].batches) > 1  # the engine split it into batches


def test_a_request_that_would_overflow_the_batch_opens_the_next_one(encoder):
    calls = []
    batcher = Batcher("tiny", encoder, max_batch_pairs=4, max_wait_s=0.0, on_batch=calls.append)
    try:
        busy = batcher.submit("crocs", ["crocs " * 50] * 300, activation="raw", chunks=1)  # keeps the worker busy
        small = [batcher.submit("q", ["a"], activation="raw", chunks=1) for _ in range(2)]
        big = batcher.submit("q", DOCS * 20, activation="raw", chunks=1)
        last = batcher.submit("q", ["b"], activation="raw", chunks=1)
        for f in [busy, *small, big, last]:
            f.result(timeout=60)
    finally:
        batcher.close()
    assert [c.pairs for c in calls] == [300, 2, 100, 1]  # never 2 + 100 in one call: the big one went alone


def test_bad_job_fails_alone(encoder):
    batcher = Batcher("tiny", encoder)
    try:
        bad = batcher.submit("q", ["a"], activation="bogus", chunks=1)
        good = batcher.submit("q", ["a"], activation="raw", chunks=1)
        with pytest.raises(InputError):
            bad.result(timeout=30)
        assert good.result(timeout=30).scores.shape == (1,)
    finally:
        batcher.close()


def test_cancelled_job_is_skipped_and_close_drains(encoder):
    calls = []
    batcher = Batcher("tiny", encoder, max_batch_pairs=10_000, on_batch=calls.append)
    busy = batcher.submit("crocs", ["crocs " * 50] * 300, activation="raw", chunks=1)
    cancelled = batcher.submit("never", ["scored"], activation="raw", chunks=1)
    assert cancelled.cancel()
    queued = [batcher.submit("q", [d], activation="raw", chunks=1) for d in DOCS]
    batcher.close()  # returns after the queue is drained
    assert batcher.depth == 0  # the cancelled job counted once, not twice (cancelled, then skipped)
    assert busy.done() and all(f.done() and f.exception() is None for f in queued)
    assert sum(c.pairs for c in calls) == 300 + len(DOCS)  # the cancelled pair never ran
    with pytest.raises(BatcherClosed):
        batcher.submit("q", ["a"], activation="raw", chunks=1)


def test_cache_serves_repeats_without_the_engine(encoder):
    calls = []
    cache = ScoreCache(100)
    batcher = Batcher("tiny", encoder, cache=cache, on_batch=calls.append)
    try:
        first = batcher.submit("crocs", DOCS, activation="raw", chunks=1).result(timeout=30)
        again = batcher.submit("crocs", DOCS[:2] + ["new doc"], activation="raw", chunks=1).result(timeout=30)
        other = batcher.submit("crocs", DOCS[:2], activation="sigmoid", chunks=1).result(timeout=30)
    finally:
        batcher.close()
    assert again.cache_hits == 2 and calls[1].pairs == 1  # only the new document ran
    np.testing.assert_allclose(again.scores[:2], first.scores[:2])
    assert other.cache_hits == 0  # the activation is part of the key
    np.testing.assert_allclose(other.scores, 1 / (1 + np.exp(-first.scores[:2])), atol=1e-6)


def test_cache_evicts_least_recently_used():
    cache = ScoreCache(2)
    keys = [cache_key("m", "raw", 1, "q", t) for t in "abc"]
    cache.put_many(keys[:2], [1.0, 2.0])
    assert cache.get_many([keys[0]]) == [1.0]  # a is now the most recent
    cache.put_many([keys[2]], [3.0])
    assert cache.get_many(keys) == [1.0, None, 3.0]
    assert (cache.hits, cache.misses) == (3, 1)
    assert cache_key("m", "raw", 1, "ab", "c") != cache_key("m", "raw", 1, "a", "bc")
    # a NUL inside the query or text cannot make two splits of the same characters meet
    assert cache_key("m", "raw", 1, "heat\x00flow", "layer") != cache_key("m", "raw", 1, "heat", "flow\x00layer")


def test_an_abandoned_running_job_stops_at_the_next_batch_and_frees_the_worker(encoder):
    """A request that timed out or whose client left must not keep the model busy for the rest of its
    documents: the engine stops between batches, and the next request is served."""

    from crossrank import ScoringStopped

    batcher = Batcher("tiny", encoder, max_wait_s=0.0)
    try:
        big = batcher.submit("crocs", [f"crocs kids clog {i} " * 20 for i in range(30_000)], activation="raw",
                             chunks=1)
        deadline = time.monotonic() + 30
        while not big.running() and time.monotonic() < deadline:
            time.sleep(0.001)
        big.abandon()
        with pytest.raises(ScoringStopped):
            big.result(timeout=60)
        after = batcher.submit("q", ["a"], activation="raw", chunks=1).result(timeout=60)
        assert after.scores.shape == (1,)
        queued = batcher.submit("q", ["b"] * 3, activation="raw", chunks=1)
        queued.abandon()  # not running yet, or done: either way nobody gets a stale answer
        assert queued.cancelled() or queued.done()
    finally:
        batcher.close()


def test_a_job_cancelled_in_the_queue_leaves_the_depth_gauge_at_once(encoder):
    """A timed-out request's job counted in the queue-depth gauge until the worker came to skip it."""
    entered, release = threading.Event(), threading.Event()

    def hold(_stats: object) -> None:  # the worker holds after its first batch, so later jobs stay queued
        entered.set()
        release.wait(30)

    batcher = Batcher("tiny", encoder, on_batch=hold)
    first = batcher.submit("crocs", ["crocs kids clog"], activation="raw", chunks=1)
    assert entered.wait(30)
    waiting = [batcher.submit("q", [d], activation="raw", chunks=1) for d in DOCS[:3]]
    assert batcher.depth == 3
    assert waiting[1].cancel()
    assert batcher.depth == 2
    release.set()
    batcher.close()
    assert batcher.depth == 0 and first.result() and waiting[0].result() and waiting[2].result()


def test_a_worker_that_must_exit_leaves_no_request_waiting(tiny_model, monkeypatch):
    """A SystemExit inside scoring ends the worker thread: its requests fail at once instead of waiting for
    their timeouts."""
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the thread's exit is what is meant
    encoder = CrossEncoder(tiny_model, backend="onnx", threads=1)
    real = encoder.score_with_stats

    def exiting(*args, **kwargs):
        raise SystemExit("asked to stop")

    encoder.score_with_stats = exiting  # the engine's own call, made to raise what only shutdown raises
    batcher = Batcher("tiny", encoder, max_wait_s=0.05)
    try:
        jobs = [batcher.submit("q", [f"doc {i}"], activation=act, chunks=1)  # two groups: one runs after the
                for i, act in enumerate(["raw", "raw", "sigmoid"])]      # other group's exit
        for job in jobs:
            with pytest.raises(Exception, match="asked to stop|SystemExit"):
                job.result(timeout=10)
        with pytest.raises(BatcherClosed):  # refused, not queued for a worker that is gone
            batcher.submit("q", ["later"], activation="raw", chunks=1)
    finally:
        encoder.score_with_stats = real
        batcher.close()

"""Prometheus metrics, one registry per app (so two apps in one process never share counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from crossrank.engine import ScoreStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """The server's counters, histograms and gauges; ``render()`` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("crossrank_requests", "HTTP requests by route, model and status",
                                ["route", "model", "status"], registry=r)
        self.latency = Histogram("crossrank_request_latency_seconds", "End-to-end latency of scoring requests",
                                 ["route", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_latency = Histogram("crossrank_queue_latency_seconds", "Time a request waited for the batcher",
                                       ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.pairs = Counter("crossrank_pairs_scored", "(query, document) pairs scored by the engine", ["model"],
                             registry=r)
        self.tokens = Counter("crossrank_tokens", "Tokens run through the model", ["model"], registry=r)
        self.batch_pairs = Histogram("crossrank_batch_pairs", "Pairs per coalesced engine call", ["model"],
                                     buckets=BATCH_BUCKETS, registry=r)
        self.engine_batch_rows = Histogram("crossrank_engine_batch_rows", "Rows per model forward pass", ["model"],
                                           buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("crossrank_queue_depth", "Requests waiting for a model's batcher", ["model"],
                                 registry=r)
        self.in_flight = Gauge("crossrank_requests_in_flight", "Scoring requests being served", registry=r)
        self.cache_hits = Counter("crossrank_cache_hits", "Scores served from the score cache", ["model"], registry=r)
        self.cache_misses = Counter("crossrank_cache_misses", "Score cache lookups that missed", ["model"],
                                    registry=r)

    def batch_hook(self, model: str) -> Callable[[ScoreStats], None]:
        """Called by the model's batcher thread after each engine call."""
        pairs, tokens = self.pairs.labels(model), self.tokens.labels(model)
        merged, rows = self.batch_pairs.labels(model), self.engine_batch_rows.labels(model)

        def observe(stats: ScoreStats) -> None:
            pairs.inc(stats.pairs)
            tokens.inc(stats.tokens)
            merged.observe(stats.pairs)
            for n in stats.batches:
                rows.observe(n)

        return observe

    def cache_hook(self, model: str) -> Callable[[int, int], None]:
        """Called by the model's batcher at each score-cache lookup: the same events the cache itself counts
        (``/info``), including lookups for requests that then timed out or whose client left."""
        hits, misses = self.cache_hits.labels(model), self.cache_misses.labels(model)

        def observe(hit: int, missed: int) -> None:
            hits.inc(hit)
            misses.inc(missed)

        return observe

    def watch_queue(self, model: str, depth: Callable[[], int]) -> None:
        self.queue_depth.labels(model).set_function(depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)

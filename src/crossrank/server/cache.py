"""An LRU cache of scores keyed by everything that determines a score.

A score depends on the model, the activation, the number of windows per document, the query
and the text; all of them are in the key, so a hit returns exactly what the engine would.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

CacheKey = tuple[str, str, int, str, str]  # model, activation, chunks, query, text


class ScoreCache:
    """Thread-safe LRU (the batcher threads of all models share one); ``size=0`` disables it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[CacheKey, float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: list[CacheKey]) -> list[float | None]:
        if not self.size:
            return [None] * len(keys)
        out: list[float | None] = []
        with self._lock:
            for key in keys:
                value = self._entries.get(key)
                if value is not None:
                    self._entries.move_to_end(key)
                out.append(value)
            found = sum(v is not None for v in out)
            self.hits += found
            self.misses += len(keys) - found
        return out

    def put_many(self, keys: list[CacheKey], values: list[float]) -> None:
        if not self.size:
            return
        with self._lock:
            for key, value in zip(keys, values, strict=True):
                self._entries[key] = value
                self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

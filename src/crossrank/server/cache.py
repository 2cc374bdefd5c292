"""An LRU cache of scores keyed by everything that determines a score.

A score depends on the model, the activation, the number of windows per document, the end a long
document is truncated from, the query and the text; all of them are in the key, so a hit returns
exactly what the engine would. The query and text enter as a 128-bit BLAKE2b digest, so an entry
costs the same for a 100 kB text as for a title.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

CacheKey = tuple[str, str, int, str, bytes]  # model, activation, chunks, truncation side, digest of (query, text)


def cache_key(model: str, activation: str, chunks: int, query: str, text: str, side: str = "right") -> CacheKey:
    q = query.encode("utf-8", "surrogatepass")
    # The query's length leads, so no two (query, text) splits of the same bytes share a digest: a
    # separator byte would not do, since texts may hold any character, NUL included.
    pair = hashlib.blake2b(len(q).to_bytes(8, "little"), digest_size=16)
    pair.update(q)
    pair.update(text.encode("utf-8", "surrogatepass"))
    return model, activation, chunks, side, pair.digest()


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

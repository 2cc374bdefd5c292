"""Batching that wastes nothing: length-sorted buckets under a token budget, padded per batch.

Rows are sorted by token count so each batch pads only to its own longest row; a batch is
closed when its padded size (rows x longest) would pass ``max_tokens`` or it holds ``max_rows``.
Callers get results back in their own order because every batch carries its row indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossrank.engine.tokenize import EncodedPairs

#: Padded tokens per engine batch on a CPU. Small batches keep a layer's activations
#: (tokens x 1536 floats in the feed-forward) inside the L2/L3 caches: on the 2-core benchmark VM,
#: 100 titles took 721 ms at 4096 and 467 ms at 768 (int8: 460 -> 312 ms) and 100 passages
#: 1840 -> 1629 ms; 256-2048 are within noise of each other on passages (docs/benchmarks.md).
CPU_BATCH_TOKENS = 768
#: On a GPU, big batches fill the device; memory, not cache, is the limit.
GPU_BATCH_TOKENS = 65536


@dataclass
class Batch:
    rows: np.ndarray  # indices into EncodedPairs rows
    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    @property
    def padded_tokens(self) -> int:
        return int(self.input_ids.size)


def plan(lengths: np.ndarray, max_tokens: int, max_rows: int) -> list[np.ndarray]:
    """Split rows into batches, longest first (an out-of-memory surfaces on the first batch)."""
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    n = len(order)
    while start < n:
        longest = int(lengths[order[start]])  # sorted descending: the first row is the longest
        size = max(1, min(max_rows, max_tokens // max(1, longest)))
        batches.append(order[start : start + size])
        start += size
    return batches


def collate(encoded: EncodedPairs, rows: np.ndarray, pad_id: int) -> Batch:
    """Pad the given rows to the batch's longest row (vectorized scatter, no per-token loop)."""
    lengths = encoded.lengths[rows]
    width = int(lengths.max())
    mask = np.arange(width)[None, :] < lengths[:, None]
    # Gather each row's tokens from the flat arrays in row-major order, matching ``mask``.
    starts = encoded.offsets[rows]
    gather = (starts[:, None] + np.arange(width)[None, :])[mask]
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    input_ids[mask] = encoded.ids[gather]
    token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
    token_type_ids[mask] = encoded.type_ids[gather]
    return Batch(rows, input_ids, mask.astype(np.int64), token_type_ids)

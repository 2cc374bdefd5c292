"""Local workers: the calling process for one worker, a spawn-started process pool for more."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from crossrank.batch.job import score_part

Task = tuple[int, str, str, int]
_ENCODER: Any = None


def _load(model_kwargs: dict[str, Any], threads: int) -> None:
    """Pool initializer: one model load per worker process, not per part."""
    global _ENCODER
    from crossrank import CrossEncoder

    _ENCODER = CrossEncoder(**{k: v for k, v in model_kwargs.items() if v is not None}, threads=threads)


def _work(job_in: str, job_out: str, on: list[str] | None, first_row: int) -> int:
    return score_part(_ENCODER, job_in, job_out, on, first_row)


def run_local(tasks: list[Task], model_kwargs: dict[str, Any], on: list[str] | None, workers: int,
              advance: Callable[[int], None], address: str | None = None) -> None:
    """Score ``tasks``; cores are split evenly so N workers never oversubscribe the machine."""
    from crossrank.engine.encoder import default_threads

    if not tasks:
        return
    threads = max(1, default_threads() // workers)
    if workers == 1:
        _load(model_kwargs, threads)
        for _, job_in, job_out, first in tasks:
            advance(_work(job_in, job_out, on, first))
        return
    # spawn, not fork: a forked ONNX Runtime or tokenizers thread pool deadlocks.
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_load,
                             initargs=(model_kwargs, threads)) as pool:
        futures = [pool.submit(_work, job_in, job_out, on, first) for _, job_in, job_out, first in tasks]
        for fut in as_completed(futures):
            advance(fut.result())

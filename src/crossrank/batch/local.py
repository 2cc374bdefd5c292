"""Local workers: the calling process for one worker, a spawn-started process pool for more."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from crossrank.batch.job import score_part
from crossrank.errors import BackendError, CrossrankError

Task = tuple[int, str, str, int]
_ENCODER: Any = None


def _load(model_kwargs: dict[str, Any], threads: int, parent: int | None = None) -> None:
    """Pool initializer: one model load per worker process, not per part."""
    global _ENCODER
    from crossrank import CrossEncoder

    if parent is not None:  # a pool worker
        threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="crossrank-parent-watch").start()
    try:
        _ENCODER = CrossEncoder(**{k: v for k, v in model_kwargs.items() if v is not None}, threads=threads)
    except CrossrankError as exc:
        if parent is None:  # the calling process: raised where it happens
            raise
        # An initializer's exception breaks the pool ("a worker died"); the first part raises it instead.
        _ENCODER = exc


def _exit_with(parent: int) -> None:
    """End this worker when the job's process is gone (killed, or SIGTERM before it could stop us): a
    worker waits on the pool's pipe forever, holding a model's memory, and would score parts for a job
    no one runs any more."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _work(job_in: str, job_out: str, on: list[str] | None, first_row: int) -> int:
    if isinstance(_ENCODER, CrossrankError):
        raise _ENCODER
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
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_load,
                               initargs=(model_kwargs, threads, os.getpid()))
    try:
        pending = {pool.submit(_work, job_in, job_out, on, first) for _, job_in, job_out, first in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                advance(future.result())  # a bad part's error ends the job now, not after every other part
        pool.shutdown()
    except BrokenProcessPool:
        raise BackendError("a worker process died (killed, or out of memory?); finished parts are kept: run "
                           "the same command again to resume") from None
    finally:
        _stop(pool)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now: on an error or Ctrl-C, leaving the pool's
    context waited for every queued part to be scored first."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public API before 3.14;
    pool.shutdown(wait=False, cancel_futures=True)  # and shutdown() forgets them
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)

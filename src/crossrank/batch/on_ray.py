"""Ray Data workers: an actor pool holding the model (one load per actor), one staged part per call.

Parts are written by the actors themselves, atomically, so Ray's retries after a killed worker only
rewrite a part; the driver then checks every part exists. Staged parts must be on storage every node
can read (a shared filesystem on a real cluster; the local disk on a single-machine cluster).
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

from crossrank.batch.job import score_part
from crossrank.errors import CrossrankError, InputError, MissingDependencyError

Task = tuple[int, str, str, int]


class PartScorer:
    """Ray Data callable class: constructed once per actor, called with batches of one part each.

    A crossrank error (a bad row, a model that fails to load on the worker) comes back as data, pickled,
    and the driver raises it: through Ray it would arrive as a wrapped task error and a long traceback
    instead of the error a local run gives (and exit 2 from the CLI).
    """

    def __init__(self, model_kwargs: dict[str, Any], on: list[str] | None, threads: int) -> None:
        from crossrank import CrossEncoder

        self.error = b""
        try:
            self.encoder = CrossEncoder(**{k: v for k, v in model_kwargs.items() if v is not None}, threads=threads)
        except CrossrankError as exc:
            self.error = pickle.dumps(exc)
        self.on = on

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, error = [0], self.error
        if not error:
            try:
                rows = [score_part(self.encoder, str(i), str(o), self.on, int(f))
                        for i, o, f in zip(batch["job_in"], batch["job_out"], batch["first_row"], strict=True)]
            except CrossrankError as exc:
                error = pickle.dumps(exc)
        return {"rows": np.asarray([sum(rows)], dtype=np.int64), "error": np.asarray([error], dtype=object)}


def threads_per_worker(cluster_cpus: int, largest_node_cpus: int, workers: int, budget: str = "") -> int:
    """Cores (and threads) each actor asks for: the cluster's share per worker, capped by the job's
    ``CROSSRANK_THREADS`` budget, and never more than one node has (an actor runs on one node; asking
    more than any node holds would leave it pending forever)."""
    total = min(cluster_cpus, int(budget)) if budget.isdigit() and int(budget) > 0 else cluster_cpus
    return max(1, min(total // workers, largest_node_cpus))


def run_on_ray(tasks: list[Task], model_kwargs: dict[str, Any], on: list[str] | None, workers: int,
               advance: Callable[[int], None], address: str | None = None) -> None:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependencyError("batch scoring on Ray", "ray", "ray[data]") from exc
    if not tasks:
        return
    if not ray.is_initialized():
        try:
            ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        except ConnectionError as exc:  # e.g. --ray-address auto with no cluster running
            raise InputError(f"cannot join a Ray cluster ({address or 'RAY_ADDRESS'}): {exc}") from None
    cpus = int(ray.cluster_resources().get("CPU", 1))
    largest = int(max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1))
    threads = threads_per_worker(cpus, largest, workers, os.environ.get("CROSSRANK_THREADS", ""))
    items = [{"job_in": job_in, "job_out": job_out, "first_row": first} for _, job_in, job_out, first in tasks]
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        PartScorer, fn_constructor_kwargs={"model_kwargs": model_kwargs, "on": on, "threads": threads},
        batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads)  # lost actors restart
    for batch in ds.iter_batches(batch_size=1, batch_format="numpy"):
        failed = next((e for e in batch["error"] if e), None)
        if failed:
            raise pickle.loads(failed)  # noqa: S301 - pickled by our own workers, one job's own data
        advance(int(batch["rows"].sum()))

"""Batch scoring on a real local Ray cluster (head on 127.0.0.1): same bytes as the local path, and a
worker killed mid-job costs nothing but time."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from crossrank.batch import score_file
from crossrank.batch.files import read_rows, write_rows

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2**20,
             _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def _rows(n: int) -> list[dict]:
    docs = ["heat flow in a slab", "crocs kids clog", "boundary layer on a wing", "red running shoe"]
    return [{"id": i, "query": "heat transfer" if i % 2 else "kids shoe", "candidates": docs[i % 2:]}
            for i in range(n)]


def test_ray_matches_local_bytes(cluster, tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "")  # empty is unset to Ray, not an address to refuse
    write_rows(tmp_path / "in.jsonl", _rows(40))
    score_file(tmp_path / "in.jsonl", tmp_path / "local.jsonl", model=str(tiny_model), part_rows=5, progress=False)
    report = score_file(tmp_path / "in.jsonl", tmp_path / "ray.jsonl", model=str(tiny_model), part_rows=5,
                        workers=2, ray=True, progress=False)
    assert report.engine == "ray" and report.rows == 40
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


def _scorer_pids() -> list[int]:
    """Ray titles an actor's process after its class (``ray::MapWorker(MapBatches(PartScorer))``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if b"PartScorer" in fh.read():
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def _kill_one_actor(stop: threading.Event, killed: list[int]) -> None:
    """Wait until an actor has written a part (so it is mid-job), then SIGKILL it."""
    while not stop.is_set() and not killed:
        pids = _scorer_pids()
        if pids and any(out.glob("part-*.jsonl") for out in _OUT_DIRS):
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
            return
        time.sleep(0.02)


_OUT_DIRS: list = []


def test_killed_worker_still_scores_every_row_once(cluster, tmp_path, tiny_model):
    rows = _rows(400)
    write_rows(tmp_path / "in.jsonl", rows)
    _OUT_DIRS.append(tmp_path / "ray.jsonl.parts" / "out")
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_one_actor, args=(stop, killed), daemon=True)
    killer.start()
    try:
        score_file(tmp_path / "in.jsonl", tmp_path / "ray.jsonl", model=str(tiny_model), part_rows=2, workers=2,
                   ray=True, progress=False)
    finally:
        stop.set()
        killer.join(5)
    if not killed:
        pytest.fail("the job finished before an actor could be killed; make it longer")
    out = read_rows(tmp_path / "ray.jsonl")
    assert [r["id"] for r in out] == list(range(400))
    score_file(tmp_path / "in.jsonl", tmp_path / "local.jsonl", model=str(tiny_model), part_rows=2, progress=False)
    assert out == read_rows(tmp_path / "local.jsonl")


def test_an_actor_never_asks_for_more_cores_than_one_node_has():
    from crossrank.batch.on_ray import threads_per_worker

    assert threads_per_worker(2, 1, 1) == 1  # two 1-CPU nodes: 2 CPUs in all, but an actor lives on one node
    assert threads_per_worker(16, 8, 2) == 8
    assert threads_per_worker(16, 8, 4) == 4
    assert threads_per_worker(16, 8, 4, budget="4") == 1
    assert threads_per_worker(4, 4, 8) == 1  # more workers than cores still ask for one each


def test_a_crossrank_error_on_a_worker_is_raised_as_itself(cluster, tmp_path, tiny_model):
    """A row the engine refuses surfaced as Ray's UserCodeException (CLI exit 1 and a long traceback) where a
    local run raises InputError (exit 2); ModelLoadError could not even be pickled back."""
    import pickle
    import shutil

    from crossrank.errors import MissingDependencyError, ModelLoadError

    # A bad row is refused at staging now, on the driver; a model fails where it loads, on the workers.
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")  # resolves on the driver, fails to load
    write_rows(tmp_path / "in.jsonl", _rows(6))
    with pytest.raises(ModelLoadError, match="broken"):
        score_file(tmp_path / "in.jsonl", tmp_path / "ray.jsonl", model=str(broken), part_rows=2,
                   workers=2, ray=True, progress=False)
    # a local pool the same (a failing model load in its workers read as "a worker process died")
    with pytest.raises(ModelLoadError, match="broken"):
        score_file(tmp_path / "in.jsonl", tmp_path / "local.jsonl", model=str(broken), part_rows=2,
                   workers=2, progress=False)
    for exc in (ModelLoadError("m", "why"), MissingDependencyError("x", "ray", "ray[data]")):
        assert str(pickle.loads(pickle.dumps(exc))) == str(exc)

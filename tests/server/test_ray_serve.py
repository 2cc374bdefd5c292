"""The server on Ray Serve, on a real local Ray cluster: two replicas, requests spread over both,
the same answers and errors as the single-process server."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from crossrank import CrossEncoder
from crossrank.server.config import config_from_dict

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url(tiny_model):
    from crossrank.server.ray_serve import Scaling, build

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2**20,
             _node_ip_address="127.0.0.1")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = config_from_dict({"models": {"tiny": {"model": str(tiny_model), "backend": "onnx"}}})
        serve.run(build(config, Scaling(replicas=2, cpus_per_replica=0.5)), name="crossrank", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/ready", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "replicas never became ready"
            time.sleep(0.5)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


def test_requests_spread_over_two_replicas(base_url):
    with ThreadPoolExecutor(16) as pool:
        pids = set(pool.map(lambda _: httpx.get(f"{base_url}/info", timeout=30).json()["pid"], range(64)))
    assert len(pids) == 2


def test_same_scores_and_errors_as_single_process(base_url, tiny_model):
    docs = ["heat flow in a slab", "crocs kids clog", "boundary layer on a wing"]
    r = httpx.post(f"{base_url}/v1/rerank", json={"model": "tiny", "query": "heat transfer", "documents": docs},
                   timeout=30)
    assert r.status_code == 200, r.text
    got = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
    want = CrossEncoder(str(tiny_model), backend="onnx", activation="sigmoid").score(
        [("heat transfer", d) for d in docs])
    np.testing.assert_allclose([got[i] for i in range(3)], want, atol=1e-5)
    r = httpx.post(f"{base_url}/v1/rerank", json={"model": "nope", "query": "q", "documents": ["d"]}, timeout=30)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")
    r = httpx.post(f"{base_url}/rerank", json={"query": "q", "texts": []}, timeout=30)
    assert r.status_code in (400, 422) and "error" in r.json()


def test_a_replica_runs_as_many_threads_as_cores_it_holds(base_url):
    """Each replica holds 0.5 CPU here: its engine had one thread per core of the node (2 replicas, 4 threads
    on 2 cores; 32 on a 16-core node)."""
    info = httpx.get(f"{base_url}/info", timeout=30).json()
    assert [m["threads"] for m in info["models"]] == [1]


def test_replicas_the_cluster_cannot_place_are_refused_before_deploying():
    from crossrank.server.config import ConfigError
    from crossrank.server.ray_serve import Scaling, check_capacity

    check_capacity(Scaling(replicas=2, cpus_per_replica=1), [2])
    with pytest.raises(ConfigError, match="hold 2"):
        check_capacity(Scaling(replicas=3), [2])
    with pytest.raises(ConfigError, match="hold 0"):
        check_capacity(Scaling(replicas=1, cpus_per_replica=4), [2, 2, 2, 2])  # 8 CPUs, no node holds one
    with pytest.raises(ConfigError, match="hold 2"):  # 6 CPUs for 6 asked, but a node fits one 2-CPU replica
        check_capacity(Scaling(replicas=3, cpus_per_replica=2), [3, 3])
    check_capacity(Scaling(min_replicas=1, max_replicas=8), [2])  # autoscaling: its minimum must fit
    check_capacity(Scaling(replicas=4), [0])  # a head with no CPUs whose autoscaler adds workers: not judged

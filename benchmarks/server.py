"""Run: HF_HUB_OFFLINE=1 python benchmarks/server.py [--model M] [--concurrency 1 8 32] [--docs 10 100]

Load test of ``crossrank serve`` on loopback: a bounded async-httpx load generator (``c`` clients,
each sending its next request when the last one returns) against ``/v2/rerank``, at each
concurrency and documents-per-request; p50/p99 latency and pairs/s. In the same run and before the
server starts, the engine's in-process figures on the same texts: one request's documents in one
``score`` call, and ``c`` requests' documents merged in one call (what dynamic batching can reach).
``--infinity-url`` adds a running Infinity server (its Cohere-style ``/rerank``) as the peer.
Before the load, the HTTP overhead: one client sends requests one at a time, alternating with the same
documents scored in-process, and the medians are compared (what a lone caller pays for the server).

The server, the load generator and anything else on the machine share its cores: on a small VM the
generator's own CPU use is part of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from crossrank.bench import count, run_script
from crossrank.bench.latency import QUERY, corpus_words, texts
from crossrank.server import launch


def engine_figures(ce: object, docs: list[str], merged: int, repeats: int) -> tuple:
    """p50 ms of one request's documents in one call, and pairs/s of ``merged`` requests in one call."""
    pairs = [(QUERY, d) for d in docs]
    ce.score(pairs)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        ce.score(pairs)
        times.append(time.perf_counter() - t)
    # Distinct queries so the engine's dedupe cannot shortcut the merged call.
    merged_pairs = [(f"{QUERY} {i}", d) for i in range(merged) for d in docs]
    t = time.perf_counter()
    ce.score(merged_pairs)
    merged_s = time.perf_counter() - t
    return statistics.median(times) * 1000, len(pairs) / statistics.median(times), len(merged_pairs) / merged_s


def http_overhead(ce: object, url: str, docs: list[str], repeats: int) -> tuple[float, float]:
    """Median ms of one request through the server (a sequential client) and of the same call in-process,
    interleaved so background load hits both alike."""
    pairs = [(QUERY, d) for d in docs]
    body = {"model": "bench", "query": QUERY, "documents": docs, "return_documents": False}
    client, local = [], []
    with httpx.Client(base_url=url, timeout=600) as http:
        for _ in range(2):  # warm-up: connection, caches
            http.post("/v2/rerank", json=body).raise_for_status()
        for _ in range(repeats):
            t = time.perf_counter()
            http.post("/v2/rerank", json=body).raise_for_status()
            client.append(time.perf_counter() - t)
            t = time.perf_counter()
            ce.score(pairs)  # type: ignore[attr-defined]
            local.append(time.perf_counter() - t)
    return statistics.median(client) * 1000, statistics.median(local) * 1000


async def load(url: str, path: str, body: dict, concurrency: int, total: int, timeout: float) -> tuple:
    """``total`` requests from ``concurrency`` clients; latencies (s) of the answered ones (200), wall
    time (s) and failures, which count in neither (a peer answering 501 at once is not fast)."""
    latencies: list[float] = []
    failures: list[str] = []
    sent = 0

    async def client(http: httpx.AsyncClient, worker: int) -> None:
        nonlocal sent
        while sent < total:
            sent += 1
            request = {**body, "query": f"{body['query']} {worker}-{sent}"}  # distinct: no cache, no dedupe
            t = time.perf_counter()
            try:
                response = await http.post(f"{url}{path}", json=request)
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__} {exc}"[:120])
                continue
            if response.status_code == 200:
                latencies.append(time.perf_counter() - t)
            else:
                failures.append(f"{response.status_code} {response.text[:100]}")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http, w) for w in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, wall, failures


def engine_calls(url: str) -> tuple[float, float]:
    """(engine calls, pairs) so far, from crossrank's /metrics: their ratio is the coalesced batch size."""
    from prometheus_client.parser import text_string_to_metric_families

    calls = pairs = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == "crossrank_batch_pairs_count":
                calls += sample.value
            elif sample.name == "crossrank_batch_pairs_sum":
                pairs += sample.value
    return calls, pairs


def start_server(model: str | None, quantize: str | None, tmp: Path) -> launch.ServerProcess:
    lines = ["models:", "  bench:", f"    model: {model or 'minilm-l6-untrained'}"]
    if quantize:
        lines.append(f"    quantize: {quantize}")
    lines += ["server:", "  request_timeout_s: 600", "  max_concurrent_requests: 256"]
    (tmp / "crossrank.yaml").write_text("\n".join(lines) + "\n")
    try:
        return launch.start(["--config", str(tmp / "crossrank.yaml"), "--log-level", "warning"], log=tmp / "serve.log")
    except launch.ServerStartError as exc:
        raise SystemExit(str(exc)) from None


def row(name: str, c: int, n: int, total: int, lat: list[float], wall: float, failures: list[str]) -> str:
    """One point's line: percentiles and pairs/s over the answered requests; failures said, never hidden."""
    head = f"{name:<10} c={c:<3} {n:>4} docs  {total:>4} requests"
    if not lat:
        return f"{head}  ALL FAILED: {failures[0]}"
    ms = np.asarray(lat) * 1000
    line = (f"{head}  p50 {np.percentile(ms, 50):8.1f} ms  p99 {np.percentile(ms, 99):8.1f} ms"
            f"  {len(lat) * n / wall:7.1f} pairs/s")
    return line + (f"  FAILURES {len(failures)} (not counted): {failures[0]}" if failures else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="hub id / path / built-in (default minilm-l6-untrained)")
    parser.add_argument("--quantize", default=None, choices=[None, "int8"])
    parser.add_argument("--concurrency", type=count, nargs="+", default=[1, 8, 32])
    parser.add_argument("--docs", type=count, nargs="+", default=[10, 100])
    parser.add_argument("--kind", default="titles", choices=["titles", "passages"])
    parser.add_argument("--rounds", type=count, default=2, help="requests per client per point (at least 8 in all)")
    parser.add_argument("--infinity-url", default=None, help="a running Infinity server, e.g. http://127.0.0.1:7997")
    parser.add_argument("--infinity-model", default=None, help="the model id Infinity serves")
    args = parser.parse_args()
    if args.infinity_url and not args.infinity_model:
        parser.error("--infinity-url needs --infinity-model (the model id Infinity serves)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    words, origin = corpus_words()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with the load generator); "
          f"model {args.model or 'minilm-l6-untrained'} {args.quantize or 'fp32'}; {args.kind} from {origin}; "
          f"query {QUERY!r}")
    from crossrank import CrossEncoder

    ce = CrossEncoder(args.model, quantize=args.quantize)
    engine = {}
    for n in args.docs:
        docs = texts(args.kind, n, words)
        engine[n] = engine_figures(ce, docs, merged=max(1, 320 // n), repeats=5)
        p50, one, merged = engine[n]
        print(f"engine in-process   {n:>4} docs: one call p50 {p50:8.1f} ms  {one:7.1f} pairs/s; "
              f"{max(1, 320 // n)} requests merged in one call {merged:7.1f} pairs/s")

    with tempfile.TemporaryDirectory(prefix="crossrank-bench-") as tmp:
        server = start_server(args.model, args.quantize, Path(tmp))
        try:
            measure(args, ce, server, words, engine)
        finally:
            server.stop(120)


def measure(args: argparse.Namespace, ce: object, server: launch.ServerProcess, words: list[list[str]],
            engine: dict) -> None:
    targets = [("crossrank", server.url, "/v2/rerank", "bench")]
    if args.infinity_url:
        targets.append(("infinity", args.infinity_url.rstrip("/"), "/rerank", args.infinity_model))
    for n in args.docs:
        client, local = http_overhead(ce, server.url, texts(args.kind, n, words), 30 if n <= 10 else 6)
        print(f"http overhead       {n:>4} docs: sequential client p50 {client:8.1f} ms, in-process "
              f"{local:8.1f} ms: {client - local:+.1f} ms ({client / local - 1:+.1%})", flush=True)
    # Targets alternate point by point so a change in background load hits both alike.
    for n in args.docs:
        docs = texts(args.kind, n, words)
        for _name, url, path, model in targets:
            warm = {"model": model, "query": QUERY, "documents": docs, "return_documents": False}
            asyncio.run(load(url, path, warm, 1, 2, 600))
        for c in args.concurrency:
            for name, url, path, model in targets:
                body = {"model": model, "query": QUERY, "documents": docs, "return_documents": False}
                total = max(8, c * args.rounds)
                before = engine_calls(url) if name == "crossrank" else (0.0, 0.0)
                lat, wall, failures = asyncio.run(load(url, path, body, c, total, 600))
                after = engine_calls(url) if name == "crossrank" else (0.0, 0.0)
                merged = (after[1] - before[1]) / max(1.0, after[0] - before[0])
                print(row(name, c, n, total, lat, wall, failures)
                      + f"  (engine one call {engine[n][1]:.1f}, merged {engine[n][2]:.1f} pairs/s)"
                      + (f"  {merged:.0f} pairs/engine call" if name == "crossrank" else ""), flush=True)


if __name__ == "__main__":
    run_script(main)

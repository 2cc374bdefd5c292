"""Soak the server: sustained concurrent load with mixed request sizes, on loopback, bounded in time.

    python scripts/soak.py                      # built-in MiniLM, concurrency 32, 5 minutes
    python scripts/soak.py --model DIR --duration 60 --concurrency 8

Starts ``crossrank serve`` in a subprocess on 127.0.0.1 (a free port), drives it with ``--concurrency``
clients for ``--duration`` seconds across the Cohere, TEI and plain routes with 1 to 60 documents of 3 to
300 words, samples the server's resident memory every second, and stops by itself. Prints one JSON line:
requests, errors (any status but 200), p50/p99 latency, RSS after warm-up and at the end. Exit code 1 when
there was any error or resident memory grew more than ``--max-growth`` (10%) after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from crossrank.server import launch

WORDS = ("heat transfer boundary layer wing lift drag flow pressure supersonic slab composite library "
         "retrieval index query document relevance medicine patient clinical news article election "
         "crocs clog kids shoe running trail").split()


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children (the server is one process; this is robust anyway)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def request(rng: random.Random) -> tuple[str, dict]:
    n = rng.choice([1, 5, 20, 60])
    docs = [" ".join(rng.choices(WORDS, k=rng.randint(3, 300))) for _ in range(n)]
    query = " ".join(rng.choices(WORDS, k=rng.randint(1, 12)))
    route = rng.choice(["/v1/rerank", "/rerank", "/score"])
    if route == "/v1/rerank":
        return route, {"query": query, "documents": docs, "top_n": min(n, 10)}
    if route == "/rerank":
        return route, {"query": query, "texts": docs}
    return route, {"query": query, "chunks": docs}


async def drive(url: str, concurrency: int, until: float, seed: int,
                done_at: dict[int, list[float]] | None = None) -> tuple[list[float], dict[int, int]]:
    """Run ``concurrency`` clients until ``until``; ``done_at`` collects each client's answer times (monotonic)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker(i: int) -> None:
            rng = random.Random(seed * 1000 + i)
            while time.monotonic() < until:
                route, body = request(rng)
                t0 = time.perf_counter()
                try:
                    status = (await client.post(route, json=body)).status_code
                except httpx.HTTPError:
                    status = 0  # a connection error counts as an error
                latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1
                if done_at is not None:
                    done_at.setdefault(i, []).append(time.monotonic())

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return latencies, statuses


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm-l6-untrained", help="model served (built-in, dir, hub id)")
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of load after warm-up")
    ap.add_argument("--warmup", type=float, default=30.0,
                    help="seconds of load before the memory baseline (at least until every client has had two "
                         "answers, so every request shape has been seen)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-growth", type=float, default=0.10, help="allowed RSS growth after warm-up")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "crossrank.yaml"
        config.write_text(json.dumps({"models": {"soak": {"model": args.model}},
                                      "server": {"max_concurrent_requests": args.concurrency * 2,
                                                 "request_timeout_s": 120}}))
        try:
            server = launch.start(["--config", str(config), "--log-level", "warning"], log=Path(tmp) / "serve.log")
        except launch.ServerStartError as exc:
            print(exc, file=sys.stderr)
            return 1
        proc, url = server.proc, server.url
        try:
            samples: list[tuple[float, int]] = []
            done_at: dict[int, list[float]] = {}
            stop = False

            async def sample() -> None:
                while not stop:
                    samples.append((time.monotonic(), rss_bytes(proc.pid)))
                    await asyncio.sleep(1.0)

            async def run() -> tuple[list[float], dict[int, int]]:
                nonlocal stop
                sampler = asyncio.create_task(sample())
                start = time.monotonic()
                # The measured period starts when the warm-up is over: the time given, and at least two answers
                # per client. Under heavy load one request can take longer than the whole warm-up time.
                result = await drive(url, args.concurrency, start + args.warmup + args.duration, args.seed, done_at)
                stop = True
                await sampler
                return result

            t0 = time.monotonic()
            latencies, statuses = asyncio.run(run())
            warm_end = t0 + args.warmup
            if len(done_at) == args.concurrency and all(len(times) >= 2 for times in done_at.values()):
                warm_end = max(warm_end, max(times[1] for times in done_at.values()))  # every client's 2nd answer
            warm = [(t, r) for t, r in samples if t >= warm_end] or samples[-1:]
            baseline, final = warm[0][1], warm[-1][1]
            middle = warm[len(warm) // 2][1]
            growth = (final - baseline) / baseline if baseline else 0.0
            errors = sum(n for s, n in statuses.items() if s != 200)
            lat = np.array(latencies) * 1000
            report = {"requests": len(latencies), "errors": errors,
                      "statuses": {str(k): v for k, v in statuses.items()},
                      "concurrency": args.concurrency, "seconds": round(time.monotonic() - t0, 1),
                      "p50_ms": round(float(np.percentile(lat, 50)), 1),
                      "p99_ms": round(float(np.percentile(lat, 99)), 1),
                      "warmup_s": round(warm_end - t0, 1), "rss_after_warmup_mb": round(baseline / 2**20, 1),
                      "rss_middle_mb": round(middle / 2**20, 1), "rss_end_mb": round(final / 2**20, 1),
                      "rss_growth": round(growth, 4), "server_alive": proc.poll() is None}
            print(json.dumps(report))
            return 0 if errors == 0 and growth <= args.max_growth and report["server_alive"] else 1
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())

"""Offline batch scoring throughput: pairs/s with 1 and 2 workers, local process pool and Ray Data.

    HF_HUB_OFFLINE=1 python benchmarks/batch.py [--rows 200] [--candidates 20] [--model M]

Rows are Cranfield queries with 20 Cranfield abstracts each (../shared/data), scored by the built-in
MiniLM-L6 unless --model is given. Each worker gets one core (``CROSSRANK_THREADS`` = workers), so
"2 workers vs 1" is the scale-out figure whose ideal is 2.00x; one worker with every core's threads is
printed for reference (what a single process gets from the same cores through intra-op threads).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from crossrank.bench import count, run_script

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cranfield"


def make_rows(n: int, candidates: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    docs = [json.loads(line)["text"] for line in (DATA / "corpus.jsonl").open()]
    queries = [json.loads(line)["text"] for line in (DATA / "queries.jsonl").open()]
    return [{"id": i, "query": queries[i % len(queries)], "candidates": rng.sample(docs, candidates)}
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=count, default=200)
    ap.add_argument("--candidates", type=count, default=20)
    ap.add_argument("--part-rows", type=count, default=10)
    ap.add_argument("--model", default=None)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()

    from crossrank import CrossEncoder
    from crossrank.batch import score_file
    from crossrank.batch.files import write_rows

    CrossEncoder(args.model)  # build/export the model once, outside the timings
    rows = make_rows(args.rows, args.candidates)
    pairs = args.rows * args.candidates
    cores = os.cpu_count() or 1
    # (engine, workers, threads per worker, on ray)
    runs = [("local", 1, 1, False), ("local", 2, 1, False), ("local", 1, cores, False)]
    if not args.no_ray:
        import ray

        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        runs += [("ray", 1, 1, True), ("ray", 2, 1, True)]
    print(f"{args.rows} rows x {args.candidates} candidates = {pairs} pairs; {cores} cores; model "
          f"{args.model or 'built-in MiniLM-L6'}")
    print(f"{'engine':<8}{'workers':>8}{'threads':>8}{'seconds':>10}{'pairs/s':>10}{'pairs/s/core':>14}"
          f"{'vs 1x1':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        write_rows(src, rows)
        base: dict[str, float] = {}
        for engine, workers, threads, on_ray in runs:
            out = Path(tmp) / f"{engine}-{workers}-{threads}.jsonl"
            os.environ["CROSSRANK_THREADS"] = str(workers * threads)  # split evenly: `threads` per worker
            t0 = time.perf_counter()
            score_file(src, out, model=args.model, workers=workers, part_rows=args.part_rows, ray=on_ray,
                       progress=False)
            secs = time.perf_counter() - t0
            rate = pairs / secs
            base.setdefault(engine, rate)
            used = workers * threads
            print(f"{engine:<8}{workers:>8}{threads:>8}{secs:>10.1f}{rate:>10.1f}{rate / used:>14.1f}"
                  f"{rate / base[engine]:>8.2f}x")


if __name__ == "__main__":
    run_script(main)

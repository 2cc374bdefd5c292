"""Offline batch scoring throughput: pairs/s with 1 and 2 workers, local process pool and Ray Data.

    HF_HUB_OFFLINE=1 python benchmarks/batch.py [--rows 200] [--candidates 20] [--model M]

Rows are Cranfield queries with 20 Cranfield abstracts each (../shared/data), scored by the built-in
MiniLM-L6 unless --model is given. The ideal for 2 workers is 2x one worker's pairs/s *per core*: on a
2-core machine a single worker already uses both cores through ONNX Runtime's threads, so the figure
to read is how close 2 single-threaded workers come to 1 two-threaded one (scaling overhead), and
per-core throughput (what N cores of a cluster would sustain).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cranfield"


def make_rows(n: int, candidates: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    docs = [json.loads(line)["text"] for line in (DATA / "corpus.jsonl").open()]
    queries = [json.loads(line)["text"] for line in (DATA / "queries.jsonl").open()]
    return [{"id": i, "query": queries[i % len(queries)], "candidates": rng.sample(docs, candidates)}
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--part-rows", type=int, default=10)
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
    runs = [("local", 1, False), ("local", 2, False)]
    if not args.no_ray:
        import ray

        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        runs += [("ray", 1, True), ("ray", 2, True)]
    print(f"{args.rows} rows x {args.candidates} candidates = {pairs} pairs; {cores} cores; model "
          f"{args.model or 'built-in MiniLM-L6'}")
    print(f"{'engine':<8}{'workers':>8}{'seconds':>10}{'pairs/s':>10}{'pairs/s/core':>14}{'vs 1 worker':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        write_rows(src, rows)
        base: dict[str, float] = {}
        for engine, workers, on_ray in runs:
            out = Path(tmp) / f"{engine}-{workers}.jsonl"
            t0 = time.perf_counter()
            score_file(src, out, model=args.model, workers=workers, part_rows=args.part_rows, ray=on_ray,
                       progress=False)
            secs = time.perf_counter() - t0
            rate = pairs / secs
            base.setdefault(engine, rate)
            print(f"{engine:<8}{workers:>8}{secs:>10.1f}{rate:>10.0f}{rate / cores:>14.0f}"
                  f"{rate / base[engine]:>12.2f}x")


if __name__ == "__main__":
    main()

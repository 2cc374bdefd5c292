"""Does int8 keep the ranking? fp32 vs dynamic int8 of the same export, on real candidate lists.

    HF_HUB_OFFLINE=1 python benchmarks/int8_agreement.py --model DIR [--collection cranfield] [--queries 100]

For each judged query of a ../shared/data collection, the hybrid's top ``--window`` candidates are scored
by the fp32 and the int8 graph of ``--model``; prints the mean per-query Spearman correlation, the mean
overlap of the two top-10s, how often the top-1 agrees, the max |Δ| of the scores, and both NDCG@10s.
A random-head model (the built-in) has almost no score spread, so use a trained one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from crossrank.bench import count, run_script

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--collection", default="cranfield")
    ap.add_argument("--queries", type=count, default=100)
    ap.add_argument("--window", type=count, default=20)
    args = ap.parse_args()

    from scipy.stats import spearmanr

    from crossrank import CrossEncoder
    from crossrank.eval import evaluate, load_collection
    from crossrank.eval.runner import index_for
    from crossrank.retrieval import build_pipeline

    collection = load_collection(DATA / args.collection)
    pipeline = build_pipeline(index_for(collection))
    # Raw scores (logits): the activation a model declares (a sigmoid, a calibration) would squash the
    # deltas differently per model; the rank statistics are the same either way.
    fp32 = CrossEncoder(args.model, activation="raw")
    int8 = CrossEncoder(args.model, quantize="int8", activation="raw")
    rhos, overlaps, top1, deltas = [], [], [], []
    runs: dict[str, dict[str, dict[str, float]]] = {"fp32": {}, "int8": {}}
    secs = {"fp32": 0.0, "int8": 0.0}
    for qid, text in list(collection.queries.items())[: args.queries]:
        hits = pipeline(text, top_k=args.window, window=0).hits
        docs = [" ".join(str(h.document.get(f) or "") for f in ("title", "text")) for h in hits]
        scores = {}
        for name, ce in (("fp32", fp32), ("int8", int8)):
            t0 = time.perf_counter()
            scores[name] = ce.score([(text, d) for d in docs])
            secs[name] += time.perf_counter() - t0
            runs[name][qid] = {h.id: float(s) for h, s in zip(hits, scores[name], strict=True)}
        a, b = scores["fp32"], scores["int8"]
        rhos.append(spearmanr(a, b).statistic)
        k = min(10, len(a))
        overlaps.append(len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k)
        top1.append(int(np.argmax(a) == np.argmax(b)))
        deltas.append(float(np.max(np.abs(a - b))))
    n = len(rhos)
    print(f"{args.collection}: {n} queries x top {args.window} candidates, model {args.model}")
    print(f"Spearman fp32 vs int8: mean {np.mean(rhos):.4f}, min {np.min(rhos):.4f}")
    print(f"top-{min(10, args.window)} overlap: mean {np.mean(overlaps):.3f}; same top-1: {np.mean(top1):.3f}; "
          f"max |delta| {np.max(deltas):.4f} (raw scores)")
    for name in ("fp32", "int8"):
        qrels = {q: collection.qrels[q] for q in runs[name]}  # only the queries scored here
        ndcg = evaluate(runs[name], qrels)["ndcg@10"]
        print(f"{name}: ndcg@10 of the rerank {ndcg:.4f}; scoring {secs[name]:.1f} s")


if __name__ == "__main__":
    run_script(main)

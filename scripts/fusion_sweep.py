"""Run: HF_HUB_OFFLINE=1 python scripts/fusion_sweep.py --model DIR [--data ../shared/data] [--window 20]

Design 2 of docs/quality.md: how much of a cross-encoder to mix into the hybrid first stage, chosen
leave-one-collection-out. For every collection, the hybrid (BM25 + dense, RRF) top ``window`` is scored
once by the cross-encoder (cached in ``--cache``), then re-ranked by crossrank's own
:class:`~crossrank.retrieval.FusedRanker` (``1/(k + hybrid rank) + w/(k + cross-encoder rank)``) for
each weight ``w`` in the grid, through the same pipeline and ir-measures code as ``crossrank eval``.
The weight reported for a collection is the one that maximised the mean relative NDCG@10 change over
the *other five*: the held-out collection's labels never choose it.

The cross-encoder must not have been trained on any of these collections' judged queries.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crossrank.eval.collection import load_collection
from crossrank.eval.runner import index_for, parse_method, run_method
from crossrank.retrieval import FusedRanker, LocalRanker
from crossrank.retrieval.rankers import Ranking

GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)


class MemoRanker:
    """A local ranker whose scores are computed once per (query, text) and kept on disk."""

    name = "rerank"

    def __init__(self, inner: LocalRanker, path: Path) -> None:
        self.inner, self.path = inner, path
        self.memo: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def rank(self, query: str, texts: Sequence[str]) -> Ranking:
        keys = [json.dumps([query, t]) for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in self.memo]
        if missing:
            fresh = self.inner.rank(query, [texts[i] for i in missing])
            scores = fresh.stages[self.inner.name]
            for i, s in zip(missing, scores.tolist(), strict=True):
                self.memo[keys[i]] = s
        scores = np.array([self.memo[k] for k in keys], dtype=np.float32)
        order = np.argsort(-scores, kind="stable")
        return Ranking(order=order, scores=scores[order], stages={self.name: scores})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.memo))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--model", required=True, help="the cross-encoder (dir, export, hub id)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/crossrank-fusion-sweep"))
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()

    ranker = LocalRanker(args.model)
    names = sorted(p.name for p in args.data.iterdir() if (p / "qrels").is_dir())
    ndcg: dict[str, dict[str, float]] = {}
    for name in names:
        collection = load_collection(args.data / name)
        index = index_for(collection, dense_windows=1)  # the cut-documents hybrid design 2 was measured on
        memo = MemoRanker(ranker, args.cache / f"{Path(args.model).name}-{name}-w{args.window}.json")
        row = {"hybrid": run_method(index, collection, parse_method("hybrid"), window=args.window).measures["ndcg@10"],
               "rerank": run_method(index, collection, parse_method("hybrid+rerank"), window=args.window,
                                    ranker=memo).measures["ndcg@10"]}
        memo.save()
        for w in GRID:
            row[f"w={w}"] = run_method(index, collection, parse_method("hybrid+rerank"), window=args.window,
                                       ranker=FusedRanker(memo, weight=w)).measures["ndcg@10"]
        ndcg[name] = row
        print(name, " ".join(f"{k} {v:.4f}" for k, v in row.items()), file=sys.stderr, flush=True)

    def gain(name: str, key: str) -> float:
        return ndcg[name][key] / ndcg[name]["hybrid"] - 1

    print(f"{'collection':12} {'hybrid':>8} {'rerank':>8} {'w (LOO)':>8} {'fused':>8} {'vs hybrid':>10}")
    out = []
    for held in names:
        others = [n for n in names if n != held]
        best = max(GRID, key=lambda w: float(np.mean([gain(n, f"w={w}") for n in others])))
        row = ndcg[held]
        out.append({"collection": held, "hybrid": row["hybrid"], "rerank": row["rerank"], "weight": best,
                    "fused": row[f"w={best}"], "relative": gain(held, f"w={best}")})
        print(f"{held:12} {row['hybrid']:8.4f} {row['rerank']:8.4f} {best:8.1f} {row[f'w={best}']:8.4f} "
              f"{gain(held, f'w={best}'):+10.1%}")
    if args.json:
        args.json.write_text(json.dumps({"per_weight": ndcg, "leave_one_out": out}, indent=1))


if __name__ == "__main__":
    main()

"""Run: HF_HUB_OFFLINE=1 python scripts/finetune_loo.py --base models/distill-v1 --out models/loo

The second half of design 1 in docs/quality.md, leave one collection out: start from the label-free
distilled cross-encoder (``--base``), fine-tune it on the judgments of five collections with a low
learning rate while keeping the distillation loss (the hybrid's ranking as teacher, on the judged groups
and on pseudo-query groups from all six corpora — corpora only, the held-out collection's labels are
never read), then evaluate on the sixth: hybrid, hybrid + rerank, and hybrid + rerank fused with the
hybrid's order. Each fold is ``crossrank train`` then ``crossrank eval``, run as subprocesses exactly as a
user would; a fold whose ``eval.json`` exists is not run again, so an interrupted sweep resumes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

COLLECTIONS = ("adi", "cisi", "cranfield", "lisa", "med", "time")


def crossrank(*args: str) -> list[str]:
    return [sys.executable, "-m", "crossrank.cli.app", *args]


def fold(held: str, data: Path, out: Path, args: argparse.Namespace) -> dict:
    """Train without ``held``'s judgments, evaluate on them; returns eval's JSON for the fold."""
    model = out / held
    result = model / "eval.json"
    if result.is_file():
        return json.loads(result.read_text())
    train = crossrank("train", "--out", str(model), "--base", args.base, "--loss", "listwise",
                      "--distill", str(args.distill), "--steps", str(args.steps), "--groups-per-step", "4",
                      "--group-size", "8", "--lr", str(args.lr), "--max-length", "128", "--seed", "0",
                      "--checkpoint-every", str(args.steps), "--pseudo-count", str(args.pseudo_count))
    for name in COLLECTIONS:
        if name != held:
            train += ["--data", str(data / name)]
        train += ["--pseudo", str(data / name)]
    t0 = time.perf_counter()
    subprocess.run(train, check=True)
    trained = time.perf_counter() - t0
    run = subprocess.run(crossrank("eval", str(data / held), "--methods", "hybrid,hybrid+rerank,hybrid+rerank+fuse",
                                   "--model", str(model / "onnx"), "--window", str(args.window), "--json"),
                         check=True, capture_output=True, text=True)
    figures = {"train_seconds": round(trained), "eval": json.loads(run.stdout)}
    result.write_text(json.dumps(figures, indent=2))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--base", required=True, help="starting cross-encoder (label-free, e.g. distill-v1)")
    parser.add_argument("--out", type=Path, required=True, help="one model directory per held-out collection")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--distill", type=float, default=1.0)
    parser.add_argument("--pseudo-count", type=int, default=800)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--only", default=",".join(COLLECTIONS), help="comma-separated held-out collections")
    args = parser.parse_args()
    for held in args.only.split(","):
        figures = fold(held, args.data, args.out, args)
        print(json.dumps({"held_out": held, **figures}), flush=True)


if __name__ == "__main__":
    main()

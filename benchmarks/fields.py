"""How fast documents become the text each stage reads (Corpus.texts, join_fields, document_texts).

Run it against two checkouts to A/B a change to crossrank.engine.documents or retrieval.corpus:

    PYTHONPATH=/path/to/other/src python benchmarks/fields.py --label other
    python benchmarks/fields.py --label this
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from crossrank.bench import run_script

ROOT = Path(__file__).resolve().parents[1]


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "data" / "cranfield" / "corpus.jsonl")
    parser.add_argument("--label", default="this tree")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the corpus's own "documents without fields" note

    from crossrank.engine.documents import document_texts
    from crossrank.retrieval.corpus import Corpus, join_fields

    records = [json.loads(line) for line in args.corpus.open(encoding="utf-8")]
    corpus = Corpus.from_records(records, id_field="_id")
    docs, on = corpus.documents, ["title", "text"]
    texts = median_ms(lambda: corpus.texts(on), 9)
    joined = median_ms(lambda: [join_fields(d, on) for d in docs[:100]], 101)
    engine = median_ms(lambda: document_texts(docs[:100], on), 101)
    few = min(100, len(docs))
    print(f"{args.label}: Corpus.texts {len(docs)} docs {texts:.2f} ms; join_fields {few} docs {joined * 1000:.0f} us;"
          f" document_texts {few} dicts {engine * 1000:.0f} us")


if __name__ == "__main__":
    run_script(main)

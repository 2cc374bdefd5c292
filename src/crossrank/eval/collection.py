"""Read a judged collection in BEIR layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/{split}.tsv``.

Only the queries that have judgments in the split are kept: an unjudged query would count as a zero
for every method and drag all of them down alike, hiding real differences.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from crossrank.errors import InputError
from crossrank.jsonl import read_objects


@dataclass
class Collection:
    """A judged collection: documents by id, judged queries by id, and graded qrels ``{qid: {docid: gain}}``."""

    name: str
    path: Path
    corpus: dict[str, dict]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]] = field(repr=False)

    @property
    def corpus_path(self) -> Path:
        return self.path / "corpus.jsonl"


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise InputError(f"{path} not found: a BEIR-layout collection needs corpus.jsonl and queries.jsonl")
    return read_objects(path, required="_id")


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id<TAB>corpus-id<TAB>score`` with a header line; gains kept as graded integers."""
    if not path.is_file():
        raise InputError(f"{path} not found: qrels/<split>.tsv is required to evaluate")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for n, row in enumerate(reader, 1):
            if not row or (n == 1 and row[0].strip().lower() in {"query-id", "query_id", "qid"}):
                continue
            if len(row) < 3:
                raise InputError(f"{path}:{n}: expected query-id, corpus-id, score")
            try:
                gain = int(float(row[2]))
            except ValueError:
                raise InputError(f"{path}:{n}: score {row[2]!r} is not a number") from None
            qrels.setdefault(row[0].strip(), {})[row[1].strip()] = gain
    return qrels


def load_collection(path: str | Path, split: str = "test") -> Collection:
    """Load a BEIR-layout directory; queries without judgments in ``split`` are dropped."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root} is not a directory (expected a BEIR-layout collection)")
    qrels = read_qrels(root / "qrels" / f"{split}.tsv")
    corpus = {str(row["_id"]): row for row in _read_jsonl(root / "corpus.jsonl")}
    queries = {str(row["_id"]): str(row.get("text", "")) for row in _read_jsonl(root / "queries.jsonl")}
    judged = {qid: queries[qid] for qid in qrels if qid in queries and any(g > 0 for g in qrels[qid].values())}
    if not judged:
        raise InputError(f"{root}: no query in queries.jsonl has a positive judgment in qrels/{split}.tsv")
    return Collection(name=root.name, path=root, corpus=corpus, queries=judged,
                      qrels={qid: qrels[qid] for qid in judged})

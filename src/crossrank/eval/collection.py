"""Read a judged collection in BEIR layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/{split}.tsv``.

Only the queries that have a positive judgment of a document in the corpus are kept: any other query
would count as a zero for every method and drag all of them down alike, hiding real differences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from crossrank.errors import InputError
from crossrank.jsonl import read_objects

T = TypeVar("T")


@dataclass
class Collection:
    """A judged collection: documents by id, judged queries by id, and graded qrels ``{qid: {docid: gain}}``."""

    name: str
    path: Path
    corpus: dict[str, dict]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]] = field(repr=False)
    notes: list[str] = field(default_factory=list, repr=False)  # what loading left out, for the user

    @property
    def corpus_path(self) -> Path:
        return self.path / "corpus.jsonl"


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise InputError(f"{path} not found: a BEIR-layout collection needs corpus.jsonl and queries.jsonl")
    return read_objects(path, required="_id")


def undecodable(line: str) -> bool:
    """Whether a line read with ``errors="surrogateescape"`` held bytes that are not UTF-8: ids made of them
    match nothing, and pytrec_eval crashes the process on them."""
    return not line.isascii() and any("\udc80" <= c <= "\udcff" for c in line)


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id<TAB>corpus-id<TAB>score`` (BEIR), an optional header line; gains kept as graded integers.

    Strict on purpose: TREC's four-column qrels (``qid iter docid rel``) read as BEIR would take the
    iteration column for the document and every metric would be a silent 0, so they are refused.
    """
    if not path.is_file():
        raise InputError(f"{path} not found: qrels/<split>.tsv is required to evaluate")
    qrels: dict[str, dict[str, int]] = {}
    seen_data = False
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as fh:
        for n, line in enumerate(fh, 1):
            if undecodable(line):
                raise InputError(f"{path}:{n}: not UTF-8 text")
            row = [field.strip() for field in line.rstrip("\r\n").split("\t")]
            if not any(row):
                continue
            if not seen_data and row[0].lower() in {"query-id", "query_id", "qid"}:
                seen_data = True
                continue
            seen_data = True
            if len(row) != 3:
                raise InputError(f"{path}:{n}: expected 3 tab-separated columns (query-id, corpus-id, score), got "
                                 f"{len(row)}" + ("; TREC qrels (qid iter docid rel) need converting" if len(row) == 4
                                                   else ""))
            try:
                value = float(row[2])
            except ValueError:
                raise InputError(f"{path}:{n}: score {row[2]!r} is not a number") from None
            if not value.is_integer():
                raise InputError(f"{path}:{n}: score {row[2]!r} is not an integer relevance grade")
            qrels.setdefault(row[0], {})[row[1]] = int(value)
    return qrels


def _by_id(path: Path, value: Callable[[dict[str, Any]], T]) -> dict[str, T]:
    """Rows by ``_id``; a repeated id is an error (the last row silently replaced the first, so a judged
    query could be evaluated as another text)."""
    out: dict[str, T] = {}
    for n, row in enumerate(_read_jsonl(path), 1):
        key = str(row["_id"])
        if key in out:
            raise InputError(f"{path}: duplicate _id {key!r} (record {n})")
        out[key] = value(row)
    return out


def load_collection(path: str | Path, split: str = "test") -> Collection:
    """Load a BEIR-layout directory; queries without judgments in ``split`` are dropped."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root} is not a directory (expected a BEIR-layout collection)")
    qrels = read_qrels(root / "qrels" / f"{split}.tsv")
    corpus = _by_id(root / "corpus.jsonl", lambda row: row)
    queries = _by_id(root / "queries.jsonl", lambda row: str(row.get("text") or ""))
    judged: dict[str, str] = {}
    unfindable = absent = unknown = 0
    for qid, grades in qrels.items():
        positives = [d for d, g in grades.items() if g > 0]
        if not positives:
            continue
        if qid not in queries:  # e.g. "01" in the qrels, "1" in queries.jsonl
            unknown += 1
            continue
        missing = sum(d not in corpus for d in positives)
        absent += missing
        if missing == len(positives):  # it scores 0 for every method: noise, not signal
            unfindable += 1
            continue
        if not queries[qid].strip():
            raise InputError(f"{root / 'queries.jsonl'}: judged query {qid!r} has no text")
        judged[qid] = queries[qid]
    if not judged:
        raise InputError(f"{root}: no query in queries.jsonl has a positive judgment in qrels/{split}.tsv"
                         + (" of a document in corpus.jsonl" if unfindable else ""))
    notes = []
    if unknown:
        notes.append(f"{unknown} judged queries of qrels/{split}.tsv are not in queries.jsonl and were left out")
    if absent:
        notes.append(f"{absent} positive judgments name documents not in corpus.jsonl"
                     + (f"; {unfindable} queries whose relevant documents are all missing were left out"
                        if unfindable else ""))
    return Collection(name=root.name, path=root, corpus=corpus, queries=judged,
                      qrels={qid: qrels[qid] for qid in judged}, notes=notes)

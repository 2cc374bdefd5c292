"""Lexical retrieval with bm25s: tokenization options, scoring, and the index on disk.

BM25 itself is bm25s's (Lucene variant by default); crossrank only chooses the tokenizer
(stopwords, Snowball stemming) and keeps the choice beside the index so queries are tokenized
exactly like the documents were.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.checks import number
from crossrank.errors import InputError, MissingDependencyError
from crossrank.retrieval.results import top_k


@dataclass(frozen=True)
class BM25Config:
    """How text becomes terms and how terms are weighted; saved with the index."""

    stopwords: str | None = "en"
    stemmer: str | None = "english"
    method: str = "lucene"
    k1: float = 1.5
    b: float = 0.75

    def __post_init__(self) -> None:
        if self.method not in BM25_METHODS:
            raise InputError(f"unknown BM25 method {self.method!r}; expected one of {BM25_METHODS}")
        number(self.k1, "BM25 k1", minimum=0)
        number(self.b, "BM25 b", minimum=0, maximum=1)


#: bm25s's scoring variants.
BM25_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError as exc:
        raise MissingDependencyError("BM25 retrieval", "retrieval", "bm25s") from exc
    return bm25s


def _stemmer(name: str | None) -> Any:
    if not name:
        return None
    try:
        import Stemmer
    except ImportError as exc:
        raise MissingDependencyError("stemming", "retrieval", "PyStemmer") from exc
    try:
        return Stemmer.Stemmer(name)
    except KeyError as exc:
        raise InputError(f"unknown stemmer language {name!r}; try english, french, german...") from exc


class BM25Index:
    """A bm25s index over a corpus's texts; ``search`` returns corpus positions with their scores."""

    def __init__(self, config: BM25Config | None = None) -> None:
        self.config = config or BM25Config()
        self._stem = _stemmer(self.config.stemmer)
        try:  # bm25s only looks the stopword list up when it tokenizes: check the name now
            self._tokenize(["crossrank"], as_ids=False, show_progress=False)
        except ValueError as exc:
            raise InputError(f"unknown stopwords {self.config.stopwords!r}: {exc}") from exc
        self._retriever: Any = None
        self.num_docs = 0

    def _tokenize(self, texts: list[str], *, as_ids: bool, show_progress: bool) -> Any:
        return _bm25s().tokenize(texts, lower=True, stopwords=self.config.stopwords or None, stemmer=self._stem,
                                 return_ids=as_ids, show_progress=show_progress)

    def build(self, texts: Sequence[str], *, show_progress: bool = False) -> BM25Index:
        bm25s = _bm25s()
        tokens = self._tokenize(list(texts), as_ids=True, show_progress=show_progress)
        if texts and not tokens.vocab:
            raise InputError(f"the {len(texts)} documents have no indexable terms (all empty or stopwords)")
        retriever = bm25s.BM25(method=self.config.method, k1=self.config.k1, b=self.config.b)
        retriever.index(tokens, show_progress=show_progress)
        self._retriever = retriever
        self.num_docs = len(texts)
        return self

    def query_terms(self, query: str) -> list[str]:
        """The terms a query becomes (after stopwords and stemming): what BM25 can match."""
        return self._tokenize([query], as_ids=False, show_progress=False)[0]

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (zeros where no term matches)."""
        if self._retriever is None:
            raise InputError("the BM25 index is empty: build() or load() it first")
        ids = self._retriever.get_tokens_ids(self.query_terms(query))
        if not ids:
            return np.zeros(self.num_docs, dtype=np.float32)
        return np.asarray(self._retriever.get_scores_from_ids(ids), dtype=np.float32)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions and scores of the best ``k`` documents with a positive score, best first.

        Ties are broken by corpus position so the same index always gives the same order.
        """
        scores = self.scores(query)
        positions = top_k(scores, k, np.flatnonzero(scores > 0))
        return positions, scores[positions]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._retriever.save(str(directory))
        (directory / "crossrank_bm25.json").write_text(
            json.dumps({"config": asdict(self.config), "num_docs": self.num_docs}, indent=2))

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        meta_file = directory / "crossrank_bm25.json"
        if not meta_file.exists():
            raise InputError(f"{directory} is not a crossrank BM25 index (no crossrank_bm25.json)")
        try:
            meta = json.loads(meta_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{meta_file} is not valid JSON: {exc}") from exc
        index = cls(BM25Config(**meta["config"]))
        index._retriever = _bm25s().BM25.load(str(directory), mmap=False)
        index.num_docs = int(meta["num_docs"])
        return index

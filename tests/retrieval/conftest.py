"""Retrieval fixtures: the bundled sample corpus indexed once per session with the real MiniLM bi-encoder."""

from __future__ import annotations

import pytest

from crossrank.retrieval import Index, LocalRanker, load_corpus, sample_corpus_path


@pytest.fixture(scope="session")
def sample_corpus():
    return load_corpus(sample_corpus_path())


@pytest.fixture(scope="session")
def sample_index(sample_corpus):
    """BM25 + exact dense index of the 65 sample movies (real bm25s, real all-MiniLM-L6-v2 weights)."""
    return Index.build(sample_corpus, ["title", "text"])


@pytest.fixture(scope="session")
def tiny_ranker(tiny_model):
    """The tiny BERT cross-encoder as a local ranker: real engine, scores without meaning, fast."""
    return LocalRanker(str(tiny_model))

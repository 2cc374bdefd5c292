"""BM25 through bm25s: tokenization options change what matches; the index survives a save/load."""

from __future__ import annotations

import numpy as np

from crossrank.retrieval import BM25Config, BM25Index

TEXTS = ["the bears live in the woods", "a family movie", "bear cubs and their mother", "the the the",
         "stock market report"]


def test_scores_equal_bm25s_on_the_same_tokens():
    """Our wrapper must not change BM25: compare with bm25s used directly, its own documented way."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    reference = bm25s.BM25()
    reference.index(bm25s.tokenize(TEXTS, stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
    query = bm25s.tokenize(["bear family"], stopwords="en", stemmer=stemmer, show_progress=False)
    docs, scores = reference.retrieve(query, k=3, show_progress=False)
    ours = BM25Index().build(TEXTS)
    positions, our_scores = ours.search("bear family", 3)
    assert positions.tolist() == docs[0].tolist()
    np.testing.assert_allclose(our_scores, scores[0], rtol=1e-6)


def test_stemming_matches_plural_to_singular():
    stemmed = BM25Index(BM25Config(stemmer="english")).build(TEXTS)
    plain = BM25Index(BM25Config(stemmer=None)).build(TEXTS)
    assert set(stemmed.search("bear", 5)[0].tolist()) == {0, 2}
    assert plain.search("bear", 5)[0].tolist() == [2]  # "bears" is another term without stemming
    assert plain.search("bears", 5)[0].tolist() == [0]


def test_stopwords_option():
    with_stop = BM25Index(BM25Config(stopwords="en")).build(TEXTS)
    without = BM25Index(BM25Config(stopwords=None)).build(TEXTS)
    assert with_stop.search("the", 5)[0].size == 0
    assert without.search("the", 5)[0][0] == 3


def test_save_and_load_give_identical_results(tmp_path):
    index = BM25Index(BM25Config(stopwords=None, stemmer="english", k1=1.2, b=0.5)).build(TEXTS)
    index.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25")
    assert loaded.config == index.config
    for query in ("bear", "family movie", "market", "nothing matches this"):
        a, b = index.search(query, 5), loaded.search(query, 5)
        assert a[0].tolist() == b[0].tolist()
        np.testing.assert_array_equal(a[1], b[1])


def test_ties_at_the_cut_go_to_the_lower_position_whatever_k():
    index = BM25Index().build(["bear cub"] * 300 + ["alien"])
    tops = {k: index.search("bear", k)[0].tolist() for k in (1, 5, 50)}
    assert tops == {1: [0], 5: [0, 1, 2, 3, 4], 50: list(range(50))}


def test_unknown_stopwords_and_a_corpus_with_nothing_to_index():
    import pytest

    from crossrank.errors import InputError

    with pytest.raises(InputError, match="stopwords 'xx'"):
        BM25Index(BM25Config(stopwords="xx"))
    with pytest.raises(InputError, match="no indexable terms"):
        BM25Index().build(["the", "", "of the"])

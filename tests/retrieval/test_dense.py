"""The ONNX bi-encoder against sentence-transformers, and the exact and HNSW vector indexes."""

from __future__ import annotations

import numpy as np
import pytest

from crossrank.retrieval import BiEncoder, VectorIndex

TEXTS = ["family movie about bears in the woods", "A bear cub gets lost in the forest",
         "the stock market crashed in 1929", "x", "a much longer text " * 40]


@pytest.mark.minilm
def test_embeddings_equal_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    from crossrank.engine.model import minilm_source_dir

    reference = SentenceTransformer(str(minilm_source_dir()), device="cpu").encode(TEXTS, batch_size=2)
    encoder = BiEncoder(batch_size=2)
    ours = encoder.embed(TEXTS)
    assert ours.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert encoder.backend == "onnx"
    calls = []
    encoder.embed(TEXTS, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (len(TEXTS), len(TEXTS)) and len(calls) == 3
    # One length-sorted batch under the token budget gives the same vectors as five small ones.
    np.testing.assert_allclose(BiEncoder().embed(TEXTS), reference, atol=1e-5)
    fallback = BiEncoder(backend="sentence-transformers", batch_size=2)
    np.testing.assert_allclose(fallback.embed(TEXTS), reference, atol=1e-6)


def test_unknown_backend():
    from crossrank.errors import InputError

    with pytest.raises(InputError, match="backend"):
        BiEncoder(backend="tensorflow")


def _random_unit(n, dim, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_exact_search_is_a_sorted_inner_product():
    vectors = _random_unit(500, 16)
    query = vectors[42] + 0.01
    positions, scores = VectorIndex(vectors, ann=False).search(query, 10)
    expected = np.argsort(-(vectors @ query))[:10]
    assert positions.tolist() == expected.tolist()
    np.testing.assert_allclose(scores, (vectors @ query)[expected], rtol=1e-6)


def test_hnsw_finds_what_exact_finds_and_survives_save_load(tmp_path):
    vectors = _random_unit(3000, 32, seed=1)
    exact = VectorIndex(vectors, ann=False)
    ann = VectorIndex(vectors, ann=True)
    recall = []
    for q in range(0, 3000, 150):
        truth = set(exact.search(vectors[q], 10)[0].tolist())
        got = ann.search(vectors[q], 10)
        recall.append(len(truth & set(got[0].tolist())) / 10)
        assert got[0][0] == q and got[1][0] == pytest.approx(1.0, abs=1e-5)
    assert np.mean(recall) >= 0.9
    ann.save(tmp_path / "dense")
    loaded = VectorIndex.load(tmp_path / "dense", ann=True)
    assert loaded.ann
    a, b = ann.search(vectors[7], 10), loaded.search(vectors[7], 10)
    assert a[0].tolist() == b[0].tolist()

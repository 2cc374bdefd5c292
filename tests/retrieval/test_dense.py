"""The ONNX bi-encoder against sentence-transformers, and the exact and HNSW vector indexes."""

from __future__ import annotations

import numpy as np
import pytest

from crossrank.errors import InputError
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
    recall, self_first = [], []
    for q in range(0, 3000, 150):
        truth = set(exact.search(vectors[q], 10)[0].tolist())
        got = ann.search(vectors[q], 10)
        recall.append(len(truth & set(got[0].tolist())) / 10)
        self_first.append(got[0][0] == q and got[1][0] == pytest.approx(1.0, abs=1e-5))
    # HNSW is approximate and usearch's multithreaded build is not deterministic: a rare graph misses a
    # query's own vector (seen once in many CI runs). A broken index misses most; a good one at most one.
    assert sum(self_first) >= len(self_first) - 1
    assert np.mean(recall) >= 0.9
    ann.save(tmp_path / "dense")
    loaded = VectorIndex.load(tmp_path / "dense", ann=True)
    assert loaded.ann
    a, b = ann.search(vectors[7], 10), loaded.search(vectors[7], 10)
    assert a[0].tolist() == b[0].tolist()


def test_windowed_vectors_score_a_document_by_its_best_window_exact_and_hnsw(tmp_path):
    vectors = _random_unit(1200, 16, seed=2)
    owner = np.repeat(np.arange(400), 3)  # 400 documents of 3 windows each, in document order
    exact = VectorIndex(vectors, ann=False, owner=owner)
    assert len(exact) == 400 and exact.windows == 3
    query = vectors[3 * 17 + 2] + 0.01  # the last window of document 17
    positions, scores = exact.search(query, 5)
    best = (vectors @ query).reshape(400, 3).max(axis=1)
    assert positions.tolist() == np.argsort(-best)[:5].tolist() and positions[0] == 17
    np.testing.assert_allclose(scores, best[positions], rtol=1e-6)
    np.testing.assert_array_equal(exact.document_vectors(np.array([17, 2])), vectors[[51, 6]])
    ann = VectorIndex(vectors, ann=True, owner=owner)
    got = ann.search(query, 5)
    assert got[0][0] == 17 and len(set(got[0].tolist())) == 5  # documents, each once
    ann.save(tmp_path / "dense")
    loaded = VectorIndex.load(tmp_path / "dense", ann=True)
    assert len(loaded) == 400 and loaded.search(query, 5)[0].tolist() == got[0].tolist()


def test_window_owners_must_follow_the_vectors():

    with pytest.raises(InputError, match="owner"):
        VectorIndex(_random_unit(4, 8), ann=False, owner=np.array([0, 1, 0, 1]))


@pytest.mark.minilm
def test_dense_windows_find_what_lies_past_the_encoders_length(tmp_path):
    from crossrank.retrieval import MMR, Dense, Index, Pipeline, load_corpus

    filler = " ".join(["The committee met on Tuesday to review the quarterly budget of the city council."] * 30)
    docs = [{"id": "long", "text": filler + " Sourdough bread rises because wild yeast ferments the dough."},
            {"id": "cake", "text": "Baking a chocolate cake needs flour, sugar, eggs and an oven."},
            {"id": "cars", "text": "Diesel engines compress air until the fuel ignites."}]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(__import__("json").dumps(d) for d in docs) + "\n")
    corpus = load_corpus(path)
    query = "how does sourdough bread ferment with wild yeast"
    plain = Index.build(corpus, ["text"], bm25=False, dense_windows=1)
    windowed = Index.build(corpus, ["text"], bm25=False, dense_windows=4, encoder=plain.encoder)
    # "auto" (the default) leaves a corpus of mostly short documents as it is: one vector each, the same ones.
    auto = Index.build(corpus, ["text"], bm25=False, encoder=plain.encoder)
    assert auto.vectors.owner is None
    np.testing.assert_array_equal(auto.vectors.vectors, plain.vectors.vectors)
    assert windowed.vectors.windows > 1 and len(windowed.vectors) == 3
    assert Pipeline(Dense(plain))(query, top_k=3).ids[0] != "long"  # cut off at 256 tokens
    assert Pipeline(Dense(windowed))(query, top_k=3).ids[0] == "long"
    # Short documents embed exactly as without windows.
    np.testing.assert_allclose(windowed.vectors.document_vectors(np.array([1, 2])),
                               plain.vectors.vectors[[1, 2]], atol=1e-6)
    windowed.save(tmp_path / "idx")
    loaded = Index.load(tmp_path / "idx")
    assert loaded.vectors.windows == windowed.vectors.windows
    assert (Pipeline(Dense(loaded)) + MMR(0.5))(query, top_k=3).ids[0] == "long"
    for bad in (0, "many", True, 2.5):
        with pytest.raises(InputError, match="dense_windows"):
            Index.build(corpus, ["text"], bm25=False, dense_windows=bad)


@pytest.mark.minilm
def test_auto_dense_windows_follow_the_corpus(tmp_path):
    from crossrank.retrieval import Dense, Index, Pipeline, load_corpus
    from crossrank.retrieval.dense import AUTO_WINDOWS

    filler = " ".join(["Minutes of the harbour board, read and approved without amendment."] * 40)
    docs = [{"id": "yeast", "text": filler + " Sourdough bread rises because wild yeast ferments the dough."},
            {"id": "tides", "text": filler + " Spring tides follow the new and the full moon."},
            {"id": "cars", "text": "Diesel engines compress air until the fuel ignites."}]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(__import__("json").dumps(d) for d in docs) + "\n")
    corpus = load_corpus(path)
    auto = Index.build(corpus, ["text"], bm25=False)  # two of three documents are long: windowed
    assert auto.vectors.owner is not None and 1 < auto.vectors.windows <= AUTO_WINDOWS
    assert Pipeline(Dense(auto))("how does sourdough bread ferment with wild yeast", top_k=1).ids == ["yeast"]
    assert Pipeline(Dense(auto))("when do spring tides happen", top_k=1).ids == ["tides"]
    cut = Index.build(corpus, ["text"], bm25=False, dense_windows="1", encoder=auto.encoder)  # CLI text works
    assert cut.vectors.owner is None and len(cut.vectors) == 3


def test_exact_search_ties_go_to_the_lower_position_whatever_k():
    vectors = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (40, 1))
    index = VectorIndex(vectors, ann=False)
    query = np.array([1.0, 0.0], dtype=np.float32)
    assert [index.search(query, k)[0].tolist() for k in (1, 3)] == [[0], [0, 1, 2]]


def test_a_local_bi_encoder_is_stored_as_an_absolute_path(tmp_path, monkeypatch):
    """An index built with `--dense-model models/bi` must be searchable from any directory."""
    import json
    import shutil

    from crossrank.engine.model import minilm_source_dir
    from crossrank.retrieval import Corpus, Index

    shutil.copytree(minilm_source_dir(), tmp_path / "models" / "bi")
    monkeypatch.chdir(tmp_path)
    corpus = Corpus.from_records([{"id": "1", "text": "bears in the woods"}, {"id": "2", "text": "stock market"}])
    Index.build(corpus, ["text"], bm25=False, dense="models/bi").save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert json.dumps(manifest).count(str(tmp_path / "models" / "bi")) == 1
    monkeypatch.chdir("/")
    loaded = Index.load(tmp_path / "idx")
    assert loaded.embed_query("bears").shape == (384,)


def test_a_graph_of_other_vectors_is_refused(tmp_path):
    """An HNSW graph is checked against its vectors: one copied from another index answered with its
    own 3 documents' ids and scores."""
    VectorIndex(_random_unit(65, 16, seed=3), ann=True).save(tmp_path / "big")
    VectorIndex(_random_unit(3, 16, seed=4), ann=True).save(tmp_path / "small")
    (tmp_path / "big" / "hnsw.usearch").write_bytes((tmp_path / "small" / "hnsw.usearch").read_bytes())
    with pytest.raises(InputError, match="3 vectors of 16 dimensions, vectors.npy 65"):
        VectorIndex.load(tmp_path / "big", ann=True)


@pytest.mark.minilm
def test_a_corpus_is_tokenized_in_slices_with_the_same_vectors(monkeypatch):
    """Embedding a corpus holds one slice's tokenizer Encodings at a time; the vectors, the windows and
    the "auto" decision (taken over the whole corpus, not per slice) are the same as in one piece."""
    from crossrank.engine import tokenize

    encoder = BiEncoder()
    texts = [*TEXTS, "tides " * 400, "yeast " * 300, "a short one"]
    whole = [encoder.embed(texts), *encoder.embed_documents(texts), *encoder.embed_windows(texts, max_windows=3)]
    monkeypatch.setattr(tokenize, "ENCODE_SLICE", 2)
    sliced = [encoder.embed(texts), *encoder.embed_documents(texts), *encoder.embed_windows(texts, max_windows=3)]
    assert whole[2] is None and sliced[2] is None  # 3 of 8 long: below the share that windows a corpus
    for a, b in zip(whole, sliced, strict=True):
        if a is not None:
            np.testing.assert_allclose(a, b, atol=1e-6)
    long = [*texts, *(["tides " * 400] * 8)]  # 10 of 16 long: windowed, though some slices hold no long text
    vectors, owner = encoder.embed_documents(long)
    monkeypatch.setattr(tokenize, "ENCODE_SLICE", 1000)
    vectors_whole, owner_whole = encoder.embed_documents(long)
    assert owner is not None and (owner == owner_whole).all()
    np.testing.assert_allclose(vectors, vectors_whole, atol=1e-6)

"""The composed pipeline on the sample corpus: real bm25s, real MiniLM vectors, the engine as ranker."""

from __future__ import annotations

import numpy as np
import pytest

from crossrank.errors import InputError
from crossrank.retrieval import (
    BM25,
    MMR,
    CascadeRanker,
    Corpus,
    Dense,
    Fusion,
    Index,
    LocalRanker,
    Pipeline,
    build_pipeline,
    reciprocal_rank_fusion,
    window_for_budget,
)

QUERY = "family movie about bears in the woods"


def test_hybrid_first_stage_finds_the_bear_movies(sample_index):
    result = Pipeline(BM25(sample_index) | Dense(sample_index))(QUERY, top_k=5)
    assert result.method == "bm25+dense/rrf"
    titles = [h.document["title"] for h in result]
    assert len(titles) == 5
    bear_movies = {"Camp Firefly", "Goldilocks Returns", "The Honey Trail", "Cub Scouts", "Backyard Wilderness",
                   "Forest Friends Forever", "Ranger Rosie", "Winter Den"}
    assert len(bear_movies & set(titles)) >= 4, titles


def test_every_hit_carries_each_stage_and_rrf_is_recomputable(sample_index, tiny_ranker):
    search = (BM25(sample_index) | Dense(sample_index)) + tiny_ranker
    result = search(QUERY, top_k=10, window=8)
    assert result.method == "bm25+dense/rrf+rerank" and result.window == 8 and result.fallback is None
    # The reranked window comes first, sorted by the ranker's score.
    head = [h for h in result if h.stage_rank("rerank") is not None]
    assert len(head) == 8 and [h.rank for h in head] == list(range(1, 9))
    assert [h.score for h in head] == sorted((h.score for h in head), reverse=True)
    for hit in result:
        assert hit.stage_rank("rrf") is not None
        assert hit.stage_rank("bm25") or hit.stage_rank("dense")
        bm, dn = hit.stage_rank("bm25"), hit.stage_rank("dense")
        expected = (1 / (60 + bm) if bm else 0) + (1 / (60 + dn) if dn else 0)
        assert hit.stage_score("rrf") == pytest.approx(expected)
    # The ranker's scores are the engine's scores for these (query, text) pairs.
    texts = [sample_index.corpus.text_at(h.position, ["title", "text"]) for h in head]
    np.testing.assert_allclose([h.score for h in head], tiny_ranker.encoder.score([(QUERY, t) for t in texts]),
                               rtol=1e-5)


def test_reranking_only_reorders_the_window(sample_index, tiny_ranker):
    first = Pipeline(BM25(sample_index) | Dense(sample_index))(QUERY, top_k=40)
    reranked = ((BM25(sample_index) | Dense(sample_index)) + tiny_ranker)(QUERY, top_k=40, window=5)
    assert set(reranked.ids[:5]) == set(first.ids[:5])
    assert reranked.ids[5:] == first.ids[5:]


def test_index_saved_and_loaded_searches_the_same(sample_index, tmp_path):
    sample_index.save(tmp_path / "movies.idx")
    loaded = Index.load(tmp_path / "movies.idx")
    assert len(loaded) == len(sample_index) and loaded.fields == ["title", "text"]
    a = build_pipeline(sample_index)(QUERY, top_k=10)
    b = build_pipeline(loaded)(QUERY, top_k=10)
    assert a.ids == b.ids
    assert [h.stage_score("rrf") for h in a] == pytest.approx([h.stage_score("rrf") for h in b])


def test_bytes_fields_read_the_same_after_save_and_load(tmp_path):
    """Saved with str(), a bytes field came back as the text "b'...'": another document than was indexed."""
    corpus = Corpus.from_records([{"id": "1", "text": b"crocs kids clog"}, {"id": "2", "text": "aircraft wing"}])
    index = Index.build(corpus, ["text"], dense=False)
    index.save(tmp_path / "idx")
    loaded = Index.load(tmp_path / "idx")
    assert loaded.corpus.text_at(0, ["text"]) == index.corpus.text_at(0, ["text"]) == "crocs kids clog"


def test_list_of_queries_weights_and_single_retriever(sample_index):
    search = build_pipeline(sample_index, weights={"bm25": 0.0})
    results = search([QUERY, "robots in space"], top_k=3)
    assert [r.query for r in results] == [QUERY, "robots in space"]
    # any iterable of queries (a generator, a numpy array), as the engine takes documents
    from_generator = search(q for q in (QUERY, "robots in space"))
    assert [r.ids for r in from_generator] == [r.ids for r in search([QUERY, "robots in space"])]
    assert search(np.array([QUERY]))[0].ids == search(QUERY).ids
    dense_only = Pipeline(Dense(sample_index))(QUERY, top_k=3)
    # bm25 weighted 0: the fused order is the dense order.
    assert results[0].ids == dense_only.ids
    assert Pipeline(BM25(sample_index))(QUERY, top_k=3).method == "bm25"


def test_mmr_reorders_within_the_candidates(sample_index):
    plain = build_pipeline(sample_index)(QUERY, top_k=10)
    diverse = build_pipeline(sample_index, mmr_lambda=0.3)(QUERY, top_k=10)
    assert diverse.method == "bm25+dense/rrf+mmr"
    assert diverse.ids[0] == plain.ids[0]  # the most relevant is always picked first
    assert diverse.ids != plain.ids
    assert [h.stage_rank("mmr") for h in diverse] == list(range(1, 11))
    same = build_pipeline(sample_index, mmr_lambda=1.0)(QUERY, top_k=10)
    assert same.ids == plain.ids


def test_min_score_and_top_k(sample_index, tiny_ranker):
    search = build_pipeline(sample_index, ranker=tiny_ranker)
    full = search(QUERY, top_k=10, window=10)
    threshold = full.hits[3].score
    kept = search(QUERY, top_k=10, window=10, min_score=threshold)
    assert kept.ids == full.ids[:4] and all(h.score >= threshold for h in kept)
    assert len(search(QUERY, top_k=2)) == 2


def test_budget_picks_a_window_that_fits_and_reports_it(sample_index, tiny_ranker):
    search = build_pipeline(sample_index, retrievers=["bm25"], ranker=tiny_ranker)
    tiny_ranker.calibrate()
    cost = tiny_ranker.cost
    assert cost.tokens_per_s > 0 and cost.overhead_s >= 0
    generous = search(QUERY, top_k=5, window=25, budget_ms=10_000)
    assert generous.window == min(25, len(sample_index.bm25.search(QUERY, 100)[0]))
    starved = search(QUERY, top_k=5, window=25, budget_ms=0.001)
    assert starved.window == 0 and starved.method == "bm25"  # nothing was reranked
    assert "left no time to rerank" in starved.fallback  # and it says so: min_score was not applied
    assert all(h.stage_rank("rerank") is None for h in starved)
    # In between: the chosen window is the largest whose predicted cost fits.
    texts = [sample_index.corpus.text_at(p, ["title", "text"]) for p in sample_index.bm25.search(QUERY, 25)[0]]
    predicted = tiny_ranker.estimate_s(QUERY, texts)
    assert np.all(np.diff(predicted) > 0)
    assert window_for_budget(tiny_ranker, QUERY, texts, float(predicted[4]) + 1e-9) == 5
    assert window_for_budget(tiny_ranker, QUERY, texts, float(predicted[4]) - 1e-9) == 4


def test_budget_clock_starts_after_the_models_load(sample_index, tiny_ranker, tmp_path):
    """A loaded index starts its bi-encoder on the first query (~0.3 s): inside a 50 ms budget that left
    no window, on exactly the first search of every CLI run."""
    sample_index.save(tmp_path / "idx")
    loaded = Index.load(tmp_path / "idx")
    assert loaded._encoder is None
    build_pipeline(loaded, ranker=tiny_ranker)(QUERY, top_k=5, window=5, budget_ms=10_000)
    assert loaded._encoder is not None and loaded._encoder._warmed  # loaded and run before the clock


def test_cascade_prunes_then_reranks(sample_index, tiny_model):
    small = LocalRanker(str(tiny_model), name="small")
    large = LocalRanker(str(tiny_model), max_length=16)
    search = build_pipeline(sample_index, ranker=CascadeRanker(small, large, keep=4))
    result = search(QUERY, top_k=10, window=12)
    assert result.method == "bm25+dense/rrf+cascade" and result.window == 12
    survivors = [h for h in result if h.stage_rank("rerank") is not None]
    pruned = [h for h in result if h.stage_rank("prune") is not None and h.stage_rank("rerank") is None]
    assert len(survivors) == 4 and len(pruned) == 6
    assert [h.rank for h in survivors] == [1, 2, 3, 4]
    assert {h.stage_rank("prune") for h in survivors} == {1, 2, 3, 4}


def test_fused_ranker_is_rrf_of_first_stage_and_rerank_ranks(sample_index, tiny_ranker):
    from crossrank.retrieval import FusedRanker

    window = 10
    plain = build_pipeline(sample_index, ranker=tiny_ranker)(QUERY, top_k=window, window=window)
    fused = build_pipeline(sample_index, ranker=FusedRanker(tiny_ranker, k=60))(QUERY, top_k=window, window=window)
    assert fused.method == "bm25+dense/rrf+rerank+rrf" and fused.window == window
    first = build_pipeline(sample_index)(QUERY, top_k=window)
    first_rank = {h.id: h.rank for h in first}
    rerank_rank = {h.id: h.rank for h in plain}
    assert set(first_rank) == set(rerank_rank) == {h.id for h in fused}
    want = {i: 1 / (60 + first_rank[i]) + 1 / (60 + rerank_rank[i]) for i in first_rank}
    for hit in fused:
        assert hit.score == pytest.approx(want[hit.id], rel=1e-6)
        assert hit.stage_rank("rerank") == rerank_rank[hit.id]
    assert [h.id for h in fused] == sorted(want, key=lambda i: (-want[i], first_rank[i]))
    with pytest.raises(InputError):
        FusedRanker(tiny_ranker, k=0)


def test_documents_stage_and_errors(sample_index, tiny_ranker, sample_corpus):
    richer = Corpus.from_records([{**d, "extra": i} for i, d in enumerate(sample_corpus.documents)])
    result = (BM25(sample_index) + richer)(QUERY, top_k=1)
    assert "extra" in result.hits[0].document
    with pytest.raises(InputError, match="already has a ranker"):
        (BM25(sample_index) + tiny_ranker) + tiny_ranker
    with pytest.raises(InputError, match="cannot add"):
        BM25(sample_index) + "ranker"
    with pytest.raises(InputError, match="top_k"):
        Pipeline(BM25(sample_index))(QUERY, top_k=-1)
    with pytest.raises(InputError, match="unknown retriever"):
        build_pipeline(sample_index, retrievers=["splade"])
    bm25_only = Index.build(sample_corpus, ["title"], dense=False)
    with pytest.raises(InputError, match="no dense part"):
        Dense(bm25_only)
    with pytest.raises(InputError, match="MMR needs"):
        BM25(bm25_only) + MMR(0.5)


def test_rrf_helper_is_what_the_pipeline_uses(sample_index):
    result = Pipeline(BM25(sample_index) | Dense(sample_index))(QUERY, top_k=100)
    bm25_pos, _ = sample_index.bm25.search(QUERY, 100)
    dense_pos, _ = sample_index.vectors.search(sample_index.embed_query(QUERY), 100)
    positions, _ = reciprocal_rank_fusion({"bm25": bm25_pos, "dense": dense_pos})
    assert [h.position for h in result] == positions[:100].tolist()


def test_rerank_fields_are_checked_and_a_bytes_query_is_one_query(sample_index, tiny_ranker):
    with pytest.raises(InputError, match="no field 'titel'"):
        build_pipeline(sample_index, ranker=tiny_ranker, on=["titel"])
    as_bytes = build_pipeline(sample_index)(QUERY.encode(), top_k=3)
    assert as_bytes.ids == build_pipeline(sample_index)(QUERY, top_k=3).ids


def test_options_of_the_wrong_type_or_nan_fail_where_given(sample_index, tiny_ranker):
    """Each was a TypeError deep in a search, or silent: min_score=nan kept nothing, k=nan reordered."""
    search = build_pipeline(sample_index, ranker=tiny_ranker)
    for kwargs in ({"min_score": float("nan")}, {"min_score": "0.5"}, {"budget_ms": float("nan")},
                   {"budget_ms": "5"}):
        with pytest.raises(InputError):
            search(QUERY, **kwargs)
    bm25, dense = BM25(sample_index), Dense(sample_index)
    for make in (lambda: MMR("0.5"), lambda: MMR(float("nan")),
                 lambda: CascadeRanker(tiny_ranker, tiny_ranker, keep=1.5),
                 lambda: Fusion([bm25, dense], k=float("nan")),
                 lambda: build_pipeline(sample_index, weights={"bm25": "x"}),
                 lambda: build_pipeline(sample_index, retrievers=["bm25"], weights={"dense": 2}),
                 lambda: build_pipeline(sample_index, retrievers=["bm25"], rrf_k=-1)):
        with pytest.raises(InputError):
            make()
    with pytest.raises(TypeError):
        bm25 | 5  # noqa: B018 - the operator is the test
    from crossrank.retrieval.bm25 import BM25Config

    with pytest.raises(InputError, match="BM25 method"):
        BM25Config(method="nope")


def test_one_field_name_is_that_field_everywhere(sample_index, sample_corpus, tiny_ranker):
    """on="title" was read as one field by the engine but as the characters t, i, t, l, e elsewhere."""
    as_str = Pipeline(BM25(sample_index), ranker=tiny_ranker, on="title")(QUERY, top_k=3)
    as_list = Pipeline(BM25(sample_index), ranker=tiny_ranker, on=["title"])(QUERY, top_k=3)
    assert as_str.ids == as_list.ids and [h.score for h in as_str] == [h.score for h in as_list]
    assert Index.build(sample_corpus, "title", dense=False).fields == ["title"]


def test_a_damaged_manifest_or_foreign_vectors_are_input_errors(sample_index, tmp_path):
    import json

    sample_index.save(tmp_path / "idx")
    manifest_file = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    for damaged in ([1], {k: v for k, v in manifest.items() if k != "id_field"},
                    {**manifest, "dense": {**manifest["dense"], "dim": 7}}):
        manifest_file.write_text(json.dumps(damaged))
        with pytest.raises(InputError):
            Index.load(tmp_path / "idx")
    manifest_file.write_text(json.dumps(manifest))
    (tmp_path / "idx" / "bm25" / "crossrank_bm25.json").write_text("{oops")
    with pytest.raises(InputError, match="not valid JSON"):
        Index.load(tmp_path / "idx")


def test_damaged_index_files_are_named(sample_index, tmp_path):
    sample_index.save(tmp_path / "idx")
    corpus_file = tmp_path / "idx" / "corpus.jsonl"
    lines = corpus_file.read_text().splitlines(keepends=True)
    corpus_file.write_text("".join(lines[:-1]))  # one record lost
    with pytest.raises(InputError, match="rebuild the index"):
        Index.load(tmp_path / "idx")
    corpus_file.write_text("".join(lines[:-1]) + "{not json\n")
    with pytest.raises(InputError, match=r"corpus.jsonl:\d+: not JSON"):
        Index.load(tmp_path / "idx")
    corpus_file.unlink()
    with pytest.raises(InputError, match="lacks corpus.jsonl"):
        Index.load(tmp_path / "idx")


def test_mmr_over_bm25_alone_embeds_no_query(sample_index, tmp_path):
    """MMR reads the first stage's scores as relevance: a BM25-only search must not load the bi-encoder
    to embed a query vector nobody reads."""
    fresh = Index.load(sample_index.save(tmp_path / "idx"))
    result = build_pipeline(fresh, retrievers=["bm25"], mmr_lambda=0.7)(QUERY, top_k=5)
    assert result.method == "bm25+mmr" and len(result) == 5
    assert fresh._encoder is None


def test_min_score_of_a_fused_ranker_reads_the_models_own_scores(sample_index, tiny_ranker):
    from crossrank.retrieval import FusedRanker

    search = build_pipeline(sample_index, ranker=FusedRanker(tiny_ranker))
    full = search(QUERY, top_k=10, window=10)
    own = sorted((h.stage_score("rerank") for h in full), reverse=True)
    kept = search(QUERY, top_k=10, window=10, min_score=own[3])
    assert len(kept) == 4 and all(h.stage_score("rerank") >= own[3] for h in kept)
    assert [h.id for h in kept] == [h.id for h in full if h.stage_score("rerank") >= own[3]]
    # the same through a cascade, whose own name ("cascade") is no stage: the gate is the model's scores
    cascade = build_pipeline(sample_index, ranker=FusedRanker(CascadeRanker(tiny_ranker, tiny_ranker, keep=6)))
    every = cascade(QUERY, top_k=10, window=10)
    scored = sorted((h.stage_score("rerank") for h in every if h.stage_score("rerank") is not None), reverse=True)
    gated = cascade(QUERY, top_k=10, window=10, min_score=scored[2])
    assert len(gated) == 3 and all(h.stage_score("rerank") >= scored[2] for h in gated)


def test_stage_lookup_finds_each_hit_or_none():
    from crossrank.retrieval.pipeline import Trace

    rng = np.random.default_rng(0)
    positions = rng.permutation(1000)[:300]
    scores = np.sort(rng.random(300))[::-1]
    hits = np.concatenate([positions[[5, 0, 299]], [100_000], rng.permutation(1000)[:50]])
    found = Trace(positions, scores).lookup(hits)
    for hit, at in zip(hits.tolist(), found, strict=True):
        where = np.flatnonzero(positions == hit)
        assert (at is None) == (len(where) == 0)
        if at is not None:
            assert at.rank == where[0] + 1 and at.score == scores[where[0]]
    assert Trace(positions, None).lookup(positions[:3])[2].score is None


def test_a_budget_deadline_pays_for_its_own_estimate(sample_index, tiny_ranker):
    import time

    texts = [sample_index.corpus.text_at(p, ["title", "text"]) for p in sample_index.bm25.search(QUERY, 25)[0]]
    assert window_for_budget(tiny_ranker, QUERY, texts, deadline=time.perf_counter()) == 0
    assert window_for_budget(tiny_ranker, QUERY, texts, deadline=time.perf_counter() + 60) == len(texts)
    with pytest.raises(InputError, match="exactly one"):
        window_for_budget(tiny_ranker, QUERY, texts, 1.0, deadline=time.perf_counter())


def test_an_index_saved_to_a_file_or_to_the_working_directory(sample_index, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        sample_index.save(tmp_path / "afile")
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    before = (tmp_path / "here").stat().st_ino
    saved = sample_index.save(".")
    assert saved == (tmp_path / "here").resolve() and len(Index.load(saved)) == len(sample_index)
    (tmp_path / "here" / "notes.txt").write_text("mine")
    sample_index.save(".")  # again, over itself: only the index's own entries are replaced
    assert (tmp_path / "here").stat().st_ino == before and (tmp_path / "here" / "notes.txt").read_text() == "mine"
    # a directory with a manifest.json of another kind (a browser extension, a web app) is not an index
    (tmp_path / "extension").mkdir()
    (tmp_path / "extension" / "manifest.json").write_text('{"manifest_version": 3}')
    (tmp_path / "extension" / "popup.js").write_text("x")
    with pytest.raises(InputError, match="not a crossrank index"):
        sample_index.save(tmp_path / "extension")
    assert (tmp_path / "extension" / "popup.js").exists()

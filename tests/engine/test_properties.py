"""Property tests of the engine: invariants that must hold for any input, not just the examples we thought of.

Each property is what a caller silently relies on: reordering documents reorders scores, duplicates score the
same, ``top_k`` is honoured, and how we batch or window a request never changes a score beyond float noise.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossrank import CrossEncoder, InputError
from tests.conftest import WORDS

TOL = 1e-5  # fp32 noise between differently padded batches; parity with transformers is checked elsewhere

words = st.sampled_from(WORDS + ["unknownword", "Ünïcödé", "数据", "🙂"])
texts = st.lists(words, min_size=1, max_size=40).map(" ".join)
doc_lists = st.lists(texts, min_size=1, max_size=12)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def ce(tiny_model) -> CrossEncoder:
    return CrossEncoder(str(tiny_model), backend="onnx", threads=1)


@pytest.fixture(scope="module")
def ce_small_batches(tiny_model) -> CrossEncoder:
    """Same model, batches forced to be tiny, so every request is split across many engine batches."""
    return CrossEncoder(str(tiny_model), backend="onnx", threads=1, max_batch_tokens=64, max_batch_size=2)


@SETTINGS
@given(query=texts, docs=doc_lists, seed=st.integers(0, 2**32 - 1))
def test_permuting_documents_permutes_scores(ce, query, docs, seed):
    perm = np.random.default_rng(seed).permutation(len(docs))
    scores, _ = ce.score_documents(query, docs)
    permuted, _ = ce.score_documents(query, [docs[i] for i in perm])
    np.testing.assert_allclose(permuted, scores[perm], atol=TOL)


@SETTINGS
@given(query=texts, docs=doc_lists)
def test_duplicates_score_identically(ce, query, docs):
    scores, stats = ce.score_documents(query, docs + docs)
    np.testing.assert_array_equal(scores[: len(docs)], scores[len(docs):])
    assert stats.unique_pairs <= len(docs)


@SETTINGS
@given(query=texts, docs=doc_lists, top_k=st.one_of(st.none(), st.integers(0, 20)))
def test_top_k_bounds_and_indices(ce, query, docs, top_k):
    ranked = ce.rank(query, docs, top_k=top_k)
    assert len(ranked) == (len(docs) if top_k is None else min(top_k, len(docs)))
    assert all(0 <= r.index < len(docs) and r.document == docs[r.index] for r in ranked)
    assert len({r.index for r in ranked}) == len(ranked)
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)


@SETTINGS
@given(query=texts, docs=doc_lists)
def test_batch_split_never_changes_scores(ce, ce_small_batches, query, docs):
    whole, stats = ce.score_documents(query, docs)
    split, split_stats = ce_small_batches.score_documents(query, docs)
    assert len(split_stats.batches) >= len(stats.batches)
    np.testing.assert_allclose(split, whole, atol=TOL)


known = st.sampled_from(WORDS)


@SETTINGS
@given(query=st.lists(known, min_size=1, max_size=5).map(" ".join),
       docs=st.lists(st.lists(known, min_size=1, max_size=20).map(" ".join), min_size=1, max_size=8))
def test_chunking_short_documents_is_a_no_op(tiny_model, ce, query, docs):
    """Pairs that fit one window (here at most 28 of 64 tokens) score the same with chunking on."""
    chunked = _chunked(tiny_model)
    np.testing.assert_allclose(chunked.score_documents(query, docs)[0], ce.score_documents(query, docs)[0],
                               atol=TOL)


_CHUNKED: dict = {}


def _chunked(path) -> CrossEncoder:
    if path not in _CHUNKED:
        _CHUNKED[path] = CrossEncoder(str(path), backend="onnx", threads=1, max_chunks_per_doc=4)
    return _CHUNKED[path]


@SETTINGS
@given(query=st.text(max_size=200), doc=st.one_of(st.text(max_size=2000), st.binary(max_size=200)))
def test_arbitrary_unicode_scores_or_raises_input_error(ce, query, doc):
    """Any string — control characters, lone surrogates, empty — gets a finite score or a clear InputError."""
    try:
        scores = ce.score([(query, doc)])
    except InputError:
        return
    assert scores.shape == (1,) and np.isfinite(scores).all()


@pytest.fixture(scope="module")
def byte_bpe(tmp_path_factory):
    """A byte-level BPE tokenizer (RoBERTa's kind): a CJK character or an emoji is several tokens that share
    one character offset, so a cut at a token boundary can fall inside a character."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([" ".join(WORDS)] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "<pad>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tok.save(str(path))
    return path


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.lists(st.sampled_from([*WORDS, "中文", "汉字", "😀", "日本語", "café"]), min_size=1, max_size=60),
       doc=st.lists(st.sampled_from([*WORDS, "中", "🎉"]), max_size=40),
       max_length=st.sampled_from([16, 48]), chunks=st.sampled_from([1, 3]), overlap=st.sampled_from([0, 5, 100]),
       side=st.sampled_from(["right", "left"]))
def test_queries_cut_inside_a_character_never_break_truncation(byte_bpe, query, doc, max_length, chunks, overlap,
                                                                side):
    """The cut query re-encoded one or two tokens longer than its room: a tokenizer error, a negative room,
    or a stride panic that killed a server's batcher thread."""
    from crossrank.engine.tokenize import PairTokenizer

    if side == "left" and chunks > 1:
        return
    for max_query_length in (None, 1):  # 1: a first character worth more tokens than the query may have
        tok = PairTokenizer(byte_bpe, max_length, max_query_length)
        enc = tok.encode([" ".join(query)], [" ".join(doc)], max_chunks=chunks, overlap=overlap,
                         truncation_side=side)
        assert (enc.lengths <= max_length).all() and enc.rows <= chunks

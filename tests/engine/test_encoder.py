"""The engine on a tiny BERT: parity with transformers, batching, chunking, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from crossrank import CrossEncoder, InputError, ModelLoadError
from tests.conftest import WORDS

DOCS = ["crocs kids clog", "running shoe for kids", "aircraft wing lift in a boundary layer flow",
        "the best red shoe", "", "crocs " * 200]


@pytest.fixture(scope="module")
def ce(tiny_model):
    return CrossEncoder(tiny_model, backend="onnx", activation="raw")


def reference(path, pairs, max_length=64, truncation_side="right"):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
    tok = AutoTokenizer.from_pretrained(str(path), truncation_side=truncation_side)
    enc = tok([q for q, _ in pairs], [d for _, d in pairs], padding=True, truncation="only_second",
              max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits[:, 0].numpy()


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_scores_equal_transformers(tiny_model, backend):
    ce = CrossEncoder(tiny_model, backend=backend, activation="raw")
    pairs = [("crocs", d) for d in DOCS] + [("aircraft wing", d) for d in DOCS]
    np.testing.assert_allclose(ce.score(pairs), reference(tiny_model, pairs), atol=1e-4)


def test_batching_and_dedupe_keep_order(ce):
    pairs = [("crocs", d) for d in DOCS] * 3
    whole = ce.score(pairs)
    ce_small = CrossEncoder(ce.model_path, activation="raw", max_batch_tokens=64, max_batch_size=2)
    np.testing.assert_allclose(ce_small.score(pairs), whole, atol=1e-5)
    np.testing.assert_allclose(whole[: len(DOCS)], whole[len(DOCS): 2 * len(DOCS)])


def test_rank_orders_and_limits(ce):
    ranked = ce.rank("crocs", DOCS, top_k=3)
    assert len(ranked) == 3
    scores = ce.score([("crocs", d) for d in DOCS])
    assert [r.index for r in ranked] == list(np.argsort(-scores, kind="stable")[:3])
    assert ranked[0].document == DOCS[ranked[0].index]
    assert ce.rank("crocs", []) == []


def test_dict_documents_with_on(ce):
    docs = [{"title": "crocs", "text": "kids clog"}, {"title": "wing", "text": "lift"}]
    by_fields = ce.rank("crocs", docs, on=["title", "text"])
    as_text = ce.score([("crocs", "crocs\nkids clog"), ("crocs", "wing\nlift")])
    assert pytest.approx(by_fields[0].score) == float(as_text.max())


def test_chunking_takes_best_window(ce):
    long_doc = "aircraft wing lift " * 40 + " crocs kids clog"
    plain = ce.score([("crocs", long_doc)])[0]
    chunked = ce.score([("crocs", long_doc)], max_chunks_per_doc=8)[0]
    assert chunked >= plain
    windows = ce.tokenizer.encode(["crocs"], [long_doc], max_chunks=8, overlap=8)
    assert windows.rows > 1 and (windows.lengths <= ce.max_length).all()


def test_huge_document_and_long_query(ce):
    huge = "word " * 200_000  # 1 MB
    assert np.isfinite(ce.score([("crocs", huge)])).all()
    assert np.isfinite(ce.score([("crocs " * 500, "clog")])).all()


def test_a_long_query_keeps_what_its_document_leaves_free(tiny_model):
    """A query past half the budget was cut to half even beside a two-word document; sentence-transformers
    (longest-first truncation) keeps the rest of it, and so does the engine now: the same tokens."""
    from transformers import AutoTokenizer

    long_query = " ".join(WORDS * 2)  # ~90 tokens: more than the tiny model's 64
    docs = ["crocs clog", "heat flow over a wing in a boundary layer"]
    ce = CrossEncoder(tiny_model, backend="onnx")
    ours = ce.tokenizer.encode([long_query] * 2, docs)
    hf = AutoTokenizer.from_pretrained(str(tiny_model))([long_query] * 2, docs, truncation="longest_first",
                                                        max_length=64)["input_ids"]
    for row, want in enumerate(hf):
        start = ours.offsets[row]
        assert ours.ids[start:start + ours.lengths[row]].tolist() == want
    # Beside a long document the query keeps half the budget, and the document fills the rest.
    enc = ce.tokenizer.encode([long_query], [" ".join(WORDS)])
    assert enc.lengths[0] == 64 and ce.score([(long_query, " ".join(WORDS))]).shape == (1,)


@pytest.mark.parametrize("bad", [None, 3, ["x"], b"\xff\xfe"])
def test_bad_documents_raise_input_error(ce, bad):
    with pytest.raises(InputError):
        ce.rank("crocs", ["fine", bad])


def test_bad_queries_raise_input_error(ce):
    # "\u200b" and "\x07" pass .strip() but hold no token: they scored as if there were no query at all
    for q in ["", "   ", None, 5, "\u200b", "\x07\ufeff"]:
        with pytest.raises(InputError):
            ce.rank(q, ["doc"])


def test_options_of_the_wrong_type_fail_where_given(ce, tiny_model):
    """Each was a TypeError deep inside scoring, or silently wrong (softmax over one label is 1.0 for all)."""
    for kwargs in ({"max_batch_size": 0}, {"max_batch_size": 1.5}, {"chunk_overlap": 2.5}, {"chunk_overlap": None},
                   {"activation": ""}):
        with pytest.raises(InputError):
            CrossEncoder(tiny_model, backend="onnx", **kwargs)
    with pytest.raises(InputError, match="one label"):
        ce.rank("crocs", ["a", "b"], activation="softmax")
    with pytest.raises(InputError, match="top_k"):
        ce.rank("crocs", ["a", "b"], top_k=True)
    assert [r.index for r in ce.rank("crocs", ["a", "crocs clog"], top_k=np.int64(1))] == \
        [r.index for r in ce.rank("crocs", ["a", "crocs clog"], top_k=1)]


def test_missing_and_odd_field_values_read_as_the_retrieval_index_reads_them(ce):
    """A NaN field (pandas' missing value) was the word "nan"; bytes in a list field were "b'...'"."""
    import math

    from crossrank.retrieval.corpus import join_fields

    with_nan = {"title": "crocs", "text": math.nan}
    assert ce.score_documents("crocs", [with_nan])[0][0] == ce.score_documents("crocs", [{"title": "crocs"}])[0][0]
    listed = {"text": [b"crocs", "clog", None]}
    assert ce.score_documents("crocs", [listed])[0][0] == ce.score_documents("crocs", ["crocs\nclog"])[0][0]
    assert join_fields(listed, ["text"]) == "crocs\nclog" and join_fields(with_nan, ["title", "text"]) == "crocs"
    assert ce.score_documents("crocs", [{"title": "crocs", "text": np.float32("nan")}])[0][0] == \
        ce.score_documents("crocs", [{"title": "crocs"}])[0][0]
    deep: list = []
    for _ in range(3000):
        deep = [deep]
    with pytest.raises(InputError, match="nested too deeply"):
        ce.score_documents("crocs", [{"text": deep}])
    doc = {"title": "crocs", "text": "clog"}
    by_keys = ce.score_documents("crocs", [doc], on=doc.keys())[0]
    assert by_keys[0] == ce.score_documents("crocs", [doc], on=["title", "text"])[0][0]
    with pytest.raises(InputError, match="set"):
        ce.score_documents("crocs", [doc], on={"title", "text"})  # no order: texts would vary run to run


def test_number_checks_refuse_what_floats_cannot_hold():
    from crossrank.checks import integer, number

    for bad in (10**400, float("nan"), float("inf"), "1", True, None):
        with pytest.raises(InputError):
            number(bad, "x")
    assert number(np.float32(0.5), "x", minimum=0, maximum=1) == 0.5 and integer(np.int64(3), "n") == 3


def test_lone_surrogates_are_replaced(ce):
    assert np.isfinite(ce.score([("crocs", "bad \udcff text")])).all()


def test_unknown_and_corrupt_models(tmp_path, tiny_model):
    with pytest.raises(ModelLoadError, match="no-such-dir"):
        CrossEncoder("./no-such-dir")
    with pytest.raises(ModelLoadError, match="not in the local"):
        CrossEncoder("nobody/no-such-model-xyz")
    broken = tmp_path / "broken"
    broken.mkdir()
    from crossrank.engine.export import export
    from crossrank.engine.model import resolve

    export(resolve(str(tiny_model)), broken)
    (broken / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ModelLoadError, match="model.onnx"):
        CrossEncoder(broken)


@pytest.mark.parametrize("name,why", [("a" * 300, "not a usable path"), (123, "not int"),
                                      (b"abc", "not bytes"), ("  ", "empty")])
def test_odd_model_names_are_load_errors(name, why):
    with pytest.raises(ModelLoadError, match=why):
        CrossEncoder(name)


@pytest.mark.parametrize("meta,why", [({"format": 1}, "num_labels"), ([1], "unknown format 'list'"),
                                      ("patch", "unknown activation")])
def test_a_damaged_crossrank_json_is_a_load_error(tiny_model, tmp_path, meta, why):
    import json

    from crossrank.engine.export import export
    from crossrank.engine.model import resolve

    out = tmp_path / "export"
    export(resolve(str(tiny_model)), out)
    if meta == "patch":
        meta = {**json.loads((out / "crossrank.json").read_text()), "activation": "gelu"}
    (out / "crossrank.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match=why):
        CrossEncoder(str(out))


@pytest.mark.parametrize("damage,why", [("none", "no tokenizer in"), ("empty", "cannot read"),
                                         ("special-only", "not this checkpoint's tokenizer")])
def test_a_checkpoint_without_a_usable_tokenizer_is_a_load_error(tiny_model, tmp_path, damage, why):
    """With neither tokenizer.json nor a vocabulary, transformers built a tokenizer of special tokens
    alone: the model loaded and scored every document the same ([UNK] for every word)."""
    import shutil

    from tokenizers import Tokenizer, models

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "tokenizer.json").unlink()
    if damage == "none":
        (broken / "vocab.txt").unlink()
    elif damage == "empty":
        (broken / "tokenizer.json").write_text("{}")
    else:
        Tokenizer(models.WordPiece({"[UNK]": 0, "[CLS]": 1, "[SEP]": 2}, unk_token="[UNK]")).save(
            str(broken / "tokenizer.json"))
    with pytest.raises(ModelLoadError, match=why):
        CrossEncoder(str(broken))
    assert damage != "none" or not (broken / "tokenizer.json").exists()  # nothing written into the checkpoint


def test_offline_with_part_of_a_hub_repo_cached_says_so(tmp_path, monkeypatch):
    """The local cache holds the repo's config but not its weights: offline, that is the cause to name."""
    import huggingface_hub.constants

    snapshot = tmp_path / "hub" / "models--org--partial" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set and its config or weights are not in the local"):
        CrossEncoder("org/partial")


def test_int8_export_keeps_ranking(tiny_model, tmp_path):
    from crossrank.engine.export import export
    from crossrank.engine.model import resolve

    out = export(resolve(str(tiny_model)), tmp_path / "exp", quantize="int8")
    fp32 = CrossEncoder(out.path, activation="raw").score([("crocs", d) for d in DOCS])
    int8 = CrossEncoder(out.path, quantize="int8", activation="raw").score([("crocs", d) for d in DOCS])
    assert np.abs(fp32 - int8).max() < 0.05


def test_activation_default_is_sigmoid_for_one_label(tiny_model):
    raw = CrossEncoder(tiny_model, activation="raw").score([("crocs", "clog")])
    default = CrossEncoder(tiny_model).score([("crocs", "clog")])
    np.testing.assert_allclose(default, 1 / (1 + np.exp(-raw)), atol=1e-6)


def test_pair_tokens_count_each_pairs_rows(tiny_model, ce):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    pairs = [("crocs", "crocs kids clog"), ("aircraft wing", "lift"), ("crocs", "crocs kids clog")]
    _, stats = ce.score_with_stats(pairs)
    expected = [len(tok(q, d)["input_ids"]) for q, d in pairs]
    assert stats.pair_tokens.tolist() == expected
    assert stats.tokens == sum(expected[:2])  # the duplicate pair is scored once
    _, chunked = ce.score_with_stats([("crocs", "crocs " * 200)], max_chunks_per_doc=3)
    assert chunked.rows == 3 and chunked.pair_tokens.tolist() == [chunked.tokens]


@pytest.mark.minilm
def test_the_untrained_builtin_says_once_that_its_scores_are_not_relevance(caplog, monkeypatch):
    import logging

    from crossrank.engine import model

    monkeypatch.setattr(model, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="crossrank.engine.encoder"):
        CrossEncoder()
        CrossEncoder("minilm-l6-untrained")
    assert sum("random classification head" in r.getMessage() for r in caplog.records) == 1


def test_options_are_checked_not_swapped_for_defaults(tiny_model, ce):
    for kwargs in ({"max_length": 3}, {"max_length": 0}, {"max_length": -1}, {"max_chunks_per_doc": "2"},
                   {"max_query_length": 0}, {"threads": 1.5}):
        with pytest.raises(InputError):
            CrossEncoder(str(tiny_model), **kwargs)
    with pytest.raises(InputError, match="max_chunks_per_doc"):
        ce.score([("crocs", "clog")], max_chunks_per_doc=0)


def test_device_or_precision_the_onnx_path_cannot_honour_is_an_error(tiny_model):
    for kwargs in ({"backend": "onnx", "device": "cuda"}, {"backend": "onnx", "precision": "fp16"},
                   {"quantize": "int8", "device": "cuda"}):
        with pytest.raises(ModelLoadError, match="backend='torch'"):
            CrossEncoder(str(tiny_model), **kwargs)
    assert CrossEncoder(str(tiny_model), device="cpu", precision="fp32").backend.name == "onnx"


def test_one_field_name_as_a_string(ce):
    doc = {"title": "crocs", "text": "kids clog"}
    assert ce.rank("crocs", [doc], on="title")[0].score == pytest.approx(ce.score([("crocs", "crocs")])[0])


def test_softmax_over_chunked_windows_is_a_distribution(tiny_model, tmp_path):
    """Several labels and long documents: windows are combined on logits, then the softmax applies."""
    import shutil

    from transformers import BertForSequenceClassification

    three = tmp_path / "three-labels"
    shutil.copytree(tiny_model, three)
    model = BertForSequenceClassification.from_pretrained(str(tiny_model), num_labels=3,
                                                          ignore_mismatched_sizes=True)
    model.save_pretrained(str(three))
    ce3 = CrossEncoder(str(three), activation="softmax")
    long_doc = "aircraft wing lift " * 40 + " crocs kids clog"
    probs = ce3.score([("crocs", long_doc), ("wing", "lift")], max_chunks_per_doc=4)
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    logits = ce3.score([("crocs", long_doc)], max_chunks_per_doc=4, activation="raw")[0]
    np.testing.assert_allclose(probs[0], np.exp(logits) / np.exp(logits).sum(), atol=1e-6)


def test_stop_is_polled_between_batches(ce):
    from crossrank import ScoringStopped

    pairs = [("crocs", f"kids clog number {i} " * 8) for i in range(200)]
    polls = []

    def stop_after_three() -> bool:
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(ScoringStopped, match="after 3 batches"):
        ce.score_with_stats(pairs, stop=stop_after_three)
    scores, stats = ce.score_with_stats(pairs, stop=lambda: False)
    assert len(stats.batches) > 3 and np.allclose(scores, ce.score(pairs))


def test_left_truncation_keeps_the_documents_end_as_transformers_does(tiny_model, ce):
    """TEI's truncation_direction Left: a long document loses tokens from its start, the query is kept."""
    long_docs = [("crocs", "aircraft wing lift " * 30 + "crocs kids clog"),
                 ("heat flow", "the best red shoe " * 25 + "boundary layer heat flow"),
                 ("crocs", "a short clog"), ("wing", "lift " * 5000 + " wing")]  # the last needs the end precut
    left = ce.score(long_docs, truncation_side="left")
    np.testing.assert_allclose(left, reference(tiny_model, long_docs, truncation_side="left"), atol=1e-4)
    right = ce.score(long_docs)
    assert not np.allclose(left[:2], right[:2]) and left[2] == pytest.approx(right[2], abs=1e-6)
    with pytest.raises(InputError, match="truncation_side"):
        ce.score(long_docs, truncation_side="middle")
    with pytest.raises(InputError, match="one window"):  # windows are read from the start
        ce.score(long_docs, truncation_side="left", max_chunks_per_doc=2)


@pytest.mark.parametrize(("declared", "expected"), [
    ({"sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"}}, "identity"),
    ({"sbert_ce_default_activation_function": "torch.nn.modules.activation.Sigmoid"}, "sigmoid"),
    ({"sentence_transformers": {"activation_fn": "torch.nn.modules.activation.ReLU"}}, "relu"),
    ({"sentence_transformers": {"activation_fn": "torch.nn.modules.activation.LogSigmoid"}}, "logsigmoid"),
    # sentence-transformers trusts only torch's activations (others need its trust_remote_code)...
    ({"sentence_transformers": {"activation_fn": "my_package.activations.Identity"}}, "sigmoid"),
    # ...and reads the old key only when the new one is absent, not when it is null
    ({"sentence_transformers": {"activation_fn": None},
      "sbert_ce_default_activation_function": "torch.nn.modules.linear.Identity"}, "sigmoid"),
])
def test_declared_activation_follows_sentence_transformers(tiny_model, tmp_path, declared, expected):
    import json
    import shutil

    import torch
    from sentence_transformers import CrossEncoder as STCrossEncoder

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, **declared}))
    ce = CrossEncoder(str(model), backend="onnx")
    assert ce.declared_activation == expected
    pairs = [("crocs", "crocs clog"), ("wing", "heat")]
    st = STCrossEncoder(str(model), device="cpu")
    with torch.no_grad():
        np.testing.assert_allclose(ce.score(pairs), st.predict(pairs), atol=1e-5)


def test_an_ignored_activation_is_warned_once(tiny_model, tmp_path, caplog):
    """The first load exports the checkpoint and loads the export; both read the declaration (it was
    warned twice), and loading it again is no news."""
    import json
    import logging
    import shutil

    model = tmp_path / "custom-activation"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "config.json").read_text())
    declared = {"sentence_transformers": {"activation_fn": "my_package.activations.Identity"}}
    (model / "config.json").write_text(json.dumps({**config, **declared}))
    with caplog.at_level(logging.WARNING, logger="crossrank"):
        CrossEncoder(str(model), backend="onnx")
        CrossEncoder(str(model), backend="onnx")
    warned = [r for r in caplog.records if "declares the activation" in r.getMessage()]
    assert len(warned) == 1 and "custom-activation" in warned[0].getMessage()


def test_a_checkpoint_without_its_head_is_refused_and_two_labels_are_read_as_transformers_reads_them(
        tiny_model, tmp_path):
    """transformers draws missing weights at random (a bi-encoder passed as a cross-encoder scored noise,
    another noise on every torch load); a config stating no label count means 2 labels, as in transformers."""
    import json
    import shutil

    import transformers

    headless = tmp_path / "headless"
    shutil.copytree(tiny_model, headless)
    (headless / "model.safetensors").unlink()
    transformers.BertModel.from_pretrained(str(tiny_model)).save_pretrained(str(headless))
    config = json.loads((headless / "config.json").read_text())
    (headless / "config.json").write_text(json.dumps({**config, "architectures": ["BertForSequenceClassification"],
                                                      "id2label": {"0": "LABEL_0"}}))
    for backend in ("onnx", "torch"):
        with pytest.raises(ModelLoadError, match="no weights for .*classifier"):
            CrossEncoder(str(headless), backend=backend)

    two = tmp_path / "two"
    shutil.copytree(tiny_model, two)
    transformers.BertForSequenceClassification.from_pretrained(
        str(tiny_model), num_labels=2, ignore_mismatched_sizes=True).save_pretrained(str(two))
    config = json.loads((two / "config.json").read_text())
    config.pop("id2label", None), config.pop("label2id", None), config.pop("num_labels", None)
    (two / "config.json").write_text(json.dumps(config))
    for backend in ("onnx", "torch"):
        assert CrossEncoder(str(two), backend=backend).score([("crocs", "clog")]).shape == (1, 2)


def test_pickling_says_how_to_use_a_model_in_other_processes(tiny_model):
    import copy
    import pickle

    ce = CrossEncoder(str(tiny_model), backend="onnx")
    for attempt in (pickle.dumps, copy.deepcopy):
        with pytest.raises(InputError, match="create it in each worker"):
            attempt(ce)


def test_documents_and_pairs_from_any_iterable(ce):
    """Generators, numpy and pandas arrays, dict views: what a service has at hand (they were refused)."""
    docs = ["crocs kids clog", "aircraft wing", "red shoe"]
    expected = ce.score([("crocs", d) for d in docs])
    ranked = ce.rank("crocs", (d for d in docs))
    assert sorted(r.document for r in ranked) == sorted(docs)  # a generator is read once and returned from
    assert [r.score for r in ce.rank("crocs", np.array(docs))] == [r.score for r in ce.rank("crocs", docs)]
    assert len(ce.rank("crocs", {i: d for i, d in enumerate(docs)}.values())) == 3
    np.testing.assert_allclose(ce.score(np.array([["crocs", d] for d in docs])), expected)
    np.testing.assert_allclose(ce.score(zip(["crocs"] * 3, docs, strict=True)), expected)
    for not_a_list in ("one string", {"title": "a dict"}, 7):
        with pytest.raises(InputError, match="must be a list"):
            ce.rank("crocs", not_a_list)
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"title": docs})
    np.testing.assert_allclose([r.score for r in ce.rank("crocs", frame["title"])],
                               [r.score for r in ce.rank("crocs", docs)])
    with pytest.raises(InputError, match="DataFrame"):  # iterating one gives its column names
        ce.rank("crocs", frame)


def test_predict_takes_what_sentence_transformers_predict_takes(tiny_model):
    """Code written against sentence-transformers' CrossEncoder.predict runs unchanged (its batch_size and
    show_progress_bar were a TypeError; one pair gave an array where it gives a scalar)."""
    import torch
    from sentence_transformers import CrossEncoder as STCrossEncoder

    ce = CrossEncoder(str(tiny_model), backend="onnx")  # the checkpoint's activation, as sentence-transformers'
    st = STCrossEncoder(str(tiny_model), device="cpu")
    pairs = [("crocs", "crocs kids clog"), ("wing", "heat flow in a slab")]
    with torch.no_grad():
        expected_one, expected = st.predict(pairs[0]), st.predict(pairs, batch_size=8, show_progress_bar=False)
    one = ce.predict(pairs[0])
    assert np.ndim(one) == np.ndim(expected_one) == 0 and one == pytest.approx(float(expected_one), abs=1e-5)
    np.testing.assert_allclose(ce.predict(pairs, batch_size=8, show_progress_bar=False), expected, atol=1e-5)
    assert isinstance(ce.predict(pairs, convert_to_tensor=True), torch.Tensor)
    with pytest.raises(InputError, match="activation_fn"):
        ce.predict(pairs, activation_fn=lambda x: x)
    with pytest.raises(InputError, match="batch_size"):
        ce.predict(pairs, batch_size=0)


def test_long_lists_are_tokenized_in_slices_with_the_same_scores(ce, monkeypatch):
    """A list is tokenized a slice at a time (a tokenizers Encoding costs ~230 bytes a token; the
    batchable rows 5), and slicing changes no score: duplicates, windows and left truncation included."""
    from crossrank.engine import tokenize

    docs = [*DOCS, *DOCS[:3], "crocs " * 60, "wing lift " * 40]
    pairs = [("kids shoes" if i % 2 else "lift " * 30, d) for i, d in enumerate(docs)]
    whole = [ce.score(pairs), ce.score(pairs, max_chunks_per_doc=3), ce.score(pairs, truncation_side="left")]
    cut_sizes: list[int] = []
    precut = tokenize.PairTokenizer._precut
    monkeypatch.setattr(tokenize.PairTokenizer, "_precut",
                        lambda self, d, *a, **k: (cut_sizes.append(len(d)), precut(self, d, *a, **k))[1])
    monkeypatch.setattr(tokenize, "ENCODE_SLICE", 4)
    sliced = [ce.score(pairs), ce.score(pairs, max_chunks_per_doc=3), ce.score(pairs, truncation_side="left")]
    assert cut_sizes and max(cut_sizes) <= 4
    for a, b in zip(whole, sliced, strict=True):
        np.testing.assert_array_equal(a, b)


def test_progress_is_reported_in_pairs_after_each_batch(tiny_model, capsys):
    """Long lists can show how far they are (sentence-transformers' show_progress_bar did nothing here)."""
    ce = CrossEncoder(tiny_model, backend="onnx", max_batch_size=4)
    pairs = [("kids shoes", f"{w} shoe number {i}") for i, w in enumerate(WORDS * 2)] + [("a", "crocs " * 200)]
    seen: list[tuple[int, int]] = []
    scores = ce.score(pairs, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) > 2 and seen[-1] == (len(pairs), len(pairs))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and {t for _, t in seen} == {len(pairs)}
    seen.clear()
    ce.score(pairs, max_chunks_per_doc=4, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(pairs), len(pairs))  # windows count as their document's share
    seen.clear()
    ranked = ce.rank("kids shoes", [d for _, d in pairs], progress=lambda d, t: seen.append((d, t)))
    assert len(ranked) == len(pairs) and seen[-1] == (len(pairs), len(pairs))
    capsys.readouterr()
    np.testing.assert_array_equal(ce.score(pairs, progress=True), scores)  # off a terminal: plain lines
    assert "scoring" in capsys.readouterr().err
    np.testing.assert_array_equal(ce.predict(pairs, show_progress_bar=True), scores)
    assert "scoring" in capsys.readouterr().err
    with pytest.raises(InputError, match="progress"):
        ce.score(pairs, progress="yes")


def test_a_label_must_name_the_models_label_even_when_it_has_one(ce):
    """rank(label=) on a one-label model was ignored whatever it said: a typo ranked silently."""
    docs = ["crocs kids clog", "heat flow"]
    expected = [r.index for r in ce.rank("crocs", docs)]
    assert [r.index for r in ce.rank("crocs", docs, label=0)] == expected
    assert [r.index for r in ce.rank("crocs", docs, label=ce.labels[0])] == expected
    for bad in (1, "relevant", -1):
        with pytest.raises(InputError, match="unknown label"):
            ce.rank("crocs", docs, label=bad)


def test_rank_takes_and_answers_what_sentence_transformers_rank_does(tiny_model):
    """Code written against sentence-transformers' CrossEncoder.rank runs unchanged: its arguments were a
    TypeError, and it reads results as dicts (r["corpus_id"], r["score"], r["text"])."""
    import torch
    from sentence_transformers import CrossEncoder as STCrossEncoder

    ce = CrossEncoder(str(tiny_model), backend="onnx")
    st = STCrossEncoder(str(tiny_model), device="cpu")
    docs = ["crocs kids clog", "heat flow in a slab", "running shoe for kids", "wing lift"]
    with torch.no_grad():
        expected = st.rank("kids shoes", docs, top_k=3, return_documents=True, batch_size=2, show_progress_bar=False)
    ours = ce.rank("kids shoes", docs, top_k=3, return_documents=True, batch_size=2, show_progress_bar=False)
    assert [r["corpus_id"] for r in ours] == [r["corpus_id"] for r in expected]
    assert [r["text"] for r in ours] == [r["text"] for r in expected]
    np.testing.assert_allclose([r["score"] for r in ours], [r["score"] for r in expected], atol=1e-5)
    assert [(r.index, r.document) for r in ours] == [(r[0], r[2]) for r in ours]  # still the tuple it was
    assert [r.document for r in ce.rank("kids shoes", docs, return_documents=False)] == [None] * 4
    with pytest.raises(KeyError, match="corpus_id"):
        ours[0]["id"]
    assert ours[0]["index"] == ours[0].get("corpus_id") == ours[0].index and ours[0].get("id", "-") == "-"
    with pytest.raises(InputError, match="prompt"):
        ce.rank("kids shoes", docs, prompt="query: ")
    with pytest.raises(InputError, match="pool"):
        ce.predict([("kids", "shoes")], pool={"processes": []})
    with pytest.raises(InputError, match="batch_size"):
        ce.rank("kids shoes", docs, batch_size=0)
    with pytest.raises(TypeError, match="topk"):  # a typo stays a TypeError (and a type checker's error)
        ce.rank("kids shoes", docs, topk=1)  # type: ignore[call-arg]

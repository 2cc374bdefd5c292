"""The ONNX export: the last layer computed for the first token only, exact on BERT and RoBERTa."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crossrank import CrossEncoder
from tests.conftest import WORDS

PAIRS = [("crocs kids", "a light clog for kids"), ("heat flow", "boundary layer heat flow over a wing " * 3),
         ("red shoe", ""), ("search", "rank the relevant document first")]


def _transformers_logits(model_dir: Path, pad_id: int) -> np.ndarray:
    """transformers' logits for PAIRS, tokenized by the checkpoint's tokenizer.json and padded with ``pad_id``."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification

    encs = [Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(q, d) for q, d in PAIRS]
    width = max(len(e.ids) for e in encs)
    ids = torch.tensor([e.ids + [pad_id] * (width - len(e.ids)) for e in encs])
    mask = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in encs])
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits[:, 0].numpy()


def _onnx_ops(export_dir: Path, graph: str = "model.onnx") -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(export_dir / graph)).graph.node]


def test_bert_export_attends_from_the_first_token_in_its_last_layer(tiny_model, tmp_path):
    from crossrank.engine.export import export
    from crossrank.engine.model import resolve

    out = tmp_path / "export"
    export(resolve(str(tiny_model)), out, quantize="int8")
    # Two layers: the first is ORT's fused Attention over every position, the last is the
    # first-token computation (plain MatMuls), so one fused Attention is left.
    assert _onnx_ops(out).count("Attention") == 1
    # int8 leaves that layer's two 0/1 head-selection MatMuls in fp32 (their inputs are attention
    # scores and probabilities) and quantizes every weight MatMul.
    import onnx

    from crossrank.engine.export import _selection_matmuls

    assert len(_selection_matmuls(onnx.load(str(out / "model.onnx")))) == 2
    quantized = _onnx_ops(out, "model_int8.onnx")
    assert quantized.count("MatMul") == 2 and "QAttention" in quantized and "MatMulInteger" in quantized
    from tests.engine.test_encoder import reference

    np.testing.assert_allclose(CrossEncoder(out, activation="raw").score(PAIRS), reference(tiny_model, PAIRS),
                               atol=1e-4)


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory) -> Path:
    """A 2-layer XLM-R-style classifier (``<s>``/``</s>`` pairs, padding id 1, position offset, head on ``<s>``)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    out = tmp_path_factory.mktemp("tiny-xlmr")
    vocab = list(dict.fromkeys(["<s>", "<pad>", "</s>", "<unk>", *WORDS, *"abcdefghijklmnopqrstuvwxyz"]))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))
    torch.manual_seed(1)
    config = XLMRobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=70, num_labels=1, pad_token_id=1,
                              bos_token_id=0, eos_token_id=2, type_vocab_size=1)
    XLMRobertaForSequenceClassification(config).eval().save_pretrained(str(out))
    return out


def test_xlm_roberta_export_equals_transformers(tiny_roberta, tmp_path):
    from crossrank.engine.export import cached_export
    from crossrank.engine.model import resolve

    ce = CrossEncoder(tiny_roberta, activation="raw")
    exported = cached_export(resolve(str(tiny_roberta)), quantize=None).path  # the export ce runs
    assert _onnx_ops(exported).count("Attention") == 1  # the first-token last layer was used
    np.testing.assert_allclose(ce.score(PAIRS), _transformers_logits(tiny_roberta, pad_id=1), atol=1e-4)


def test_an_architecture_it_does_not_fit_is_exported_whole(tiny_model, tmp_path):
    """DistilBERT's layers are not BERT's: the export keeps every position and still equals transformers."""
    import shutil

    import onnx
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from crossrank.engine.export import _selection_matmuls, export
    from crossrank.engine.model import resolve

    src = tmp_path / "tiny-distilbert"
    src.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copyfile(tiny_model / f, src / f)
    torch.manual_seed(2)
    vocab = len((tiny_model / "vocab.txt").read_text().split())
    DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=vocab, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64,
        num_labels=1)).eval().save_pretrained(str(src))
    out = tmp_path / "export"
    export(resolve(str(src)), out)
    assert _selection_matmuls(onnx.load(str(out / "model.onnx"))) == []
    np.testing.assert_allclose(CrossEncoder(out, activation="raw").score(PAIRS), _transformers_logits(src, pad_id=0),
                               atol=1e-4)


def test_torch_backend_uses_the_first_token_layer_and_still_equals_transformers(tiny_model):
    from tests.engine.test_encoder import reference

    ce = CrossEncoder(tiny_model, backend="torch", activation="raw")
    assert ce.backend.first_token_last_layer is True
    np.testing.assert_allclose(ce.score(PAIRS), reference(tiny_model, PAIRS), atol=1e-4)


def _other_checkpoint(tiny_model: Path, out: Path) -> Path:
    """tiny_model's files with different classifier weights: another model of the same shape."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_model, out)
    weights = load_file(str(out / "model.safetensors"))
    weights["classifier.weight"] = -3 * weights["classifier.weight"]
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def test_an_export_directory_exported_again_holds_only_the_new_model(tiny_model, tmp_path):
    """Re-exporting another checkpoint into a directory must not leave the first one's int8 graph (or its
    calibration) behind, nor may the int8 cache built for the first export serve the second."""
    from crossrank.engine.export import export
    from crossrank.engine.model import resolve

    other = _other_checkpoint(tiny_model, tmp_path / "other")
    out = tmp_path / "export"
    export(resolve(str(tiny_model)), out, quantize="int8")
    (out / "calibration.json").write_text(json.dumps({"method": "platt", "params": {"a": 1.0, "b": 0.0}}))
    export(resolve(str(tiny_model)), out)  # same checkpoint again: its calibration still holds
    assert (out / "calibration.json").is_file() and not (out / "model_int8.onnx").exists()
    first_int8 = CrossEncoder(str(out), quantize="int8").score(PAIRS, activation="raw")  # quantized into the cache
    export(resolve(str(other)), out)
    assert not (out / "calibration.json").exists()
    fp32 = CrossEncoder(str(out)).score(PAIRS, activation="raw")
    int8 = CrossEncoder(str(out), quantize="int8").score(PAIRS, activation="raw")
    assert np.allclose(int8, fp32, atol=0.05) and not np.allclose(int8, first_int8, atol=1e-3)

    copy = tmp_path / "copy"
    export(resolve(str(tiny_model)), copy, quantize="int8")
    export(resolve(str(out)), copy)  # an export copied over another: the old int8 graph goes too
    assert not (copy / "model_int8.onnx").exists()
    assert np.allclose(CrossEncoder(str(copy), quantize="int8").score(PAIRS, activation="raw"), int8, atol=1e-6)


def test_scratch_directories_a_killed_export_left_are_removed_by_the_next(tiny_model, tmp_path):
    """A signal during an export left its .export-* directory (model-sized, a random name) for good."""
    import os
    import time

    from crossrank.engine.export import STALE_AFTER_S, export
    from crossrank.engine.model import resolve

    stale, fresh = tmp_path / ".crossrank-export-dead", tmp_path / ".crossrank-export-running"
    (tmp_path / ".export-backups").mkdir()  # not crossrank's: never touched, however old
    for d in (stale, fresh):
        d.mkdir()
        (d / "model.onnx").write_bytes(b"partial")
    old = time.time() - STALE_AFTER_S - 60
    os.utime(stale, (old, old))
    os.utime(tmp_path / ".export-backups", (old, old))
    export(resolve(str(tiny_model)), tmp_path / "out")
    assert not stale.exists() and fresh.exists()  # one still being written by another process is left alone
    assert (tmp_path / ".export-backups").exists()
    assert (tmp_path / "out" / "model.onnx").is_file()


def test_threads_on_an_empty_cache_share_one_export(tiny_model, tmp_path, monkeypatch):
    """Four threads loading one model on an empty cache: torch's exporter is not thread-safe ("GLOBALS.
    in_onnx_export must be True" in three of them); now one exports and the others use its export."""
    from concurrent.futures import ThreadPoolExecutor

    from crossrank import CrossEncoder

    monkeypatch.setenv("CROSSRANK_CACHE", str(tmp_path / "cache"))
    with ThreadPoolExecutor(4) as pool:
        scores = list(pool.map(lambda _: CrossEncoder(str(tiny_model)).score([("q", "a doc")])[0], range(4)))
    assert len(set(scores)) == 1
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 1
